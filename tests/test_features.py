import numpy as np
import pytest
import soundfile as sf
import torch

from gradnap import GradnapError, features
from gradnap.defaults import FEATURES


def test_log_mel_shape_and_normalisation():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    spec = features.log_mel(x)
    assert spec.shape == (128, features.num_frames(16000)) == (128, 126)
    assert abs(float(spec.mean())) < 1e-4
    assert abs(float(spec.std(unbiased=False)) - 1) < 1e-4


@pytest.mark.parametrize("n", [1, 100, 256, 257, 1000, 16001])
def test_frame_count_matches_mapping(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert features.log_mel(x).shape[1] == features.num_frames(n) == 1 + n // FEATURES.hop_length


def test_frame_time_mapping_round_trip():
    assert features.frame_to_seconds(125) == pytest.approx(1.0)
    assert features.seconds_to_frame(1.0) == 125
    frames = np.arange(10)
    assert np.array_equal(features.seconds_to_frame(features.frame_to_seconds(frames)), frames)


def test_tone_peaks_at_its_mel_bin():
    sr = FEATURES.sample_rate
    t = np.arange(sr) / sr
    freqs = features.mel_frequencies()
    k = 60
    x = np.sin(2 * np.pi * freqs[k] * t).astype(np.float32)
    spec = features.log_mel(x)
    assert int(spec[:, 50].argmax()) == k


def test_load_audio_resamples_and_mixes(tmp_path):
    sr = 8000
    stereo = np.stack([np.ones(sr), -np.ones(sr) * 0.5], axis=1) * 0.1
    path = tmp_path / "a.flac"
    sf.write(path, stereo, sr)
    x = features.load_audio(path)
    assert x.dtype == np.float32
    assert abs(len(x) - 16000) <= 1
    assert np.allclose(x[1000:-1000], 0.025, atol=2e-3)


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(GradnapError, match="missing.flac"):
        features.load_audio(tmp_path / "missing.flac")
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(GradnapError, match="bad.flac"):
        features.load_audio(bad)


def test_log_mel_does_not_depend_on_the_thread_count():
    """A parallel mean or sum adds in another order on more threads; features feed every
    later step, so they are computed on one thread (docs/method.md §5)."""
    audio = np.random.default_rng(0).normal(0, 0.1, 16000 * 10).astype(np.float32)  # 10 s:
    # shorter noise happens to give the same bits on 2 threads (speech of 3 s does not)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            out.append(features.log_mel(audio))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    assert torch.get_num_threads() == before


def test_log_mel_accepts_tensor():
    x = torch.randn(4000)
    assert features.log_mel(x).shape == (128, features.num_frames(4000))


def test_load_audio_refuses_nan_samples_and_truncated_wav_files(tmp_path):
    x = np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)
    nan = x.copy()
    nan[[3, 7]] = [np.nan, np.inf]
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(GradnapError, match=r"nan.wav: 2 of 4000 samples are NaN or infinite"):
        features.load_audio(tmp_path / "nan.wav")
    sf.write(tmp_path / "t.wav", x, 16000)  # 16-bit: 8000 bytes of samples
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(data[:-3000])
    with pytest.raises(
        GradnapError, match=r"t.wav: truncated WAV file \(3000 bytes .* 2500 samples"
    ):
        features.load_audio(tmp_path / "t.wav")
    # a WAV written while streaming gives no data size in its header: read as it is
    i = data.index(b"data")
    streamed = data[: i + 4] + b"\xff\xff\xff\xff" + data[i + 8 :]
    (tmp_path / "s.wav").write_bytes(streamed[:-3000])
    assert len(features.load_audio(tmp_path / "s.wav")) == 2500
