"""The input spectrum of waveform models (gradnap.method.spectrum, docs/method.md §1.10),
on hand-made windows whose answer is known."""

import numpy as np
import pytest
import torch

from gradnap.defaults import SpectrumConfig
from gradnap.errors import GradnapError
from gradnap.method.accumulators import GroupingSums, chunk_stats
from gradnap.method.profiles import relative_magnitude_db
from gradnap.method.spectrum import (
    SPECTRUM_LAYER,
    short_time_power,
    spectrum_aligned,
    spectrum_layout,
)
from gradnap.method.windows import Aligned

SR = 16000
WIDTH = 8085  # the input window of tests/test_hf.py's tiny models (85 + 100 * 80 samples)


def aligned(act: torch.Tensor, grad: torch.Tensor, valid: torch.Tensor | None = None) -> Aligned:
    """One-channel input windows ``(n, W)`` as the input layer's :class:`Aligned`."""
    n, w = act.shape
    valid = torch.ones(n, w, dtype=torch.bool) if valid is None else valid
    act, grad = act * valid, grad * valid
    return Aligned(
        act[:, None, :].float(),
        grad[:, None, :].float(),
        valid,
        torch.full((n,), w // 2),
        act.double().square().sum(dim=1, keepdim=True),
        nonnegative=False,
    )


def test_layout_centres_a_frame_on_t_star():
    lay = spectrum_layout(WIDTH, SR)
    assert (lay.frame, lay.hop, lay.channels) == (400, 160, 201)
    assert lay.frames == 49  # ±24 hops of 10 ms: ±240 ms
    centre = lay.first + (lay.frames // 2) * lay.hop + lay.frame // 2
    assert centre == WIDTH // 2  # the middle frame is centred on the column of t*
    assert lay.first >= 0 and lay.first + (lay.frames - 1) * lay.hop + lay.frame <= WIDTH
    np.testing.assert_allclose(lay.frequencies_hz[[0, 1, -1]], [0.0, 40.0, 8000.0])
    # 8 kHz: 200-sample frames, bins every 40 Hz up to 4 kHz
    assert spectrum_layout(WIDTH, 8000).channels == 101
    with pytest.raises(GradnapError, match="shorter than one 25 ms frame"):
        spectrum_layout(399, SR)
    assert spectrum_layout(400, SR).frames == 1


def test_an_impulse_lands_in_the_frame_centred_on_it():
    lay = spectrum_layout(WIDTH, SR)
    x = torch.zeros(1, WIDTH)
    x[0, WIDTH // 2 + 3 * lay.hop] = 1.0  # 30 ms after t*
    power = short_time_power(x, lay)[0]  # (F, T)
    assert int(power.sum(dim=0).argmax()) == lay.frames // 2 + 3


@pytest.mark.parametrize("freq", [440.0, 1240.0, 3000.0, 6520.0])
def test_a_sinusoid_peaks_at_its_frequency(freq):
    lay = spectrum_layout(WIDTH, SR)
    t = torch.arange(WIDTH, dtype=torch.float64) / SR
    g = torch.Generator().manual_seed(0)
    phases = torch.rand(6, 1, generator=g, dtype=torch.float64) * 2 * np.pi
    sens = torch.sin(2 * np.pi * freq * t + phases)  # sensitivities of 6 examples
    audio = 0.01 * torch.randn(6, WIDTH, generator=g, dtype=torch.float64)
    spec = spectrum_aligned(aligned(audio, sens), lay)
    assert spec.grad.shape == (6, 201, 49) and spec.act.shape == (6, 201, 49)
    peak = lay.frequencies_hz[spec.grad.mean(dim=(0, 2)).argmax()]
    assert abs(peak - freq) <= 20.0  # the nearest 40 Hz bin
    # the raw sinusoids of random phases cancel in the mean; their spectra do not
    assert float(sens.mean(dim=0).abs().max()) < 0.6
    assert bool((spec.grad.mean(dim=0).argmax(dim=0) == spec.grad[0].argmax(dim=0)).all())
    # the magnitude is linear in the gradient, the input's power is in dB
    twice = spectrum_aligned(aligned(audio, 2 * sens), lay)
    torch.testing.assert_close(twice.grad, 2 * spec.grad, rtol=1e-5, atol=1e-6)
    louder = spectrum_aligned(aligned(10 * audio, sens), lay)
    np.testing.assert_allclose((louder.act - spec.act).mean().item(), 20.0, atol=0.01)


def test_white_noise_has_its_variance_in_every_bin_and_silence_the_floor():
    lay = spectrum_layout(WIDTH, SR)
    x = 0.5 * torch.randn(64, WIDTH, generator=torch.Generator().manual_seed(1))
    power = short_time_power(x, lay)  # (n, F, T)
    mean = power[:, 1:-1].mean(dim=(0, 2))  # interior bins
    np.testing.assert_allclose(mean.numpy(), 0.25, rtol=0.1)
    silent = spectrum_aligned(aligned(torch.zeros(1, WIDTH), torch.zeros(1, WIDTH)), lay)
    np.testing.assert_allclose(silent.act.numpy(), -80.0, atol=1e-4)
    floor = SpectrumConfig(floor_db=-60.0)
    silent = spectrum_aligned(aligned(torch.zeros(1, WIDTH), torch.zeros(1, WIDTH)), lay, floor)
    np.testing.assert_allclose(silent.act.numpy(), -60.0, atol=1e-4)


def test_frames_past_the_utterance_are_not_data():
    lay = spectrum_layout(WIDTH, SR)
    valid = torch.zeros(2, WIDTH, dtype=torch.bool)
    valid[0] = True
    valid[1, WIDTH // 2 - 100 :] = True  # the utterance starts 100 samples before t*
    g = torch.Generator().manual_seed(2)
    spec = spectrum_aligned(
        aligned(torch.randn(2, WIDTH, generator=g), torch.randn(2, WIDTH, generator=g), valid), lay
    )
    assert bool(spec.valid[0].all())
    # frame k starts at column first + k * hop: data when it starts at or after the start
    starts = lay.first + torch.arange(lay.frames) * lay.hop
    assert torch.equal(spec.valid[1], starts >= WIDTH // 2 - 100)
    assert not bool(spec.valid[1, lay.frames // 2])  # the frame on t* reaches before it
    assert float(spec.act[1][:, ~spec.valid[1]].abs().max()) == 0.0
    assert float(spec.grad[1][:, ~spec.valid[1]].abs().max()) == 0.0
    torch.testing.assert_close(spec.sq, spec.act.double().square().sum(dim=2))
    with pytest.raises(GradnapError, match="one channel"):
        two = aligned(torch.zeros(1, WIDTH), torch.zeros(1, WIDTH))
        two.act = two.act.expand(1, 2, WIDTH)
        spectrum_aligned(two, lay)


def test_a_chirp_group_against_a_noise_group():
    """Group 0's sensitivity windows are chirps rising from 500 Hz to 4 kHz over the
    window (random phases), group 1's white noise: summed like any layer, the chirp
    group's sensitivity against the dataset's peaks along the chirp, the noise group's
    is flat, and the raw waveform means of the chirps cancel."""
    lay = spectrum_layout(WIDTH, SR)
    g = torch.Generator().manual_seed(3)
    n = 40
    t = torch.arange(WIDTH, dtype=torch.float64) / SR
    dur = WIDTH / SR
    f0, f1 = 500.0, 4000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * dur))
    chirps = torch.sin(phase + 2 * np.pi * torch.rand(n, 1, generator=g, dtype=torch.float64))
    noise = torch.randn(n, WIDTH, generator=g, dtype=torch.float64) * float(chirps.std())
    audio = torch.randn(2 * n, WIDTH, generator=g, dtype=torch.float64)
    spec = spectrum_aligned(aligned(audio, torch.cat([chirps, noise])), lay)
    sums = GroupingSums("g", {SPECTRUM_LAYER: (lay.channels, lay.frames)})
    sums.add(sums.group_ids(["chirp"] * n + ["noise"] * n), {SPECTRUM_LAYER: chunk_stats(spec)})
    s = sums.layers[SPECTRUM_LAYER]
    assert s.grad_sum is not None and s.count is not None
    chirp = relative_magnitude_db(s.grad_sum[0], s.count[0], s.grad_sum.sum(0), s.count.sum(0))
    flat = relative_magnitude_db(s.grad_sum[1], s.count[1], s.grad_sum.sum(0), s.count.sum(0))
    freqs = lay.frequencies_hz
    frame_t = (lay.first + np.arange(lay.frames) * lay.hop + lay.frame / 2) / SR
    expected = f0 + (f1 - f0) * frame_t / dur  # instantaneous frequency at frame centres
    peaks = freqs[chirp.argmax(axis=0)]
    np.testing.assert_allclose(peaks, expected, atol=80.0)
    assert np.all(np.diff(peaks) >= 0)
    # the dataset is half chirps, half noise: along the chirp it is the chirps' half,
    # 6 dB below the chirp group; away from it the noise's half, 6 dB below the noise
    on = chirp.max(axis=0)
    assert np.all((on > 5.0) & (on < 6.03))
    far = np.abs(freqs[:, None] - expected[None, :]) > 1000.0
    assert np.all(chirp[far] < -20.0)
    assert np.all((flat[far] > 5.0) & (flat[far] < 6.03))
    assert np.all(flat[chirp.argmax(axis=0), np.arange(lay.frames)] < -10.0)
    # the same windows averaged as waveforms: the chirps of random phase cancel
    assert float(chirps.mean(dim=0).abs().mean()) < 0.2 * float(chirps.abs().mean())


def test_relative_magnitude_is_zero_without_data():
    grad_sum = np.array([[2.0, 0.0, 4.0]])
    out = relative_magnitude_db(
        grad_sum, np.array([1, 0, 2]), np.array([[4.0, 1.0, 4.0]]), np.array([4, 1, 2])
    )
    np.testing.assert_allclose(out, [[20 * np.log10(2.0), 0.0, 0.0]])
