"""Model configs of the Wav2Letter architecture (docs/method.md §3), without torch: the
command line lists them without importing the model."""

from __future__ import annotations

from dataclasses import dataclass

from gradnap.defaults import FEATURES, NUM_CLASSES, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.geometry import ConvSpec, Geometry

__all__ = ["CONFIGS", "ModelConfig"]


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
        from gradnap.features import frame_to_seconds  # imports torch

        g = self.geometry
        return frame_to_seconds(g.centre(frame, g.num_layers), features)


CONFIGS: dict[str, ModelConfig] = {
    "paper": ModelConfig("paper", (250,) * 8 + (2000, 2000, NUM_CLASSES)),
    # CPU default: same depth, kernels and strides, widths chosen so that training fits
    # a 2-core machine in about two hours (see gradnap/data/MODEL_CARD.md).
    "default": ModelConfig("default", (96,) * 8 + (384, 384, NUM_CLASSES)),
}
