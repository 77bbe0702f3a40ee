"""Wav2Letter acoustic models (DESIGN §3): configs and architecture.

A model is a ``torch.nn.Sequential`` of blocks ``layer1 .. layer11``; each block is a
``Conv1d`` named ``conv`` followed (except in the last block) by a ``ReLU`` named
``relu``. Addressing a block by name (``"layer2"``) means its post-activation output.
``forward`` returns logits ``(B, K, T')``; :meth:`Wav2Letter.probs` applies the softmax.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .defaults import NUM_CLASSES
from .errors import GradnapError
from .geometry import ConvSpec, Geometry

__all__ = ["ModelConfig", "CONFIGS", "Wav2Letter", "build_model"]


@dataclass(frozen=True)
class ModelConfig:
    """Widths, kernels and strides of a Wav2Letter stack (last width = number of classes)."""

    name: str
    channels: tuple[int, ...]
    kernels: tuple[int, ...] = (48, 7, 7, 7, 7, 7, 7, 7, 32, 1, 1)
    strides: tuple[int, ...] = (2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    n_features: int = 128

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.kernels) == len(self.strides)):
            raise GradnapError(
                f"model config {self.name!r}: channels, kernels, strides differ in length"
            )

    @property
    def num_classes(self) -> int:
        return self.channels[-1]

    def conv_specs(self) -> tuple[ConvSpec, ...]:
        """Time geometry of each layer: symmetric padding ``(k - s) // 2`` when strided,
        PyTorch's ``"same"`` (left ``(k-1)//2``, right the rest) otherwise."""
        specs = []
        for k, s in zip(self.kernels, self.strides, strict=True):
            if s == 1:
                specs.append(ConvSpec(k, 1, 1, (k - 1) // 2, (k - 1) - (k - 1) // 2))
            else:
                p = (k - s) // 2
                specs.append(ConvSpec(k, s, 1, p, p))
        return tuple(specs)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.conv_specs())


CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig("paper", (250,) * 8 + (2000, 2000, NUM_CLASSES)),
    "default": ModelConfig("default", (128,) * 8 + (1000, 1000, NUM_CLASSES)),
}


class Wav2Letter(nn.Sequential):
    """Wav2Letter: input ``(B, F, T)`` log-mel, output logits ``(B, K, T')``."""

    #: What ``forward`` returns; the engines read this.
    output_kind = "logits"

    def __init__(self, config: ModelConfig) -> None:
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        in_ch = config.n_features
        n = len(config.channels)
        for i, (spec, out_ch) in enumerate(zip(config.conv_specs(), config.channels, strict=True)):
            padding: int | str = "same" if spec.stride == 1 else spec.pad_left
            conv = nn.Conv1d(in_ch, out_ch, spec.kernel, stride=spec.stride, padding=padding)
            parts: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
            if i < n - 1:
                parts["relu"] = nn.ReLU()
            blocks[f"layer{i + 1}"] = nn.Sequential(parts)
            in_ch = out_ch
        super().__init__(blocks)
        self.config = config

    @property
    def geometry(self) -> Geometry:
        return self.config.geometry

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax output ``(B, K, T')`` for input ``(B, F, T)``."""
        return torch.softmax(self(x), dim=1)

    def layer_names(self) -> list[str]:
        """Names of the blocks, input side first."""
        return [name for name, _ in self.named_children()]


def build_model(config: str | ModelConfig, seed: int | None = None) -> Wav2Letter:
    """A randomly initialised model of a named or given config."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise GradnapError(f"unknown model config {config!r}; choose from {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    if seed is not None:
        torch.manual_seed(seed)
    return Wav2Letter(config)
