"""Audio to model input: reading audio files and the log-mel features (docs/method.md §2).

Every place that turns audio into features calls :func:`utterance_features`,
:func:`log_mel` or (models that take the waveform) :func:`waveform_input`; there is no
other path.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from gradnap.defaults import FEATURES, SILENT_PEAK_DBFS, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.threads import one_thread

__all__ = [
    "check_not_silent",
    "utterance_features",
    "load_audio",
    "log_mel",
    "waveform_input",
    "num_frames",
    "frame_to_seconds",
    "seconds_to_frame",
    "mel_frequencies",
]


log = logging.getLogger(__name__)

#: Sample rates below the model's for which the upsampling warning was given.
_WARNED_RATES: set[int] = set()


def load_audio(path: str | Path, config: FeatureConfig = FEATURES) -> np.ndarray:
    """Read an audio file (FLAC, WAV, ...) as mono float32 at ``config.sample_rate``.

    Stereo is mixed down; other sample rates are resampled (a lower one with a warning,
    once per rate: the upper mel bins stay empty). Returns shape ``(N,)``.
    Raises :class:`GradnapError` naming the file when it is missing, unreadable,
    truncated (a WAV file shorter than its header says), empty, or holds NaN or
    infinite samples.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise GradnapError(f"{path}: audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except Exception as exc:  # soundfile raises several types for corrupt data
        raise GradnapError(f"{path}: cannot read audio ({exc})") from exc
    if data.shape[0] == 0:
        raise GradnapError(f"{path}: audio file holds no samples")
    missing = _wav_missing_bytes(path)
    if missing:
        raise GradnapError(
            f"{path}: truncated WAV file ({missing} bytes of audio data missing; "
            f"{data.shape[0]} samples left)"
        )
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise GradnapError(f"{path}: {bad} of {data.size} samples are NaN or infinite")
    mono = data.mean(axis=1)
    if sr != config.sample_rate:
        import librosa

        if sr < config.sample_rate and sr not in _WARNED_RATES:
            _WARNED_RATES.add(sr)
            log.warning(
                "%s (and any other %d Hz file) is resampled to %d Hz: it holds nothing above "
                "%d Hz, where the model's upper mel bins expect sound",
                path,
                sr,
                config.sample_rate,
                sr // 2,
            )
        mono = librosa.resample(mono, orig_sr=sr, target_sr=config.sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def _wav_missing_bytes(path: Path) -> int:
    """Bytes of audio data a RIFF/WAVE file's header announces beyond the end of the file
    (0 for other files, complete files, and streamed WAVs whose header gives no size)."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return 0
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                if size in (0, 0xFFFFFFFF):  # written while streaming: size unknown
                    return 0
                left = path.stat().st_size - f.tell()
                return max(0, size - left)
            f.seek(size + (size & 1), 1)  # chunks are padded to even sizes


@lru_cache(maxsize=4)
def _mel_basis(config: FeatureConfig) -> torch.Tensor:
    import librosa

    basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels)
    return torch.from_numpy(basis.astype(np.float32))  # (F, n_fft // 2 + 1)


def mel_frequencies(config: FeatureConfig = FEATURES) -> np.ndarray:
    """Centre frequency in Hz of each mel bin, shape ``(F,)`` (librosa's mel filters)."""
    import librosa

    # librosa.filters.mel places n_mels + 2 points evenly on the mel scale; bin k peaks at
    # point k + 1.
    edges = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=0.0, fmax=config.sample_rate / 2)
    return np.asarray(edges[1:-1], dtype=np.float64)


def num_frames(num_samples: int, config: FeatureConfig = FEATURES) -> int:
    """Number of input frames for ``num_samples`` samples (centred STFT; the samples
    themselves for waveform input)."""
    if config.input == "waveform":
        return num_samples
    return 1 + num_samples // config.hop_length


def frame_to_seconds(frame, config: FeatureConfig = FEATURES):
    """Time in seconds at the centre of input frame ``frame`` (scalar or array)."""
    return frame * config.frame_seconds


def seconds_to_frame(seconds: float | np.ndarray, config: FeatureConfig = FEATURES):
    """Input frame whose centre is nearest to ``seconds`` (float seconds -> int frames)."""
    frames = np.rint(np.asarray(seconds, dtype=np.float64) / config.frame_seconds).astype(np.int64)
    return frames if frames.ndim else int(frames)


def log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig = FEATURES) -> torch.Tensor:
    """z-normalised log-mel spectrogram of one utterance.

    ``samples``: ``(N,)`` mono at ``config.sample_rate``. Returns ``(F, T)`` float32 with
    ``F = n_mels`` and ``T = num_frames(N)``. Computed on one intra-op thread: the same
    bits whatever torch's thread count (a parallel sum, e.g. the mean and standard
    deviation, adds in an order that depends on it; docs/method.md §5), and faster for
    one utterance than several threads.
    """
    with one_thread():
        return _log_mel(samples, config)


def _log_mel(samples: np.ndarray | torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    x = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)  # (N,)
    if x.numel() == 0:
        raise GradnapError("log_mel: empty audio")
    window = torch.hann_window(config.n_fft)
    if x.numel() <= config.n_fft // 2:  # reflect padding needs more samples than the pad
        x = torch.nn.functional.pad(x, (0, config.n_fft // 2 + 1 - x.numel()))
        n_out = num_frames(len(samples), config)
    else:
        n_out = None
    spec = torch.stft(
        x, config.n_fft, config.hop_length, window=window, center=True, return_complex=True
    )  # (n_fft // 2 + 1, T)
    if n_out is not None:
        spec = spec[:, :n_out]
    power = spec.real.square() + spec.imag.square()
    mel = _mel_basis(config) @ power  # (F, T)
    logmel = torch.log(mel + config.log_offset)
    if config.normalize == "utterance":
        std = logmel.std(unbiased=False)
        logmel = (logmel - logmel.mean()) / (std if std > 0 else 1.0)
    elif config.normalize == "bin":
        std = logmel.std(dim=1, keepdim=True, unbiased=False).clamp_min(1e-8)
        logmel = (logmel - logmel.mean(dim=1, keepdim=True)) / std
    elif config.normalize != "none":
        raise GradnapError(f"unknown normalisation {config.normalize!r} (utterance, bin, none)")
    return logmel.contiguous()


#: Added to the variance of waveform input before the square root, as Hugging Face's
#: ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` does.
WAVEFORM_VARIANCE_EPS = 1e-7


def waveform_input(
    samples: np.ndarray | torch.Tensor, config: FeatureConfig = FEATURES
) -> torch.Tensor:
    """The waveform as model input ``(1, N)`` float32 (``config.input == "waveform"``).

    ``normalize="utterance"``: ``(x - mean) / sqrt(var + 1e-7)`` over the utterance, the
    normalisation of Hugging Face's ``Wav2Vec2FeatureExtractor`` (``do_normalize``);
    ``"none"``: the samples as they are.
    """
    x = torch.as_tensor(samples, dtype=torch.float32).reshape(1, -1)
    if x.numel() == 0:
        raise GradnapError("waveform_input: empty audio")
    if config.normalize == "utterance":
        # mean and variance in float64 (the feature extractor's, in float32, agree to 1e-5)
        x64 = x.double()
        x = (
            (x64 - x64.mean()) / torch.sqrt(x64.var(unbiased=False) + WAVEFORM_VARIANCE_EPS)
        ).float()
    elif config.normalize != "none":
        raise GradnapError(f"unknown waveform normalisation {config.normalize!r} (utterance, none)")
    return x.contiguous()


def utterance_features(path: str | Path, config: FeatureConfig = FEATURES) -> torch.Tensor:
    """The model input of one audio file: log-mel features ``(F, T)`` (float32), or the
    waveform ``(1, N)`` for ``config.input == "waveform"`` (:func:`waveform_input`).

    The one path from audio to features: collection, training and corpus iteration all
    call it. Raises :class:`GradnapError` naming the file when it cannot be read or is
    digital silence (:func:`check_not_silent`).
    """
    if config.input not in ("log_mel", "waveform"):
        raise GradnapError(f"unknown model input {config.input!r} (log_mel, waveform)")
    samples = load_audio(path, config)
    check_not_silent(samples, path, config)
    if config.input == "waveform":
        return waveform_input(samples, config)
    return log_mel(samples, config)


def check_not_silent(
    samples: np.ndarray, path: str | Path, config: FeatureConfig = FEATURES
) -> None:
    """Raise :class:`GradnapError` naming ``path`` when ``samples`` ``(N,)`` are digital
    silence (peak below :data:`gradnap.defaults.SILENT_PEAK_DBFS`): nothing of a
    transcript can be heard in them, and their normalised features are constant."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak < 10.0 ** (SILENT_PEAK_DBFS / 20.0):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all samples 0"
        raise GradnapError(
            f"{path}: audio is digital silence ({len(samples) / config.sample_rate:.2f} s, "
            f"peak {level})"
        )
