"""Layer names, model output kinds, targets, and capturing layer outputs with hooks.

A layer is addressed by its ``named_modules()`` name; its value is that module's output
(for a container such as the project's ``"layer2"`` block: the output of its last module,
the post-ReLU activations). ``"input"`` is layer 0, the input spectrogram.

A model's ``forward`` returns ``(B, K, T')`` scores of one of three kinds
(:data:`OUTPUT_KINDS`): ``"logits"`` (the project's :class:`~gradnap.asr.model.Wav2Letter`),
``"log_probs"`` (torchaudio's ``Wav2Letter``, which ends in ``log_softmax``) or
``"probs"``. The kind is read from the model's ``output_kind`` attribute unless given.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from gradnap.engine.base import INPUT_LAYER, TARGETS
from gradnap.errors import GradnapError

__all__ = [
    "OUTPUT_KINDS",
    "ACTIVATIONS",
    "layer_names",
    "check_layers",
    "output_kind",
    "check_target",
    "target_values",
    "capture",
]

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("logits", "log_probs", "probs")

#: Elementwise activation modules (a diagonal Jacobian): the cone engine supports these.
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Softplus,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Tanhshrink,
    nn.Softsign,
    nn.LogSigmoid,
)


def layer_names(model: nn.Module) -> list[str]:
    """Every name a layer can be addressed by: ``"input"`` and the ``named_modules()`` names."""
    return [INPUT_LAYER] + [name for name, _ in model.named_modules() if name]


def check_layers(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Return ``layers`` as a list; raise :class:`GradnapError` for an unknown or repeated name.

    The message lists the valid names.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise GradnapError("layers: no layer names given")
    valid = layer_names(model)
    known = set(valid)
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise GradnapError(
            f"layers: unknown layer name(s) {', '.join(map(repr, unknown))} for "
            f"{type(model).__name__}; valid names are: {', '.join(valid)}"
        )
    seen: set[str] = set()
    for name in layers:
        if name in seen:
            raise GradnapError(f"layers: layer {name!r} is listed twice")
        seen.add(name)
    return layers


def output_kind(model: nn.Module, output: str | None = None) -> str:
    """The model's output kind: ``output`` if given, else ``model.output_kind``, else logits."""
    kind = output if output is not None else getattr(model, "output_kind", "logits")
    if kind not in OUTPUT_KINDS:
        raise GradnapError(
            f"output: unknown model output kind {kind!r}; choose from {OUTPUT_KINDS}"
        )
    return kind


def check_target(target: str, kind: str) -> None:
    """Raise :class:`GradnapError` unless ``target`` can be computed from ``kind`` outputs."""
    if target not in TARGETS:
        raise GradnapError(f"target: unknown target {target!r}; choose from {', '.join(TARGETS)}")
    if target == "logit" and kind != "logits":
        raise GradnapError(
            f"target 'logit' needs a model that outputs logits; this one outputs {kind} "
            "(use target 'prob' or 'logprob')"
        )


def target_values(y: torch.Tensor, kind: str, target: str) -> torch.Tensor:
    """The differentiated quantity for every class and frame.

    ``y``: model output ``(..., K, T')`` of kind ``kind``. Returns the same shape:
    probabilities, log-probabilities or logits (``target``), computed with autograd-able
    operations so that gradients flow to ``y``.
    """
    if target == "logit":
        return y
    if kind == "logits":
        return torch.softmax(y, dim=-2) if target == "prob" else torch.log_softmax(y, dim=-2)
    if kind == "log_probs":
        return y.exp() if target == "prob" else y
    return y if target == "prob" else y.log()


def probabilities(y: torch.Tensor, kind: str) -> torch.Tensor:
    """Softmax probabilities ``(..., K, T')`` from a model output of kind ``kind``."""
    return target_values(y, kind, "prob")


@contextmanager
def capture(
    model: nn.Module,
    names: Sequence[str],
    time_major: Collection[str] = (),
    start_graph: bool = False,
    cut: Collection[str] = (),
    attached: dict[str, torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named modules during forward passes in this context.

    Yields a dict filled by forward hooks, in the order the modules finish: name ->
    output ``(B, C, T)``. A module returning a tuple (or a ``transformers``
    ``ModelOutput``) is recorded by its first tensor. Modules in ``time_major`` output
    ``(B, T, C)``: the recorded tensor is its ``(B, C, T)`` view, which the rest of the
    model depends on, so gradients with respect to it come channel-major too.

    The hook hands a clone to the rest of the model, so later in-place operations
    (``ReLU(inplace=True)``) do not change the recorded tensor and gradients with respect
    to it are well defined. A module that runs more than once per forward pass keeps its
    last output. ``"input"`` is not handled here (the caller owns the input tensor).

    ``start_graph``: when a hooked module finishes while gradients are off (the forward
    runs under ``torch.no_grad()``), its output becomes a leaf that requires gradients
    and gradients are switched on for the rest of the forward pass (the calling
    ``no_grad`` context restores the mode): the autograd graph then starts at the first
    recorded layer, and nothing before it is kept for a backward pass that never reaches
    it.

    ``cut``: modules whose output the rest of the model takes from a new leaf, cutting
    the graph there: the dict holds the leaf's view, ``attached`` (given) the view of the
    output in the graph below.
    """
    from gradnap.asr.hf import first_tensor, replace_first

    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    handles = []
    transposed = frozenset(time_major)
    cuts = frozenset(cut)

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            first = first_tensor(output)
            if first is None:
                raise GradnapError(
                    f"layer {name!r}: module output is a {type(output).__name__}, not a tensor"
                )
            if start_graph and not torch.is_grad_enabled():
                first = first.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            if name in transposed and first.dim() != 3:
                raise GradnapError(
                    f"layer {name!r}: expected a (batch, time, channels) output, got "
                    f"{tuple(first.shape)}"
                )
            if name in cuts and attached is not None:
                attached[name] = first.transpose(1, 2) if name in transposed else first
                first = first.detach().requires_grad_(True)
            if name in transposed:
                recorded = first.transpose(1, 2)
                passed = recorded.transpose(1, 2).clone()
            else:
                recorded, passed = first, first.clone()
            store.pop(name, None)  # the order of the last run
            store[name] = recorded
            return replace_first(output, passed)

        return hook

    try:
        for name in names:
            if name != INPUT_LAYER:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()
