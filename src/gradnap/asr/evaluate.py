"""Recognition accuracy: edit distances, CER / WER, and evaluation of a model on a corpus.

CER = character edit distance / reference characters (spaces count as characters);
WER = word edit distance / reference words. Both are summed over utterances before
dividing (corpus-level rates, not means of per-utterance rates).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gradnap.asr.data import Example, collate, make_batches
from gradnap.asr.decode import BeamDecoder, greedy_decode_batch
from gradnap.asr.hf import HFCTCModel
from gradnap.asr.model import Wav2Letter
from gradnap.asr.transformer import ConvTransformer
from gradnap.defaults import BLANK_INDEX, FEATURES
from gradnap.geometry import Geometry
from gradnap.progress import progress_bar

__all__ = ["edit_distance", "ErrorCount", "EvalResult", "evaluate_model", "transcribe"]

log = logging.getLogger(__name__)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorCount:
    """Summed edit distances and reference lengths."""

    char_errors: int = 0
    chars: int = 0
    word_errors: int = 0
    words: int = 0
    utterances: int = 0

    def add(self, ref: str, hyp: str) -> None:
        self.char_errors += edit_distance(ref, hyp)
        self.chars += len(ref)
        self.word_errors += edit_distance(ref.split(), hyp.split())
        self.words += len(ref.split())
        self.utterances += 1

    def merge(self, other: ErrorCount) -> None:
        self.char_errors += other.char_errors
        self.chars += other.chars
        self.word_errors += other.word_errors
        self.words += other.words
        self.utterances += other.utterances

    @property
    def cer(self) -> float:
        """Character error rate (nan without reference characters)."""
        return self.char_errors / self.chars if self.chars else float("nan")

    @property
    def wer(self) -> float:
        """Word error rate (nan without reference words)."""
        return self.word_errors / self.words if self.words else float("nan")


@dataclass
class EvalResult:
    """Errors of greedy (and beam) decoding, overall and per speaker."""

    greedy: ErrorCount = field(default_factory=ErrorCount)
    beam: ErrorCount | None = None
    per_speaker_greedy: dict[str, ErrorCount] = field(default_factory=dict)
    per_speaker_beam: dict[str, ErrorCount] = field(default_factory=dict)
    #: Mean CTC negative log-likelihood per utterance (nats).
    loss: float = float("nan")
    #: (id, reference, greedy hypothesis) of every utterance.
    samples: list[tuple[str, str, str]] = field(default_factory=list)


@torch.no_grad()
def transcribe(
    model: Wav2Letter | ConvTransformer, features: torch.Tensor, beam: BeamDecoder | None = None
) -> str:
    """Text of one utterance: ``features`` ``(F, T)`` -> greedy (or beam) transcript."""
    model.eval()
    logits = model(features.float().unsqueeze(0))[0]  # (K, T')
    if beam is None:
        return greedy_decode_batch(logits.unsqueeze(0), [logits.shape[1]])[0]
    return beam.decode(torch.log_softmax(logits, dim=0))


@torch.no_grad()
def evaluate_model(
    model: Wav2Letter | ConvTransformer | HFCTCModel,
    examples: Sequence[Example],
    beam: BeamDecoder | None = None,
    max_frames: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Decode ``examples`` greedily (and with ``beam``) and count errors.

    Utterances are batched by length; padding never reaches the decoders (each output is
    cut to its own length). ``max_frames``: padded input frames per batch (samples for a
    waveform model; default: 16,000 log-mel frames, 128 s, or as many seconds of
    samples). Returns corpus-level and per-speaker counts.
    """
    was_training = model.training
    model.eval()
    result = EvalResult(beam=ErrorCount() if beam is not None else None)
    ctc = torch.nn.CTCLoss(blank=BLANK_INDEX, zero_infinity=True, reduction="sum")
    loss_sum = 0.0
    # a log-mel model's geometry (of its conv front end), or a Hugging Face model's front end
    geometry: Geometry = model.frontend if isinstance(model, HFCTCModel) else model.geometry
    if max_frames is None:
        waveform = getattr(model, "features", FEATURES).input == "waveform"
        max_frames = 16000 * (FEATURES.hop_length if waveform else 1)
    batches = make_batches([e.num_frames for e in examples], max_frames)
    bar = progress_bar(len(examples), "eval", enabled=progress)
    for idx in batches:
        batch = collate([examples[i] for i in idx], geometry)
        logits, _ = model.forward_padded(batch.features, batch.input_lengths)  # (B, K, T')
        log_probs = torch.log_softmax(logits, dim=1)
        per = ctc(
            log_probs.permute(2, 0, 1),
            batch.targets,
            batch.output_lengths,
            batch.target_lengths,
        )
        loss_sum += float(per)
        hyps = greedy_decode_batch(logits, batch.output_lengths)
        beams = beam.decode_batch(log_probs, batch.output_lengths) if beam is not None else None
        for j, ex in enumerate(batch.examples):
            ref, spk = ex.utterance.text, ex.utterance.speaker
            result.greedy.add(ref, hyps[j])
            result.per_speaker_greedy.setdefault(spk, ErrorCount()).add(ref, hyps[j])
            if beams is not None and result.beam is not None:
                result.beam.add(ref, beams[j])
                result.per_speaker_beam.setdefault(spk, ErrorCount()).add(ref, beams[j])
            result.samples.append((ex.id, ref, hyps[j]))
        bar.update(len(idx), frames=int(batch.input_lengths.sum()))
    bar.close()
    result.loss = loss_sum / max(1, len(examples))
    model.train(was_training)
    return result
