"""Receptive-field geometry of a stack of 1-D convolutions.

Positions are integer indices along time in each layer's output; layer 0 is the input.
Layer ``l`` maps its input positions to output position ``t`` through the window
``[t * stride - pad_left, t * stride - pad_left + dilation * (kernel - 1)]``.
All quantities (receptive field, output stride, cone width, the output frame <-> time
mapping) are derived from these numbers, never written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

__all__ = ["ConvSpec", "Geometry"]

#: A position: an int, or a tensor of them (computed elementwise).
_Pos = TypeVar("_Pos", int, "torch.Tensor")


@dataclass(frozen=True)
class ConvSpec:
    """Time geometry of one Conv1d layer."""

    kernel: int
    stride: int = 1
    dilation: int = 1
    pad_left: int = 0
    pad_right: int = 0

    @property
    def span(self) -> int:
        """Input positions covered by one output position."""
        return self.dilation * (self.kernel - 1) + 1

    def output_length(self, length: int) -> int:
        """Output positions for ``length`` input positions (0 when too short)."""
        return max(0, (length + self.pad_left + self.pad_right - self.span) // self.stride + 1)

    @classmethod
    def from_conv(cls, conv) -> ConvSpec:
        """Geometry of a ``torch.nn.Conv1d`` (numeric or ``"same"``/``"valid"`` padding)."""
        (k,), (s,), (d,) = conv.kernel_size, conv.stride, conv.dilation
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode {conv.padding_mode!r} is not supported (zeros only)")
        pad = conv.padding
        if pad == "same":
            total = d * (k - 1)
            left = total // 2
            return cls(k, s, d, left, total - left)
        if pad == "valid":
            return cls(k, s, d, 0, 0)
        (p,) = pad
        return cls(k, s, d, p, p)


@dataclass(frozen=True)
class Geometry:
    """Geometry of a chain of convolutions ``layers[0] .. layers[L-1]``.

    Index ``l`` in the methods below is a layer number: 0 = input, ``L`` = output.
    """

    layers: tuple[ConvSpec, ...]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def jump(self, layer: int) -> int:
        """Input frames between neighbouring positions of ``layer`` (cumulative stride)."""
        j = 1
        for spec in self.layers[:layer]:
            j *= spec.stride
        return j

    @property
    def output_stride(self) -> int:
        """Input frames per output frame."""
        return self.jump(self.num_layers)

    def span(self, start: _Pos, stop: _Pos, layer: int, to_layer: int = 0) -> tuple[_Pos, _Pos]:
        """Positions of ``to_layer`` that positions ``[start, stop]`` of ``layer`` depend on.

        Returns an inclusive range ``(lo, hi)``; it may reach outside the utterance (padding).
        """
        lo, hi = start, stop
        for spec in reversed(self.layers[to_layer:layer]):
            lo = lo * spec.stride - spec.pad_left
            hi = hi * spec.stride - spec.pad_left + spec.dilation * (spec.kernel - 1)
        return lo, hi

    def receptive_field(self, layer: int) -> int:
        """Input frames that one position of ``layer`` depends on (194 for the paper model's output)."""
        lo, hi = self.span(0, 0, layer, 0)
        return hi - lo + 1

    def cone(self, frame: _Pos, layer: int) -> tuple[_Pos, _Pos]:
        """Positions ``(lo, hi)`` (inclusive) of ``layer`` that output frame ``frame`` depends on
        (elementwise for a tensor of frames)."""
        return self.span(frame, frame, self.num_layers, layer)

    def cone_width(self, layer: int) -> int:
        """Width ``W_l`` of one output frame's cone in positions of ``layer`` (docs/method.md §1.3)."""
        lo, hi = self.cone(0, layer)
        return hi - lo + 1

    def output_length(self, length: int, layer: int | None = None) -> int:
        """Positions of ``layer`` (default: the output) for ``length`` input frames."""
        for spec in self.layers[: self.num_layers if layer is None else layer]:
            if length <= 0:  # an empty layer stays empty, padding or not
                return 0
            length = spec.output_length(length)
        return length

    def centre(self, position: float, layer: int) -> float:
        """Input frame (fractional) at the centre of the receptive field of ``position`` in ``layer``."""
        lo, hi = self.span(0, 0, layer, 0)
        return position * self.jump(layer) + (lo + hi) / 2
