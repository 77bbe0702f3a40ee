"""Optimal inputs: the input pattern that drives a layer's most responsive neurons
(docs/method.md §1.7).

:func:`optimal_input` searches a spectrogram window of the layer's receptive field by
gradient descent on the neurons' pre-activations at its centre, with L1 and L2 penalties;
:func:`optimal_input_for_profile` picks the neurons from a profile ``(C, W)`` by their
responsiveness (:mod:`gradnap.analysis.responsiveness`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gradnap.analysis.responsiveness import _as_profile, responsiveness, top_neurons
from gradnap.defaults import FEATURES, OPTIMAL_INPUT, OptimalInputConfig
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry

__all__ = [
    "OptimalInput",
    "optimal_input",
    "optimal_input_for_profile",
    "optimal_input_unsupported",
]

log = logging.getLogger(__name__)


@dataclass
class OptimalInput:
    """Result of :func:`optimal_input`."""

    #: The optimised input ``(F, RF_l)``: mel bins × input frames of the receptive field.
    x: np.ndarray
    #: Loss before each step and after the last one, ``(steps + 1,)``.
    losses: np.ndarray
    layer: str
    #: Neurons ``(k,)`` and the signs ``(k,)`` they were optimised with (+1 maximised,
    #: -1 minimised, 0 ignored).
    neurons: np.ndarray
    signs: np.ndarray
    #: Layer index (1-based among the Conv1d layers) and its receptive field in input frames.
    layer_index: int
    receptive_field: int
    #: Position in the layer's output whose receptive field is exactly ``x``.
    centre_position: int
    #: Pre-activations ``(k,)`` of the neurons at the centre before and after optimising.
    pre_start: np.ndarray
    pre_end: np.ndarray
    frame_ms: float = FEATURES.frame_seconds * 1000.0
    config: OptimalInputConfig = field(default=OPTIMAL_INPUT)

    @property
    def times_ms(self) -> np.ndarray:
        """Time of each frame of ``x`` in ms relative to the centre of the receptive field ``(RF,)``."""
        rf = self.x.shape[1]
        return (np.arange(rf) - (rf - 1) / 2.0) * self.frame_ms


class _Stop(Exception):
    """Raised by the forward hook once the pre-activation is captured."""


def _conv_modules(model: nn.Module) -> list[tuple[str, nn.Conv1d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d)]


def _layer_convs(model: nn.Module) -> dict[str, nn.Conv1d]:
    """Every addressable layer name -> the Conv1d whose output is its pre-activation.

    A module that holds Conv1d modules (a block, or a Conv1d itself) maps to its last one;
    a leaf without one (an activation such as ``acoustic_model.1`` in torchaudio's
    Wav2Letter, or ``layer2.relu``) maps to the last Conv1d before it in
    ``named_modules()`` order.
    """
    out: dict[str, nn.Conv1d] = {}
    last: nn.Conv1d | None = None
    for name, mod in model.named_modules():
        inner = [m for m in mod.modules() if isinstance(m, nn.Conv1d)]
        if isinstance(mod, nn.Conv1d):
            last = mod
        if not name:
            continue
        if inner:
            out[name] = inner[-1]
        elif last is not None and not any(True for _ in mod.children()):
            out[name] = last
    return out


def _resolve_layer(model: nn.Module, layer: str) -> tuple[nn.Conv1d, int]:
    """The Conv1d whose output is the pre-activation of ``layer`` and its 1-based index."""
    table = _layer_convs(model)
    if layer not in table:
        raise GradnapError(
            f"layer {layer!r}: not a convolutional layer of this model; valid layer names: "
            + ", ".join(table)
        )
    conv = table[layer]
    convs = [m for _, m in _conv_modules(model)]
    index = next(i for i, m in enumerate(convs) if m is conv) + 1
    return conv, index


def _model_geometry(model: nn.Module, index: int) -> Geometry:
    geom = getattr(model, "geometry", None)
    if isinstance(geom, Geometry) and geom.num_layers >= index:
        return geom
    specs = []
    for name, conv in _conv_modules(model)[:index]:
        try:
            specs.append(ConvSpec.from_conv(conv))
        except ValueError as exc:
            raise GradnapError(f"layer {name!r}: {exc}") from None
    return Geometry(tuple(specs))


def optimal_input_unsupported(model: nn.Module) -> str | None:
    """Why no optimal input (docs/method.md §1.7) can be searched for ``model``, or
    ``None`` when one can: the search space is a spectrogram window, so a model that
    takes the waveform (``model.features.input``) has none."""
    features = getattr(model, "features", FEATURES)
    kind = getattr(features, "input", "log_mel")
    if kind != "log_mel":
        return (
            f"optimal inputs are spectrogram windows (docs/method.md §1.7); the model "
            f"takes the {kind}"
        )
    return None


def optimal_input(
    model: nn.Module,
    layer: str,
    neurons: Sequence[int] | np.ndarray,
    signs: Sequence[float] | np.ndarray | None = None,
    *,
    config: OptimalInputConfig = OPTIMAL_INPUT,
    seed: int = 0,
    geometry: Geometry | None = None,
    n_features: int | None = None,
) -> OptimalInput:
    """Search the input that drives ``neurons`` of ``layer`` (docs/method.md §1.7).

    ``layer`` is a ``named_modules()`` name (``"layer2"`` for the project's models). Its
    pre-activation is the output of the Conv1d inside that block (the last one if there
    are several; the module itself if it is a Conv1d); an activation module without a
    Conv1d (``"layer2.relu"``, torchaudio's ``"acoustic_model.1"``) means the Conv1d
    before it in ``named_modules()`` order. ``signs[i] > 0`` maximises the
    pre-activation of ``neurons[i]``, ``< 0`` minimises it, ``0`` ignores it (default: all
    +1; pass the signs of the responsiveness, see :func:`optimal_input_for_profile`).

    The input ``x`` ``(F, RF_l)`` covers exactly the receptive field of one position of the
    layer. The model is treated as a chain of its Conv1d modules in ``named_modules()``
    order (the model's own ``geometry`` when it has one): position ``t`` of layer ``l``
    sees input frames ``[t*J + lo, t*J + hi]`` (``J`` the cumulative stride, ``lo <= 0``
    from the padding). The centre position is the smallest ``t`` with ``t*J + lo >= 0``;
    ``x`` is placed at those frames and preceded by ``t*J + lo`` zero frames (at most
    ``J - 1``; they lie outside the receptive field and do not affect the result). So every
    value that reaches the centre position is computed from ``x`` alone: no padding of any
    layer touches it. A forward hook on the Conv1d captures its output and stops the
    forward pass there.

    Loss (minimised with Adam, ``config.lr``, ``config.steps`` steps, from
    ``N(0, config.init_std²)`` seeded with ``seed``)::

        -Σ_{s>0} pre_n + Σ_{s<0} pre_n + (l1/RF)·‖x‖₁ + (l2/RF)·‖x‖₂²

    The model's parameters are not changed and get no gradients.
    """
    reason = optimal_input_unsupported(model)
    if reason is not None:
        raise GradnapError(reason)
    conv, index = _resolve_layer(model, layer)
    geom = geometry if geometry is not None else _model_geometry(model, index)
    if geom.num_layers < index:
        raise GradnapError(f"layer {layer!r}: geometry has {geom.num_layers} layers, need {index}")
    neurons_arr = np.asarray(list(neurons), dtype=np.int64).reshape(-1)
    if neurons_arr.size == 0:
        raise GradnapError("optimal_input: no neurons given")
    if neurons_arr.min() < 0 or neurons_arr.max() >= conv.out_channels:
        raise GradnapError(
            f"optimal_input: neurons {neurons_arr.tolist()} out of range for layer {layer!r} "
            f"with {conv.out_channels} neurons"
        )
    signs_arr = (
        np.ones(len(neurons_arr))
        if signs is None
        else np.sign(np.asarray(list(signs), dtype=np.float64).reshape(-1))
    )
    if signs_arr.shape != neurons_arr.shape:
        raise GradnapError(f"optimal_input: {len(signs_arr)} signs for {len(neurons_arr)} neurons")
    if not signs_arr.any():
        log.warning(
            "optimal input for %s %s: every sign is 0 (responsiveness 0), only the "
            "regulariser is minimised",
            layer,
            neurons_arr.tolist(),
        )
    if n_features is None:
        n_features = getattr(getattr(model, "config", None), "n_features", None)
        if n_features is None:
            n_features = _conv_modules(model)[0][1].in_channels
    lo, hi = geom.span(0, 0, index, 0)
    rf = hi - lo + 1
    jump = geom.jump(index)
    centre = max(0, math.ceil(-lo / jump))
    offset = centre * jump + lo  # zero frames before x
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32

    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = (torch.randn(n_features, rf, generator=gen, dtype=torch.float64) * config.init_std).to(
        device=device, dtype=dtype
    )
    x.requires_grad_(True)
    idx = torch.as_tensor(neurons_arr, device=device)
    w = torch.as_tensor(signs_arr, device=device, dtype=dtype)
    captured: dict[str, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        captured["pre"] = out
        raise _Stop

    def pre_activation(inp: torch.Tensor) -> torch.Tensor:  # (F, RF) -> (k,)
        full = torch.nn.functional.pad(inp, (offset, 0))[None]  # (1, F, offset + RF)
        handle = conv.register_forward_hook(hook)
        try:
            model(full)
        except _Stop:
            pass
        finally:
            handle.remove()
        if "pre" not in captured:
            raise GradnapError(f"layer {layer!r}: the model's forward never called its Conv1d")
        pre = captured.pop("pre")  # (1, C, T_l)
        if pre.shape[-1] <= centre:
            raise GradnapError(
                f"layer {layer!r}: output has {pre.shape[-1]} positions for {offset + rf} "
                f"input frames; centre position {centre} is missing"
            )
        return pre[0, idx, centre]

    def loss_of(inp: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        return (
            -(w * pre).sum()
            + (config.l1 / rf) * inp.abs().sum()
            + (config.l2 / rf) * inp.square().sum()
        )

    was_training = model.training
    model.eval()
    opt = torch.optim.Adam([x], lr=config.lr)
    losses: list[float] = []
    try:
        with torch.enable_grad():
            pre_start = None
            for _ in range(config.steps):
                pre = pre_activation(x)
                if pre_start is None:
                    pre_start = pre.detach().cpu().numpy().astype(np.float64)
                loss = loss_of(x, pre)
                (grad,) = torch.autograd.grad(loss, [x])
                losses.append(float(loss.detach()))
                x.grad = grad
                opt.step()
            with torch.no_grad():
                pre = pre_activation(x)
                losses.append(float(loss_of(x, pre)))
                pre_end = pre.cpu().numpy().astype(np.float64)
    finally:
        model.train(was_training)
    if pre_start is None:
        pre_start = pre_end
    log.debug(
        "optimal input %s %s: loss %.4g -> %.4g", layer, neurons_arr.tolist(), losses[0], losses[-1]
    )
    return OptimalInput(
        x=x.detach().cpu().numpy().astype(np.float64),
        losses=np.asarray(losses),
        layer=layer,
        neurons=neurons_arr,
        signs=signs_arr,
        layer_index=index,
        receptive_field=rf,
        centre_position=centre,
        pre_start=pre_start,
        pre_end=pre_end,
        config=config,
    )


def optimal_input_for_profile(
    model: nn.Module,
    layer: str,
    profile,
    *,
    k: int | None = None,
    config: OptimalInputConfig = OPTIMAL_INPUT,
    seed: int = 0,
    **kwargs,
) -> OptimalInput:
    """Optimal input for the ``k`` (default ``config.top_k``) most responsive neurons of a
    group's GradNAP ``profile`` ``(C_l, W_l)`` in ``layer``, each with the sign of its
    responsiveness."""
    p = _as_profile(profile)
    k = config.top_k if k is None else k
    top = top_neurons(p, k)
    r = responsiveness(p)
    return optimal_input(model, layer, top, np.sign(r[top]), config=config, seed=seed, **kwargs)
