import numpy as np
import pytest
import soundfile as sf
import torch

from gradnap import GradnapError, audio
from gradnap.defaults import ALPHABET, BLANK_INDEX, FEATURES


def test_log_mel_shape_and_normalisation():
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    spec = audio.log_mel(x)
    assert spec.shape == (128, audio.num_frames(16000)) == (128, 126)
    assert abs(float(spec.mean())) < 1e-4
    assert abs(float(spec.std(unbiased=False)) - 1) < 1e-4


@pytest.mark.parametrize("n", [1, 100, 256, 257, 1000, 16001])
def test_frame_count_matches_mapping(n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    assert audio.log_mel(x).shape[1] == audio.num_frames(n) == 1 + n // FEATURES.hop_length


def test_frame_time_mapping_round_trip():
    assert audio.frame_to_seconds(125) == pytest.approx(1.0)
    assert audio.seconds_to_frame(1.0) == 125
    frames = np.arange(10)
    assert np.array_equal(audio.seconds_to_frame(audio.frame_to_seconds(frames)), frames)


def test_tone_peaks_at_its_mel_bin():
    sr = FEATURES.sample_rate
    t = np.arange(sr) / sr
    freqs = audio.mel_frequencies()
    k = 60
    x = np.sin(2 * np.pi * freqs[k] * t).astype(np.float32)
    spec = audio.log_mel(x)
    assert int(spec[:, 50].argmax()) == k


def test_load_audio_resamples_and_mixes(tmp_path):
    sr = 8000
    stereo = np.stack([np.ones(sr), -np.ones(sr) * 0.5], axis=1) * 0.1
    path = tmp_path / "a.flac"
    sf.write(path, stereo, sr)
    x = audio.load_audio(path)
    assert x.dtype == np.float32
    assert abs(len(x) - 16000) <= 1
    assert np.allclose(x[1000:-1000], 0.025, atol=2e-3)


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(GradnapError, match="missing.flac"):
        audio.load_audio(tmp_path / "missing.flac")
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(GradnapError, match="bad.flac"):
        audio.load_audio(bad)


def test_text_normalisation_counts_removed():
    assert audio.normalize_text("  Hello,\tWorld!  It’s ") == ("hello world it's", 2)
    assert audio.normalize_text("") == ("", 0)
    assert audio.normalize_text("42") == ("", 2)


def test_encode_decode():
    ids = audio.encode_text("ab c'")
    assert ids == [0, 1, 26, 2, 27]
    assert audio.decode_indices(ids + [BLANK_INDEX]) == "ab c'"
    assert len(ALPHABET) + 1 == 29
    with pytest.raises(GradnapError):
        audio.encode_text("A")
    assert audio.class_label(26) == "_" and audio.class_label(BLANK_INDEX) == "<b>"


def test_log_mel_accepts_tensor():
    x = torch.randn(4000)
    assert audio.log_mel(x).shape == (128, audio.num_frames(4000))
