"""Help texts and helpers shared by several subcommands (this module adds no subcommand)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gradnap.errors import GradnapError

log = logging.getLogger(__name__)

#: ``--model`` of every command: one rule, the shipped checkpoint by default.
MODEL_HELP = (
    "a gradnap checkpoint, a Wav2Letter state dict file (bare or torchaudio layout) or "
    "'default', the shipped checkpoint"
)
#: What ``collect --model`` reads besides (after :data:`MODEL_HELP`).
HF_MODEL_HELP = (
    "; or a directory holding a Hugging Face transformers CTC checkpoint (wav2vec 2.0, "
    "HuBERT, WavLM ...; needs the hf extra, reads local files only)"
)
#: ``--model`` of the commands that read a result (the model draws the optimal inputs).
RESULT_MODEL_HELP = (
    "the model the result was collected on, for the optimal inputs: a model file, "
    "'default' or 'none' (default: 'default' when the result was collected on it, else "
    "none; a named model must have the result's weights)"
)
NO_PROGRESS_HELP = "no progress bar (and no progress lines in a log file)"
THREADS_HELP = "torch threads (default: the cores, at most 4)"
FEATURE_CACHE_HELP = "feature cache directory (default: the cache directory, $GRADNAP_CACHE)"


def result_model(result: Any, name: str | None, path: Path) -> Any:
    """The model for the optimal inputs of ``result`` (read from ``path``) by the rule of
    :data:`RESULT_MODEL_HELP`: ``None`` = the shipped model if the result was collected on
    it; ``"none"`` = no model. A named model with other weights than the result's is an
    error (its optimal inputs would belong to another model)."""
    from gradnap.asr.modelfile import load_model
    from gradnap.report.paper import same_model

    if name == "none":
        return None
    model = load_model(name or "default")  # a waveform model's are skipped where drawn
    if same_model(result, model):
        return model
    if name is None:
        log.info(
            "%s was not collected on the shipped model: no optimal inputs (name the model "
            "with --model)",
            path,
        )
        return None
    raise GradnapError(
        f"--model {name}: {path} was collected on another model (the weights differ); name "
        "that model, or --model none for no optimal inputs"
    )
