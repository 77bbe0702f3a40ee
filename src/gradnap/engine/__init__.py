"""Sensitivity engines: per-frame gradients of the predicted class w.r.t. every layer.

- :class:`ConeEngine` — exact and fast for chains of Conv1d and elementwise operations
  (docs/method.md §4); returns cone-wide windows.
- :class:`AutogradEngine` — any ``nn.Module`` (Hugging Face transformer CTC models
  included): one forward pass per utterance, then per-frame or batched backward passes;
  whole-layer windows.
- :class:`ReferenceEngine` — one backward per frame; for tests and benchmarks.

:func:`make_engine` picks one; see :mod:`gradnap.engine.base` for the contract.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from gradnap.defaults import METHOD
from gradnap.engine._autograd import AutogradEngine
from gradnap.engine._chain import Chain, ChainError, extract_chain
from gradnap.engine._cone import ConeEngine, cone_flops
from gradnap.engine._layers import ACTIVATIONS, OUTPUT_KINDS, check_layers, layer_names
from gradnap.engine._reference import ReferenceEngine
from gradnap.engine.base import INPUT_LAYER, TARGETS, ForwardPass, SensitivityEngine, Window
from gradnap.errors import GradnapError

__all__ = [
    "AutogradEngine",
    "Chain",
    "ChainError",
    "ConeEngine",
    "ENGINE_KINDS",
    "ForwardPass",
    "INPUT_LAYER",
    "OUTPUT_KINDS",
    "ReferenceEngine",
    "SensitivityEngine",
    "TARGETS",
    "Window",
    "check_layers",
    "cone_flops",
    "default_layers",
    "extract_chain",
    "layer_names",
    "make_engine",
]

log = logging.getLogger(__name__)

ENGINE_KINDS = ("auto", "cone", "autograd", "reference")


def make_engine(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    target: str = METHOD.target,
    kind: str = "auto",
    output: str | None = None,
    workers: int | None = None,
    strategy: str = "auto",
) -> SensitivityEngine:
    """A sensitivity engine for ``model``.

    ``layers``: ``"input"`` and ``named_modules()`` names (default :func:`default_layers`);
    an unknown name raises :class:`GradnapError` listing the valid ones. ``target``:
    ``"prob"`` (default), ``"logprob"`` or ``"logit"``. ``kind``: ``"cone"``,
    ``"autograd"``, ``"reference"``, or ``"auto"`` — the cone engine when the model is a
    chain of Conv1d and elementwise operations that reproduces ``model(x)``, else the
    autograd engine (the reason is logged). ``output``: what ``model(x)`` returns,
    ``"logits"``, ``"log_probs"`` or ``"probs"`` (default ``model.output_kind``, else
    logits). ``workers``: threads for the cone and autograd engines (see
    :class:`ConeEngine`, :class:`AutogradEngine`). ``strategy``: the autograd engine's
    (``"auto"``, ``"per_frame"``, ``"vjp"`` or ``"batch"``; a fixed one makes its
    results the same bit for bit in every process); the other engines ignore it.
    """
    if kind not in ENGINE_KINDS:
        raise GradnapError(f"kind: unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")
    model.eval()
    names = check_layers(model, layers) if layers is not None else None
    chain = None
    try:  # the one place a model is tried as a Conv1d chain
        if callable(getattr(model, "window_layout", None)):  # declares its own windows
            raise ChainError(f"{type(model).__name__} is not a Conv1d chain (attention)")
        chain = extract_chain(model, names, output)
    except ChainError as exc:
        if kind == "cone":
            raise GradnapError(f"the cone engine cannot handle this model: {exc}") from exc
        if kind == "auto":
            log.info("using the autograd engine: %s", exc)
    if names is None:
        names = _default_layers(model, chain)
    if kind in ("auto", "cone") and chain is not None:
        return ConeEngine(model, names, target, output, workers=workers, chain=chain)
    # the other engines keep the chain for its geometry (cone widths, t* search ranges)
    if kind == "reference":
        return ReferenceEngine(model, names, target, output, chain=chain)
    return AutogradEngine(
        model, names, target, output, chain=chain, workers=workers, strategy=strategy
    )


def default_layers(model: nn.Module) -> list[str]:
    """``"input"``, every post-activation layer output, and the output layer.

    For a model the cone engine understands (a chain of Conv1d and elementwise ops) this
    is one name per convolution block, preferring the block's container name: for the
    project's ``Wav2Letter`` ``["input", "layer1", ..., "layer11"]``; for torchaudio's
    ``Wav2Letter`` ``["input", "acoustic_model.1", "acoustic_model.3", ...]``. A model
    may declare its own (``model.default_layers``, a list): a Hugging Face CTC model
    (:class:`gradnap.asr.hf.HFCTCModel`) gives its front end's last convolution block,
    every encoder layer and ``lm_head``, without the waveform input (whose per-frame
    backward pass runs through the whole conv front end; ask for ``"input"`` by name).
    For any other model: ``"input"``, every activation module and the last module.
    """
    try:
        chain = extract_chain(model)
    except ChainError:
        chain = None
    return _default_layers(model, chain)


def _default_layers(model: nn.Module, chain: Chain | None) -> list[str]:
    declared = getattr(model, "default_layers", None)
    if isinstance(declared, list | tuple):
        return list(declared)
    if chain is not None:
        return [INPUT_LAYER] + chain.stage_names()
    names = [INPUT_LAYER]
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(m.children())]
    names += [n for n, m in leaves if isinstance(m, ACTIVATIONS)]
    if leaves and leaves[-1][0] not in names:
        names.append(leaves[-1][0])
    return names
