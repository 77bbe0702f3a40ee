"""CTC decoding: greedy (best path, collapsed) and beam search (flashlight-text).

Score matrices are class-first like the model output: ``(K, T')`` for one utterance,
``(B, K, T')`` for a batch. Class :data:`~gradnap.defaults.BLANK_INDEX` (28) is the
CTC blank and the space (26) separates words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from .audio import decode_indices
from .defaults import ALPHABET, BLANK_INDEX
from .errors import GradnapError

__all__ = ["ctc_collapse", "greedy_decode", "greedy_decode_batch", "BeamDecoder"]

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


def greedy_decode(scores: torch.Tensor, length: int | None = None) -> str:
    """Best-path text of one utterance.

    ``scores``: ``(K, T')`` probabilities, log-probabilities or logits (only the argmax
    per frame matters); ``length``: frames to use (default all).
    """
    if scores.dim() != 2:
        raise GradnapError(
            f"greedy_decode: expected (K, T') scores, got shape {tuple(scores.shape)}"
        )
    best = scores[:, :length].argmax(dim=0)  # (T',)
    return decode_indices(ctc_collapse(best.tolist()))


def greedy_decode_batch(scores: torch.Tensor, lengths: Sequence[int] | torch.Tensor) -> list[str]:
    """Best-path texts of a batch: ``scores`` ``(B, K, T')``, ``lengths`` ``(B,)`` frames."""
    best = scores.argmax(dim=1)  # (B, T')
    return [
        decode_indices(ctc_collapse(row[: int(n)].tolist()))
        for row, n in zip(best, lengths, strict=True)
    ]


class BeamDecoder:
    """Lexicon-free CTC beam search (flashlight-text ``LexiconFreeDecoder``).

    Without a language model (``ZeroLM``) it finds the label sequence with the best
    single-path score (or, with ``log_add=True``, the summed score of merged paths) among
    ``beam_size`` hypotheses per frame. ``lm`` may be any ``flashlight.lib.text.decoder.LM``
    (e.g. :class:`gradnap.decode.CharNgramLM`) weighted by ``lm_weight``;
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
        text = decode_indices(self.decode_indices(log_probs[:, :length]))
        return " ".join(text.split())

    def decode_batch(
        self, log_probs: torch.Tensor, lengths: Sequence[int] | torch.Tensor
    ) -> list[str]:
        """Texts of a batch: ``log_probs`` ``(B, K, T')``, ``lengths`` ``(B,)``."""
        return [self.decode(lp, int(n)) for lp, n in zip(log_probs, lengths, strict=True)]
