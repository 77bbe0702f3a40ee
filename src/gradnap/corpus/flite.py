"""flite (the Debian package's ``flite`` binary): audio and exact phone end times.

``flite -voice V -psdur -t TEXT -o out.wav`` writes 16 kHz mono 16-bit audio and prints
``phone:end_time`` pairs. Prosody per utterance:

* ``--setf duration_stretch=X``: rate (X > 1 is slower); the printed times follow it.
  It replaces the voice's own value (1.1 for ``kal16``, 1 for the others), so the
  stretch asked for is multiplied by that.
* ``--setf int_f0_target_mean=Y``: mean F0 in Hz. ``slt``, ``awb`` and ``kal16`` obey
  it; ``rms`` ignores it, so its pitch is varied by *speed perturbation* instead: the
  audio is resampled as if recorded at ``16000 * p`` Hz, which raises the pitch by the
  factor ``p`` and shortens the audio (and every phone time) by ``1 / p``.

``kal16`` (a diphone voice) prints a final pause up to ~0.1 s longer than its audio;
the last span is cut at the audio's end (all other boundaries were checked against
the audio's silences, also when stretched; see ``docs/corpus.md``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from gradnap.corpus.phones import FLITE_TO_ARPABET, Synthesized, build_spans, limit_peak
from gradnap.defaults import FEATURES
from gradnap.errors import GradnapError

__all__ = ["FLITE_VOICES", "flite_binary", "flite_version", "synthesize_flite", "parse_psdur"]

log = logging.getLogger(__name__)

#: Voice -> (typical mean F0 in Hz, measured with librosa.pyin on default output, ``None``
#: where flite ignores ``int_f0_target_mean``; the voice's own ``duration_stretch``).
FLITE_VOICES: dict[str, tuple[float | None, float]] = {
    "slt": (170.0, 1.0),
    "rms": (None, 1.0),
    "awb": (120.0, 1.0),
    "kal16": (95.0, 1.1),
}


def flite_binary() -> str:
    """Path of the ``flite`` program; raises :class:`GradnapError` when it is missing."""
    path = shutil.which("flite")
    if path is None:
        raise GradnapError(
            "the flite program is not installed (not on PATH): install it with "
            "`sudo apt-get install -y flite` (Debian, Ubuntu) or ./scripts/setup.sh"
        )
    return path


def flite_version() -> str:
    """``flite --version`` (first line)."""
    out = subprocess.run([flite_binary(), "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def parse_psdur(output: str) -> list[tuple[str, float]]:
    """``[(phone, end time)]`` from ``flite -psdur`` output (``pau:0.184 dh:0.236 ...``)."""
    out = []
    for token in output.split():
        phone, sep, end = token.rpartition(":")
        if not sep:
            continue
        try:
            out.append((phone, float(end)))
        except ValueError:
            continue
    return out


def synthesize_flite(
    text: str,
    voice: str,
    stretch: float = 1.0,
    pitch: float = 1.0,
    workdir: str | Path | None = None,
) -> Synthesized:
    """Synthesize ``text`` with flite voice ``voice``.

    ``stretch`` multiplies the voice's phone durations; ``pitch`` multiplies the voice's mean F0
    (``rms``: speed perturbation, see the module docstring). Returns 16 kHz float32
    samples ``(N,)`` and phone spans from 0 to the audio's duration. Deterministic.
    """
    import soundfile as sf

    if voice not in FLITE_VOICES:
        raise GradnapError(
            f"unknown flite voice {voice!r}; flite voices: {', '.join(FLITE_VOICES)}"
        )
    f0, own_stretch = FLITE_VOICES[voice]
    cmd = [flite_binary(), "-voice", voice, "-psdur"]
    cmd += ["--setf", f"duration_stretch={own_stretch * stretch:.4f}"]
    if f0 is not None and pitch != 1.0:
        cmd += ["--setf", f"int_f0_target_mean={f0 * pitch:.2f}"]
    with tempfile.TemporaryDirectory(dir=workdir, prefix="flite-") as tmp:
        wav = Path(tmp) / "out.wav"
        proc = subprocess.run(cmd + ["-t", text, "-o", str(wav)], capture_output=True, text=True)
        if proc.returncode != 0 or not wav.is_file():
            raise GradnapError(
                f"flite ({voice}) failed on {text!r}: {proc.stderr.strip() or proc.returncode}"
            )
        x, sr = sf.read(str(wav), dtype="float32")  # (N,)
    if x.ndim > 1:
        x = x.mean(axis=1)
    ends = parse_psdur(proc.stdout)
    if not ends:
        raise GradnapError(f"flite ({voice}) printed no phone times for {text!r}")
    times = np.array([e for _, e in ends], dtype=np.float64)
    target = FEATURES.sample_rate
    rate_in = float(sr)
    if f0 is None and pitch != 1.0:
        rate_in = sr * pitch  # speed perturbation: play faster, pitch up by `pitch`
    if rate_in != target:
        import soxr

        # Time t in the original is at t * sr / rate_in afterwards.
        x = soxr.resample(x, rate_in, target, quality="HQ")
        times = times * sr / rate_in
    x = limit_peak(x)
    duration = len(x) / target
    starts = [0.0] + list(times[:-1])
    phones = [(ph, float(s)) for (ph, _), s in zip(ends, starts, strict=True)]
    spans, unmapped = build_spans(phones, duration, FLITE_TO_ARPABET)
    return Synthesized(x, spans, unmapped)
