"""Model configs of the two architectures, without torch (the command line lists them
without importing the models): Wav2Letter (:class:`ModelConfig`, docs/method.md §3) and
the convolution + self-attention model (:class:`ConvTransformerConfig`,
:mod:`gradnap.asr.transformer`)."""

from __future__ import annotations

from dataclasses import dataclass

from gradnap.defaults import FEATURES, NUM_CLASSES, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry

__all__ = [
    "CONFIGS",
    "MODEL_CONFIGS",
    "TRANSFORMER_CONFIGS",
    "ConvTransformerConfig",
    "ModelConfig",
    "same_conv_specs",
]


def same_conv_specs(
    kernels: tuple[int, ...], strides: tuple[int, ...], paddings: tuple[int, ...] | None = None
) -> tuple[ConvSpec, ...]:
    """Time geometry of a stack of convolutions: ``paddings`` (symmetric) when given; else
    symmetric padding ``(k - s) // 2`` when strided, PyTorch's ``"same"`` (left
    ``(k-1)//2``, right the rest) otherwise, so a stride-1 layer keeps the length."""
    specs = []
    for i, (k, s) in enumerate(zip(kernels, strides, strict=True)):
        if paddings is not None:
            p = paddings[i]
            specs.append(ConvSpec(k, s, 1, p, p))
        elif s == 1:
            specs.append(ConvSpec(k, 1, 1, (k - 1) // 2, (k - 1) - (k - 1) // 2))
        else:
            p = (k - s) // 2
            specs.append(ConvSpec(k, s, 1, p, p))
    return tuple(specs)


def _output_frame_seconds(geometry: Geometry, frame, features: FeatureConfig):
    """Seconds at the receptive-field centre of ``geometry``'s output frame(s) ``frame``."""
    from gradnap.features import frame_to_seconds  # imports torch

    return frame_to_seconds(geometry.centre(frame, geometry.num_layers), features)


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
        """Time geometry of each layer (:func:`same_conv_specs`)."""
        return same_conv_specs(self.kernels, self.strides, self.paddings)

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.conv_specs())

    def output_frame_seconds(self, frame, features: FeatureConfig = FEATURES):
        """Time in seconds of the centre of output frame ``frame``'s receptive field.

        ``frame``: int, float or array of output-frame indices; returns the same shape.
        For the default configs (stride 2, receptive field 194) frame ``tau`` is centred
        on input frame ``2 * tau + 1.5``, i.e. ``(2 * tau + 1.5) * 8`` ms.
        """
        return _output_frame_seconds(self.geometry, frame, features)


CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig("paper", (250,) * 8 + (2000, 2000, NUM_CLASSES)),
    # CPU default: same depth, kernels and strides, widths chosen so that training fits
    # a 2-core machine in about two hours (see gradnap/data/MODEL_CARD.md).
    "default": ModelConfig("default", (96,) * 8 + (384, 384, NUM_CLASSES)),
}


@dataclass(frozen=True)
class ConvTransformerConfig:
    """A convolution front end and pre-LN self-attention blocks on log-mel input
    (:class:`gradnap.asr.transformer.ConvTransformer`).

    Front end: ``Conv1d`` + ReLU per entry of ``conv_channels`` / ``conv_kernels`` /
    ``conv_strides`` (padding as :func:`same_conv_specs`); then a depthwise convolution of
    ``position_kernel`` positions added to its output (the position signal, as in
    wav2vec 2.0, 0 = none); then ``num_blocks`` blocks of ``heads``-head self-attention
    and a ``ff_dim`` GELU feed-forward layer, each with a residual connection after a layer
    norm; a final layer norm and a linear map to ``num_classes``.
    """

    name: str
    conv_channels: tuple[int, ...] = (192, 192)
    conv_kernels: tuple[int, ...] = (11, 7)
    #: Stride 3: one output frame per 24 ms, at least 1.9 frames per letter (and repeat)
    #: in 1,500 utterances of the training corpus (stride 2 costs half as much again).
    conv_strides: tuple[int, ...] = (3, 1)
    #: 21 output frames, about 0.5 s.
    position_kernel: int = 21
    num_blocks: int = 4
    heads: int = 4
    ff_dim: int = 768
    #: Dropout in the blocks (0: none; on 2 CPU cores its random masks cost about a
    #: tenth of a training step).
    dropout: float = 0.0
    n_features: int = 128
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        n = len(self.conv_channels)
        if not n or not (n == len(self.conv_kernels) == len(self.conv_strides)):
            raise GradnapError(
                f"model config {self.name!r}: conv_channels, conv_kernels, conv_strides "
                "differ in length (or are empty)"
            )
        if self.dim % self.heads:
            raise GradnapError(
                f"model config {self.name!r}: width {self.dim} is not a multiple of "
                f"{self.heads} heads"
            )
        if self.position_kernel < 0 or self.num_blocks < 1:
            raise GradnapError(
                f"model config {self.name!r}: needs position_kernel >= 0 and num_blocks >= 1"
            )

    @property
    def dim(self) -> int:
        """The attention blocks' width (the front end's last width)."""
        return self.conv_channels[-1]

    def conv_specs(self) -> tuple[ConvSpec, ...]:
        """Time geometry of the front end's convolutions."""
        return same_conv_specs(self.conv_kernels, self.conv_strides)

    @property
    def geometry(self) -> Geometry:
        """The front end's geometry (output frame ``tau`` of the model is its frame ``tau``)."""
        return Geometry(self.conv_specs())

    def output_frame_seconds(self, frame, features: FeatureConfig = FEATURES):
        """Time in seconds of the centre of output frame ``frame``'s receptive field in the
        front end (the attention blocks see the whole utterance)."""
        return _output_frame_seconds(self.geometry, frame, features)


TRANSFORMER_CONFIGS: dict[str, ConvTransformerConfig] = {
    # about 2.3M parameters, the size of the "default" Wav2Letter; one output frame per
    # 24 ms (see gradnap/data/MODEL_CARD_transformer.md)
    "transformer": ConvTransformerConfig("transformer"),
}

#: Every named config, both architectures (``gradnap train --config``).
MODEL_CONFIGS: dict[str, ModelConfig | ConvTransformerConfig] = {
    **CONFIGS,
    **TRANSFORMER_CONFIGS,
}
