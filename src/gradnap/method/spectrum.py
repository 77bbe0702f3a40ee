"""The input spectrum of waveform models: aligned input windows as short-time power spectra
(docs/method.md §1.10).

A waveform model's input layer is one channel of samples, so its profiles are a single
row of ``W_0`` values whose sign flips every few samples: averaged over examples, the
signed sensitivities of different phases cancel, and nothing on the figure is in Hz.
The collector therefore also sums, for every example, the short-time power spectra of
its aligned input window (the input's power, in dB) and of its aligned input sensitivity
(its magnitude) as one more layer, :data:`SPECTRUM_LAYER` ``(F, T_s)``: frequency bins in Hz ×
analysis frames every hop around ``t*``. Spectral magnitudes and powers do not depend on
the phase, so they do not cancel in the mean. The layer is aligned, summed per group, saved, merged and
resumed like every other layer; §1.4's profiles apply to it unchanged, and
:func:`gradnap.method.profiles.relative_magnitude_db` gives a group's sensitivity
magnitude against the dataset's.

Frames (:func:`spectrum_layout`): frame ``k`` (``-K .. K``) covers the window columns
``c + k·hop − n//2 .. c + k·hop − n//2 + n − 1`` (``c = W_0 // 2``, the column of ``t*``;
``n`` samples = ``frame_ms``), with ``K`` as large as the window allows on both sides, so
the spectrum layer is ``T_s = 2K + 1`` frames wide and its centre frame is centred on
``t*``. A frame is data when all its samples are (frames reaching past the utterance's
ends are not data, as positions outside the utterance are not, §1.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gradnap.defaults import SPECTRUM, SpectrumConfig
from gradnap.errors import GradnapError
from gradnap.method.windows import Aligned

__all__ = [
    "SPECTRUM_LAYER",
    "SpectrumLayout",
    "short_time_power",
    "spectrum_aligned",
    "spectrum_layout",
]

#: Name of the derived layer holding the input spectrum of a waveform model.
SPECTRUM_LAYER = "input.spectrum"


@dataclass(frozen=True)
class SpectrumLayout:
    """Where the analysis frames of an input window lie (see the module doc)."""

    #: Samples per frame (the Hann window) and per hop.
    frame: int
    hop: int
    #: ``T_s = 2K + 1``: frames per window.
    frames: int
    #: Window column of the first sample of frame ``-K``.
    first: int
    #: Samples per second.
    sample_rate: int

    @property
    def channels(self) -> int:
        """``F``: frequency bins ``0 .. sample_rate / 2``."""
        return self.frame // 2 + 1

    @property
    def frequencies_hz(self) -> np.ndarray:
        """``(F,)`` the frequency of each bin in Hz (linear: every ``sample_rate / frame``)."""
        return np.fft.rfftfreq(self.frame, 1.0 / self.sample_rate)


def spectrum_layout(
    width: int, sample_rate: int, config: SpectrumConfig = SPECTRUM
) -> SpectrumLayout:
    """The frames of an input window of ``width`` samples (module doc). Raises
    :class:`GradnapError` when the window is shorter than one frame."""
    n = int(round(config.frame_ms * sample_rate / 1000.0))
    hop = int(round(config.hop_ms * sample_rate / 1000.0))
    if n < 2 or hop < 1:
        raise GradnapError(
            f"input spectrum: frames of {config.frame_ms} ms every {config.hop_ms} ms are "
            f"{n} and {hop} samples at {sample_rate} Hz; need at least 2 and 1"
        )
    c = width // 2
    k = min((c - n // 2) // hop, (width - c - n + n // 2) // hop)
    if c - n // 2 < 0 or k < 0:
        raise GradnapError(
            f"input spectrum: the input window of {width} samples is shorter than one "
            f"{config.frame_ms:g} ms frame ({n} samples); widen the input window"
        )
    return SpectrumLayout(n, hop, 2 * k + 1, c - k * hop - n // 2, int(sample_rate))


def _frames(x: torch.Tensor, layout: SpectrumLayout) -> torch.Tensor:
    """``(n, W)`` -> ``(n, T_s, frame)``: the samples of every frame."""
    end = layout.first + (layout.frames - 1) * layout.hop + layout.frame
    return x[:, layout.first : end].unfold(1, layout.frame, layout.hop)


def short_time_power(x: torch.Tensor, layout: SpectrumLayout) -> torch.Tensor:
    """Power spectra of the frames of ``x`` ``(n, W)``: ``(n, F, T_s)`` float32.

    Each frame is multiplied by a (periodic) Hann window ``w``; the power of bin ``f`` is
    ``|Σ_m w[m] x[m] e^{−2πi f m / n}|² / Σ_m w[m]²``, so white noise of variance ``σ²``
    has expected power ``σ²`` in every bin."""
    window = torch.hann_window(layout.frame, periodic=True, dtype=torch.float64)
    frames = _frames(x.to(torch.float64), layout) * window
    power = torch.fft.rfft(frames, dim=-1).abs().square() / window.square().sum()
    return power.transpose(1, 2).to(torch.float32)


def spectrum_aligned(
    aligned: Aligned, layout: SpectrumLayout, config: SpectrumConfig = SPECTRUM
) -> Aligned:
    """The input layer's aligned windows (one channel, ``(n, 1, W)``) as the aligned
    windows of :data:`SPECTRUM_LAYER` ``(n, F, T_s)``: activations the input's power in dB
    (``10·log10(P + 10^(floor_db/10))``), sensitivities the sensitivity's magnitude
    ``sqrt(P)`` (linear in the gradient, as the mask of §1.4 is), both 0 at frames
    without data."""
    if aligned.act.shape[1] != 1:
        raise GradnapError(
            f"input spectrum: the input layer has {aligned.act.shape[1]} channels; "
            "it is defined for waveform input (one channel)"
        )
    valid = _frames(aligned.valid.to(torch.float32), layout).amin(dim=2) > 0  # (n, T_s)
    keep = valid[:, None, :].to(torch.float32)
    floor = 10.0 ** (config.floor_db / 10.0)
    act = 10.0 * torch.log10(short_time_power(aligned.act[:, 0], layout) + floor) * keep
    grad = short_time_power(aligned.grad[:, 0], layout).sqrt() * keep
    sq = act.to(torch.float64).square().sum(dim=2)
    return Aligned(act, grad, valid, aligned.centre, sq, nonnegative=False)
