"""The Wav2Letter acoustic model (docs/method.md §3); its configs are in :mod:`gradnap.asr.config`.

A model is a ``torch.nn.Sequential`` of blocks ``layer1 .. layer11``; each block is a
``Conv1d`` named ``conv`` followed (except in the last block) by a ``ReLU`` named
``relu``. Addressing a block by name (``"layer2"``) means its post-activation output.
``forward`` returns logits ``(B, K, T')``; :meth:`Wav2Letter.probs` applies the softmax.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from gradnap.asr.config import CONFIGS, MODEL_CONFIGS, ConvTransformerConfig, ModelConfig
from gradnap.asr.transformer import ConvTransformer
from gradnap.defaults import FEATURES, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.geometry import Geometry

# PyTorch warns that "same" padding with an even kernel (layer 9, k=32) copies the input;
# that is expected here.
warnings.filterwarnings(
    "ignore", message="Using padding='same' with even kernel", category=UserWarning
)

__all__ = ["ModelConfig", "CONFIGS", "Wav2Letter", "build_model", "output_frame_seconds"]


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


def build_model(
    config: str | ModelConfig | ConvTransformerConfig, seed: int | None = None
) -> Wav2Letter | ConvTransformer:
    """A randomly initialised model of a named or given config: a :class:`Wav2Letter` for
    a :class:`ModelConfig`, a :class:`~gradnap.asr.transformer.ConvTransformer` for a
    :class:`ConvTransformerConfig`."""
    if isinstance(config, str):
        if config not in MODEL_CONFIGS:
            raise GradnapError(
                f"unknown model config {config!r}; choose from {', '.join(MODEL_CONFIGS)}"
            )
        config = MODEL_CONFIGS[config]
    if seed is not None:
        torch.manual_seed(seed)
    if isinstance(config, ConvTransformerConfig):
        return ConvTransformer(config)
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
