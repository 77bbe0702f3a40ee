"""Wav2Letter acoustic models (DESIGN §3): configs and architecture.

A model is a ``torch.nn.Sequential`` of blocks ``layer1 .. layer11``; each block is a
``Conv1d`` named ``conv`` followed (except in the last block) by a ``ReLU`` named
``relu``. Addressing a block by name (``"layer2"``) means its post-activation output.
``forward`` returns logits ``(B, K, T')``; :meth:`Wav2Letter.probs` applies the softmax.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from gradnap.defaults import FEATURES, NUM_CLASSES, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.features import frame_to_seconds
from gradnap.geometry import ConvSpec, Geometry

# PyTorch warns that "same" padding with an even kernel (layer 9, k=32) copies the input;
# that is expected here.
warnings.filterwarnings(
    "ignore", message="Using padding='same' with even kernel", category=UserWarning
)

__all__ = ["ModelConfig", "CONFIGS", "Wav2Letter", "build_model", "output_frame_seconds"]


@dataclass(frozen=True)
class ModelConfig:
    """Widths, kernels and strides of a Wav2Letter stack (last width = number of classes)."""

    name: str
    channels: tuple[int, ...]
    kernels: tuple[int, ...] = (48, 7, 7, 7, 7, 7, 7, 7, 32, 1, 1)
    strides: tuple[int, ...] = (2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
    n_features: int = 128
    #: Symmetric zero padding per layer, as in torchaudio's ``Wav2Letter`` (23, 3, ..., 16,
    #: 0, 0). ``None`` (default): ``(k - s) // 2`` on both sides when strided, PyTorch's
    #: ``"same"`` otherwise, so a stride-1 layer keeps the length.
    paddings: tuple[int, ...] | None = None
    #: A ReLU after the last convolution too (torchaudio's ``Wav2Letter`` has one); the
    #: last block then also has a ``relu`` child.
    final_relu: bool = False

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.kernels) == len(self.strides)):
            raise GradnapError(
                f"model config {self.name!r}: channels, kernels, strides differ in length"
            )
        if self.paddings is not None and len(self.paddings) != len(self.kernels):
            raise GradnapError(
                f"model config {self.name!r}: {len(self.paddings)} paddings for "
                f"{len(self.kernels)} layers"
            )

    @property
    def num_classes(self) -> int:
        return self.channels[-1]

    def conv_specs(self) -> tuple[ConvSpec, ...]:
        """Time geometry of each layer: ``paddings`` when given; else symmetric padding
        ``(k - s) // 2`` when strided, PyTorch's ``"same"`` (left ``(k-1)//2``, right the
        rest) otherwise."""
        specs = []
        for i, (k, s) in enumerate(zip(self.kernels, self.strides, strict=True)):
            if self.paddings is not None:
                p = self.paddings[i]
                specs.append(ConvSpec(k, s, 1, p, p))
            elif s == 1:
                specs.append(ConvSpec(k, 1, 1, (k - 1) // 2, (k - 1) - (k - 1) // 2))
            else:
                p = (k - s) // 2
                specs.append(ConvSpec(k, s, 1, p, p))
        return tuple(specs)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.conv_specs())

    def output_frame_seconds(self, frame, features: FeatureConfig = FEATURES):
        """Time in seconds of the centre of output frame ``frame``'s receptive field.

        ``frame``: int, float or array of output-frame indices; returns the same shape.
        For the default configs (stride 2, receptive field 194) frame ``tau`` is centred
        on input frame ``2 * tau + 1.5``, i.e. ``(2 * tau + 1.5) * 8`` ms.
        """
        g = self.geometry
        return frame_to_seconds(g.centre(frame, g.num_layers), features)


CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig("paper", (250,) * 8 + (2000, 2000, NUM_CLASSES)),
    # CPU default: same depth, kernels and strides, widths chosen so that training fits
    # a 2-core machine in about two hours (see gradnap/data/MODEL_CARD.md).
    "default": ModelConfig("default", (96,) * 8 + (384, 384, NUM_CLASSES)),
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
            symmetric = spec.pad_left == spec.pad_right
            padding: int | str = spec.pad_left if symmetric else "same"
            conv = nn.Conv1d(in_ch, out_ch, spec.kernel, stride=spec.stride, padding=padding)
            parts: OrderedDict[str, nn.Module] = OrderedDict(conv=conv)
            if i < n - 1 or config.final_relu:
                parts["relu"] = nn.ReLU()
            blocks[f"layer{i + 1}"] = nn.Sequential(parts)
            in_ch = out_ch
        super().__init__(blocks)
        self.config = config
        self.reset_parameters()
        #: Feature settings the model expects (a checkpoint sets them).
        self.features: FeatureConfig = FEATURES
        #: Training metadata from a checkpoint (empty for a new model).
        self.metadata: dict = {}

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation for the ReLU layers, its linear-gain variant
        for a last layer without ReLU, zero biases.

        Without normalisation layers PyTorch's default Conv1d initialisation shrinks the
        signal about tenfold every two layers (output ~1/30 of the input after eleven
        layers), so CTC training sits long on the all-blank plateau; this keeps the
        activations' scale through the stack.
        """
        for block in self:
            conv = block.conv
            assert isinstance(conv, nn.Conv1d) and conv.bias is not None  # built in __init__
            gain: Literal["relu", "linear"] = "relu" if hasattr(block, "relu") else "linear"
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity=gain)
            nn.init.zeros_(conv.bias)

    @property
    def geometry(self) -> Geometry:
        return self.config.geometry

    def output_frame_seconds(self, frame):
        """Seconds at the receptive-field centre of output frame(s) ``frame`` (see
        :meth:`ModelConfig.output_frame_seconds`), with this model's feature settings."""
        return self.config.output_frame_seconds(frame, self.features)

    def forward_padded(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward pass of a zero-padded batch, exactly as if each utterance ran alone.

        ``x``: ``(B, F, T)`` with utterance ``b`` in frames ``0 .. lengths[b] - 1`` and
        zeros after; ``lengths``: ``(B,)`` int64. After every block the positions past
        each utterance's own length are set to zero (what "same" zero padding of a single
        utterance sees). Returns logits ``(B, K, T')`` (zero past each length) and the
        output lengths ``(B,)``.
        """
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        for spec, block in zip(self.config.conv_specs(), self, strict=True):
            x = block(x)
            lengths = torch.clamp(
                (lengths + spec.pad_left + spec.pad_right - spec.span) // spec.stride + 1, min=0
            )
            keep = torch.arange(x.shape[2]) < lengths[:, None]  # (B, T_l)
            x = x * keep[:, None, :].to(x.dtype)
        return x, lengths

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


def output_frame_seconds(
    model: Wav2Letter | ModelConfig, frame, features: FeatureConfig | None = None
):
    """Seconds at the receptive-field centre of output frame(s) ``frame`` of ``model``.

    ``features`` defaults to the model's own feature settings (or :data:`FEATURES`).
    """
    config = model.config if isinstance(model, Wav2Letter) else model
    if features is None:
        features = getattr(model, "features", FEATURES)
    return config.output_frame_seconds(frame, features)
