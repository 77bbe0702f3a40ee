"""Turn a model into a linear chain of Conv1d layers and elementwise operations.

The cone engine needs the model as a chain of *stages*: stage 0 holds elementwise
operations applied to the input (usually none); stage ``i >= 1`` is one ``Conv1d``
followed by zero or more elementwise operations (activations, per-channel affine maps).
Leaf modules are read in ``named_modules()`` order:

- ``Conv1d`` (any kernel, stride, dilation, numeric or ``"same"``/``"valid"`` padding,
  ``groups=1``, zero padding mode) starts a stage;
- elementwise activations (:data:`~gradnap.engine._layers.ACTIVATIONS`) are appended to it;
- ``Dropout`` (eval mode) and ``Identity`` are the identity;
- eval-mode ``BatchNorm1d`` is a per-channel affine map, folded into the convolution when it
  follows it directly;
- a trailing ``Softmax``/``LogSoftmax`` over the class axis sets the output kind.

Anything else raises :class:`ChainError`. Because module order need not be call order and
``forward`` may use functional operations, :func:`extract_chain` checks that every leaf runs
exactly once in that order and that the chain reproduces ``model(x)`` and every layer
output on a random input; otherwise it raises :class:`ChainError`.

A *position* ``(i, j)`` is the value after ``j`` elementwise operations of stage ``i``:
``(i, 0)`` is stage ``i``'s convolution output (pre-activation), ``(i, m_i)`` its final
output (post-activation). ``"input"`` is ``(0, 0)``. Every module name maps to the position
of its (last) leaf's output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gradnap.engine._layers import ACTIVATIONS, OUTPUT_KINDS, capture, check_layers, output_kind
from gradnap.engine.base import INPUT_LAYER
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry

__all__ = ["ChainError", "Stage", "Chain", "extract_chain"]

log = logging.getLogger(__name__)

_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class ChainError(GradnapError):
    """The model is not a chain of Conv1d layers and elementwise operations."""


class Affine:
    """Per-channel affine map ``x * scale[c] + shift[c]`` on ``(B, C, T)`` (an eval BatchNorm)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        self.scale = scale  # (C,)
        self.shift = shift  # (C,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None] + self.shift[:, None]


@dataclass
class Stage:
    """One convolution and the elementwise operations after it."""

    #: ``(C_out, C_in, k)`` (batch norm folded in); None for stage 0.
    weight: torch.Tensor | None = None
    #: ``(C_out,)``.
    bias: torch.Tensor | None = None
    spec: ConvSpec | None = None
    #: Elementwise functions ``(B, C, T) -> (B, C, T)`` applied in order.
    pointwise: list[Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=list)
    #: Leaf module names in this stage, with the position index j each one's output has.
    leaves: list[tuple[str, int]] = field(default_factory=list)

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution: ``x`` ``(B, C_in, T)`` -> ``(B, C_out, T')``."""
        assert self.weight is not None and self.spec is not None
        s = self.spec
        x = F.pad(x, (s.pad_left, s.pad_right))
        return F.conv1d(x, self.weight, self.bias, stride=s.stride, dilation=s.dilation)


@dataclass
class Chain:
    """A model as stages; see the module docstring."""

    stages: list[Stage]
    #: Module name (and ``"input"``) -> position ``(stage, j)``.
    positions: dict[str, tuple[int, int]]
    #: Output kind of the model's ``forward`` relative to the chain's final output.
    output: str
    #: Names of all modules, in order, whose subtree covers one stage only.
    _stage_local: set[str] = field(default_factory=set)

    @property
    def geometry(self) -> Geometry:
        return Geometry(tuple(st.spec for st in self.stages[1:]))  # type: ignore[misc]

    @property
    def num_stages(self) -> int:
        """Number of convolutions ``L``."""
        return len(self.stages) - 1

    def stage_names(self) -> list[str]:
        """One name per stage ``1..L`` for its final output, preferring the outermost module
        whose leaves all lie in that stage (the project's ``"layer2"`` block)."""
        names = []
        for i, st in enumerate(self.stages[1:], start=1):
            final = (i, len(st.pointwise))
            cands = [n for n, p in self.positions.items() if p == final and n in self._stage_local]
            cands.sort(key=lambda n: (n.count("."), n))
            names.append(cands[0])
        return names

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Values at every position: ``out[i][j]`` ``(B, C_i, T_i)``. ``x``: ``(B, F, T)``."""
        out: list[list[torch.Tensor]] = []
        a = x
        for st in self.stages:
            vals = [a if st.weight is None else st.conv(a)]
            for f in st.pointwise:
                # keep earlier positions intact under in-place activations
                u = vals[-1].clone() if getattr(f, "inplace", False) else vals[-1]
                vals.append(f(u))
            out.append(vals)
            a = vals[-1]
        return out

    def model_output(self, z: torch.Tensor) -> torch.Tensor:
        """The model's ``forward`` output from the chain's final output ``z`` ``(B, K, T')``."""
        if self.output == "log_probs":
            return torch.log_softmax(z, dim=1)
        if self.output == "probs":
            return torch.softmax(z, dim=1)
        return z


def _affine_of_batchnorm(bn: nn.BatchNorm1d, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.training:
        raise ChainError(f"{name}: BatchNorm1d in training mode (call model.eval())")
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ChainError(f"{name}: BatchNorm1d without running statistics uses batch statistics")
    inv = torch.rsqrt(bn.running_var.detach() + bn.eps)
    scale = inv if bn.weight is None else bn.weight.detach() * inv
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not any(m.children())]


def _build(model: nn.Module, output: str | None) -> tuple[list[Stage], str, list[nn.Module]]:
    """Stages from the leaf modules, without checking them against the model."""
    leaves = _leaves(model)
    # A trailing softmax / log-softmax over the class axis defines the output kind.
    kind_from_module = None
    if leaves and isinstance(leaves[-1][1], nn.Softmax | nn.LogSoftmax):
        last, m = leaves[-1]
        if m.dim not in (1, -2):
            raise ChainError(f"{last}: {type(m).__name__} over dim {m.dim}, not the class axis")
        kind_from_module = "probs" if isinstance(m, nn.Softmax) else "log_probs"
        leaves = leaves[:-1]
    kind = output_kind(model, output if output is not None else kind_from_module)
    if kind_from_module is not None and kind != kind_from_module:
        raise ChainError(f"model ends in {last} ({kind_from_module}) but output={kind!r}")

    stages = [Stage()]
    used: list[nn.Module] = []
    for name, m in leaves:
        st = stages[-1]
        if isinstance(m, nn.Conv1d):
            if m.groups != 1:
                raise ChainError(f"{name}: grouped Conv1d (groups={m.groups}) is not supported")
            try:
                spec = ConvSpec.from_conv(m)
            except ValueError as exc:
                raise ChainError(f"{name}: {exc}") from exc
            bias = m.bias.detach() if m.bias is not None else None
            stages.append(Stage(m.weight.detach(), bias, spec, [], [(name, 0)]))
        elif isinstance(m, nn.BatchNorm1d):
            scale, shift = _affine_of_batchnorm(m, name)
            if st.weight is not None and not st.pointwise:
                # Fold into the preceding convolution; its own output is no longer a position.
                st.leaves = [(n, j) for n, j in st.leaves if j != 0]
                w = st.weight * scale[:, None, None]
                b = shift if st.bias is None else st.bias * scale + shift
                st.weight, st.bias = w, b
                st.leaves.append((name, 0))
            else:
                st.pointwise.append(Affine(scale, shift))
                st.leaves.append((name, len(st.pointwise)))
        elif isinstance(m, ACTIVATIONS):
            st.pointwise.append(m)
            st.leaves.append((name, len(st.pointwise)))
        elif isinstance(m, _IDENTITY):
            if m.training and isinstance(m, _IDENTITY[1:]) and getattr(m, "p", 0) > 0:
                raise ChainError(f"{name}: dropout in training mode (call model.eval())")
            st.leaves.append((name, len(st.pointwise)))
        else:
            raise ChainError(
                f"{name}: {type(m).__name__} is not supported by the cone engine "
                "(Conv1d, elementwise activations, eval Dropout/BatchNorm1d only)"
            )
        used.append(m)
    if len(stages) < 2:
        raise ChainError("the model has no Conv1d layer")
    return stages, kind, used


def _positions(model: nn.Module, stages: list[Stage]) -> tuple[dict[str, tuple[int, int]], set]:
    leaf_pos: dict[str, tuple[int, int]] = {INPUT_LAYER: (0, 0)}
    for i, st in enumerate(stages):
        for name, j in st.leaves:
            leaf_pos[name] = (i, j)
    positions = {INPUT_LAYER: (0, 0)}
    local: set[str] = set()
    for name, m in model.named_modules():
        if not name:
            continue
        sub = [f"{name}.{n}" if n else name for n, _ in _leaves(m)]
        sub = [n for n in sub if n in leaf_pos]
        if not sub:
            continue
        positions[name] = leaf_pos[sub[-1]]
        if len({leaf_pos[n][0] for n in sub}) == 1:
            local.add(name)
    return positions, local


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def extract_chain(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    output: str | None = None,
    n_features: int | None = None,
    check_length: int | None = None,
    tol: float = 1e-4,
) -> Chain:
    """The model as a :class:`Chain`, checked against ``model(x)`` on a random input.

    ``layers``: names that must map to chain positions (checked against hooks too).
    ``output``: the model's output kind (default: ``model.output_kind``, else logits).
    ``n_features``: input channels (default: the first convolution's). ``check_length``:
    frames of the random input (default: twice the receptive field, at least 64).
    Raises :class:`ChainError` when the model is not such a chain or does not match it
    within relative error ``tol``.
    """
    stages, kind, used = _build(model, output)
    positions, local = _positions(model, stages)
    chain = Chain(stages, positions, kind, local)
    names = check_layers(model, layers) if layers is not None else []
    for name in names:
        if name not in positions:
            raise ChainError(f"layer {name!r} is not a position of the chain (folded or unused)")

    # Call order: every leaf exactly once, in module order.
    calls: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: calls.append(mod)) for m in set(used)]
    geometry = chain.geometry
    first = stages[1].weight
    assert first is not None
    n_in = n_features if n_features is not None else first.shape[1]
    length = check_length or max(64, 2 * geometry.receptive_field(geometry.num_layers))
    gen = torch.Generator(device="cpu").manual_seed(1234)
    x = torch.randn(1, n_in, length, generator=gen).to(first.device, first.dtype)
    try:
        with torch.no_grad(), capture(model, names) as captured:
            y = model(x)
    except Exception as exc:  # the model rejects the input: not what the chain expects
        raise ChainError(f"the model fails on a (1, {n_in}, {length}) input: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
    if [id(m) for m in calls] != [id(m) for m in used]:
        raise ChainError("the model's modules do not run once each in definition order")
    with torch.no_grad():
        vals = chain.forward(x)
        z = vals[-1][-1]
        if not isinstance(y, torch.Tensor) or y.shape != z.shape:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ChainError(f"model output {shape} differs from the chain's {tuple(z.shape)}")
        err = _rel_err(chain.model_output(z), y)
        if err > tol:
            hint = ""
            for other in OUTPUT_KINDS:
                if other != kind and _rel_err(Chain(stages, {}, other).model_output(z), y) <= tol:
                    hint = f"; the output looks like {other}: pass output={other!r}"
            raise ChainError(
                f"the chain of modules does not reproduce the model's output as {kind} "
                f"(relative error {err:.2g}){hint}"
            )
        for name in names:
            if name == INPUT_LAYER:
                continue
            i, j = positions[name]
            err = _rel_err(vals[i][j], captured[name])
            if err > tol:
                raise ChainError(f"layer {name!r}: chain value differs from the module output")
    log.debug("chain of %d convolutions, output %s", chain.num_stages, kind)
    return chain
