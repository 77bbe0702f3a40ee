"""CTC decoding: greedy (best path, collapsed) and beam search (flashlight-text).

Score matrices are class-first like the model output: ``(K, T')`` for one utterance,
``(B, K, T')`` for a batch. Class :data:`~gradnap.defaults.BLANK_INDEX` (28) is the
CTC blank and the space (26) separates words.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from gradnap.alphabet import decode_indices
from gradnap.defaults import ALPHABET, BLANK_INDEX
from gradnap.errors import GradnapError

__all__ = ["ctc_collapse", "greedy_decode", "greedy_decode_batch", "BeamDecoder", "CharNgramLM"]

log = logging.getLogger(__name__)

SPACE_INDEX = ALPHABET.index(" ")


def ctc_collapse(indices: Sequence[int], blank: int = BLANK_INDEX) -> list[int]:
    """Merge runs of equal indices, then drop blanks: ``a a <b> a b b`` -> ``a a b``."""
    out: list[int] = []
    prev = None
    for i in indices:
        i = int(i)
        if i != prev and i != blank:
            out.append(i)
        prev = i
    return out


def _words(text: str) -> str:
    """Whitespace normalised: no leading, trailing or repeated spaces."""
    return " ".join(text.split())


def greedy_decode(scores: torch.Tensor, length: int | None = None) -> str:
    """Best-path text of one utterance (spaces normalised: no leading, trailing or
    repeated spaces).

    ``scores``: ``(K, T')`` probabilities, log-probabilities or logits (only the argmax
    per frame matters); ``length``: frames to use (default all).
    """
    if scores.dim() != 2:
        raise GradnapError(
            f"greedy_decode: expected (K, T') scores, got shape {tuple(scores.shape)}"
        )
    best = scores[:, :length].argmax(dim=0)  # (T',)
    return _words(decode_indices(ctc_collapse(best.tolist())))


def greedy_decode_batch(scores: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> list[str]:
    """Best-path texts of a batch: ``scores`` ``(B, K, T')``, ``lengths`` ``(B,)`` frames."""
    best = scores.argmax(dim=1)  # (B, T')
    return [
        _words(decode_indices(ctc_collapse(row[: int(n)].tolist())))
        for row, n in zip(best, lengths, strict=True)
    ]


class BeamDecoder:
    """Lexicon-free CTC beam search (flashlight-text ``LexiconFreeDecoder``).

    Without a language model (``ZeroLM``) it finds the label sequence with the best
    single-path score (or, with ``log_add=True``, the summed score of merged paths) among
    ``beam_size`` hypotheses per frame. ``lm`` may be any ``flashlight.lib.text.decoder.LM``
    (e.g. :class:`gradnap.asr.decode.CharNgramLM`) weighted by ``lm_weight``;
    ``word_score`` is added at every space.
    """

    def __init__(
        self,
        beam_size: int = 32,
        beam_threshold: float = 30.0,
        beam_size_token: int | None = None,
        lm=None,
        lm_weight: float = 0.0,
        word_score: float = 0.0,
        log_add: bool = True,
        blank: int = BLANK_INDEX,
        space: int = SPACE_INDEX,
    ) -> None:
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
            ZeroLM,
        )

        if beam_size < 1:
            raise GradnapError(f"--beam-size: {beam_size} must be at least 1")
        self.options = LexiconFreeDecoderOptions(
            beam_size=beam_size,
            beam_size_token=beam_size_token if beam_size_token is not None else 1000,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            sil_score=word_score,
            log_add=log_add,
            criterion_type=CriterionType.CTC,
        )
        self.lm = lm if lm is not None else ZeroLM()
        self.blank = blank
        self.space = space
        self._decoder = LexiconFreeDecoder(self.options, self.lm, space, blank, [])

    def decode_indices(self, log_probs: torch.Tensor) -> list[int]:
        """Best label sequence (collapsed, no blanks) for ``log_probs`` ``(K, T')``."""
        if log_probs.dim() != 2:
            raise GradnapError(
                f"beam search: expected (K, T') log-probabilities, got shape {tuple(log_probs.shape)}"
            )
        k, t = log_probs.shape
        if t == 0:
            return []
        emissions = log_probs.detach().to(torch.float32).t().contiguous()  # (T', K)
        results = self._decoder.decode(emissions.data_ptr(), t, k)
        if not results:
            return []
        # tokens: one per frame, framed by a word separator at both ends (T' + 2).
        tokens = list(results[0].tokens)[1:-1]
        return ctc_collapse([i for i in tokens if i >= 0], self.blank)

    def decode(self, log_probs: torch.Tensor, length: int | None = None) -> str:
        """Best text for one utterance; ``log_probs`` ``(K, T')`` (log-softmax output)."""
        return _words(decode_indices(self.decode_indices(log_probs[:, :length])))

    def decode_batch(
        self, log_probs: torch.Tensor, lengths: Sequence[int] | torch.Tensor
    ) -> list[str]:
        """Texts of a batch: ``log_probs`` ``(B, K, T')``, ``lengths`` ``(B,)``."""
        return [self.decode(lp, int(n)) for lp, n in zip(log_probs, lengths, strict=True)]


def _lm_base():
    from flashlight.lib.text.decoder import LM

    return LM


class CharNgramLM(_lm_base()):  # type: ignore[misc]
    """Character n-gram language model (interpolated Witten-Bell) for :class:`BeamDecoder`.

    Trained on normalised texts over the alphabet (a-z, space, apostrophe) plus an
    end-of-sentence symbol. Scores are natural-log probabilities. Decoder states are
    the last ``order - 1`` characters, shared between hypotheses with the same context
    so that the beam search can merge them.
    """

    def __init__(self, texts: Sequence[str], order: int = 5) -> None:
        super().__init__()
        from flashlight.lib.text.decoder import LMState

        if order < 1:
            raise GradnapError(f"character LM order must be at least 1, not {order}")
        self.order = order
        self._eos = len(ALPHABET)
        self._vocab = len(ALPHABET) + 1
        self._counts: dict[tuple[int, ...], dict[int, int]] = {}
        index = {c: i for i, c in enumerate(ALPHABET)}
        n_texts = 0
        for text in texts:
            seq = [index[c] for c in text if c in index] + [self._eos]
            n_texts += 1
            for i, tok in enumerate(seq):
                for n in range(order):
                    if i - n < 0:
                        break
                    ctx = tuple(seq[i - n : i])
                    d = self._counts.setdefault(ctx, {})
                    d[tok] = d.get(tok, 0) + 1
        if n_texts == 0:
            raise GradnapError("character LM: no training text")
        self._totals = {ctx: sum(d.values()) for ctx, d in self._counts.items()}
        self._cache: dict[tuple[tuple[int, ...], int], float] = {}
        self._LMState = LMState
        self._states: dict[tuple[int, ...], object] = {}
        self._contexts: dict[object, tuple[int, ...]] = {}
        #: The start state (a flashlight ``LMState``; the module has no types), set by
        #: :meth:`start`.
        self._root: Any = None

    def prob(self, context: Sequence[int], token: int) -> float:
        """P(token | last ``order - 1`` tokens of ``context``); ``token`` may be the
        end-of-sentence index ``len(ALPHABET)``."""
        ctx = tuple(context)[len(context) - (self.order - 1) :] if self.order > 1 else ()
        return math.exp(self._logprob(ctx, token))

    def _logprob(self, ctx: tuple[int, ...], tok: int) -> float:
        key = (ctx, tok)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        p = 1.0 / self._vocab
        for n in range(0, len(ctx) + 1):  # lower orders first
            h = ctx[len(ctx) - n :]
            counts = self._counts.get(h)
            if not counts:
                break
            total, types = self._totals[h], len(counts)
            p = (counts.get(tok, 0) + types * p) / (total + types)
        lp = math.log(p)
        self._cache[key] = lp
        return lp

    def _state(self, ctx: tuple[int, ...]):
        state = self._states.get(ctx)
        if state is None:
            state = self._root.child(len(self._states) + 1)
            self._states[ctx] = state
            self._contexts[state] = ctx
        return state

    # flashlight LM interface
    def start(self, start_with_nothing: bool):
        self._root = self._LMState()
        self._states = {(): self._root}
        self._contexts = {self._root: ()}
        return self._root

    def score(self, state, token_index: int):
        ctx = self._contexts[state]
        lp = self._logprob(ctx, token_index)
        new = (ctx + (token_index,))[-(self.order - 1) :] if self.order > 1 else ()
        return self._state(new), lp

    def finish(self, state):
        ctx = self._contexts[state]
        return state, self._logprob(ctx, self._eos)
