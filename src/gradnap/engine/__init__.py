"""Sensitivity engines: per-frame gradients of the predicted class w.r.t. every layer.

- :class:`ConeEngine` — exact and fast for chains of Conv1d and elementwise operations
  (DESIGN §4); returns cone-wide windows.
- :class:`AutogradEngine` — any ``nn.Module``, batched autograd; whole-layer windows.
- :class:`ReferenceEngine` — one backward per frame; for tests and benchmarks.

:func:`make_engine` picks one; see :mod:`gradnap.engine.base` for the contract.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import nn

from ..defaults import METHOD
from ..errors import GradnapError
from .autograd import AutogradEngine
from .base import INPUT_LAYER, TARGETS, ForwardPass, SensitivityEngine, Window
from .chain import Chain, ChainError, extract_chain
from .cone import ConeEngine, cone_flops
from .layers import OUTPUT_KINDS, check_layers, default_layers, layer_names
from .reference import ReferenceEngine

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
) -> SensitivityEngine:
    """A sensitivity engine for ``model``.

    ``layers``: ``"input"`` and ``named_modules()`` names (default :func:`default_layers`);
    an unknown name raises :class:`GradnapError` listing the valid ones. ``target``:
    ``"prob"`` (default), ``"logprob"`` or ``"logit"``. ``kind``: ``"cone"``,
    ``"autograd"``, ``"reference"``, or ``"auto"`` — the cone engine when the model is a
    chain of Conv1d and elementwise operations that reproduces ``model(x)``, else the
    autograd engine (the reason is logged). ``output``: what ``model(x)`` returns,
    ``"logits"``, ``"log_probs"`` or ``"probs"`` (default ``model.output_kind``, else
    logits). ``workers``: threads for the cone engine (see :class:`ConeEngine`).
    """
    if kind not in ENGINE_KINDS:
        raise GradnapError(f"kind: unknown engine {kind!r}; choose from {', '.join(ENGINE_KINDS)}")
    layers = check_layers(model, layers) if layers is not None else default_layers(model)
    if kind == "autograd":
        return AutogradEngine(model, layers, target, output)
    if kind == "reference":
        return ReferenceEngine(model, layers, target, output)
    try:
        return ConeEngine(model, layers, target, output, workers=workers)
    except ChainError as exc:
        if kind == "cone":
            raise GradnapError(f"the cone engine cannot handle this model: {exc}") from exc
        log.info("using the autograd engine: %s", exc)
        return AutogradEngine(model, layers, target, output)
