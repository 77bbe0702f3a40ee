"""eSpeak NG through ctypes (the library and data of PyPI ``espeakng-loader``).

Two services:

* :func:`synthesize_espeak`: one utterance -> 16 kHz audio and phone spans. Phone start
  times come from eSpeak's phoneme events (``espeakINITIALIZE_PHONEME_EVENTS``), whose
  ``sample`` field is the exact sample position in the output.
* :func:`word_phonemes`: the ARPAbet phonemes of a word by eSpeak's text-to-phoneme rules
  (``espeak_TextToPhonemes``) - the grapheme-to-phoneme fallback for words CMUdict
  does not know.

Determinism. eSpeak keeps synthesis state between calls (waveform phase, echo buffer,
its random generator), so the same text synthesized twice in one process gives
slightly different audio. Each synthesis therefore runs in a child forked from this
process, which has initialised eSpeak but never synthesized; the child seeds eSpeak's
and libc's random generators with the utterance's seed, synthesizes, sends the result
back through a pipe and exits. Same arguments -> byte-identical samples and timings,
independent of what the process did before. (Needs ``os.fork``: Linux and macOS.)
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from gradnap.corpus.phones import (
    ESPEAK_TO_ARPABET,
    Synthesized,
    build_spans,
    espeak_table,
    limit_peak,
    strip_stress,
)
from gradnap.defaults import FEATURES
from gradnap.errors import GradnapError

__all__ = [
    "espeak_voices",
    "check_espeak_voice",
    "synthesize_espeak",
    "word_phonemes",
    "text_phonemes",
    "espeak_version",
]

log = logging.getLogger(__name__)

# espeak_lib.h / speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Engine:
    """The eSpeak library of this process (initialised once, never synthesizes itself)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise GradnapError("eSpeak NG: PyPI package espeakng-loader is not installed") from exc
        self.data_path = Path(espeakng_loader.get_data_path())
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise GradnapError(f"eSpeak NG: cannot load the library ({exc})") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceInfo))
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        # The path is the directory that contains espeak-ng-data.
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path.parent).encode(), options
        )
        if rate <= 0:
            raise GradnapError(f"eSpeak NG: initialisation failed with data in {self.data_path}")
        self.lib = lib
        self.sample_rate = rate
        self.lock = threading.Lock()
        self.samples: list[np.ndarray] = []
        self.events: list[tuple[str, int]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference
        lib.espeak_SetSynthCallback(self._callback)
        self.phonemes_voice: str | None = None

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self.samples.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self.events.append((name, int(ev.sample)))
            i += 1
        return 0

    def voices(self) -> list[str]:
        """Names of the English voices as :func:`espeak_SetVoiceByName` accepts them: the
        voice file names, lower-cased (``en``, ``en-us``, ``en-gb-x-rp``...)."""
        out = []
        listing = self.lib.espeak_ListVoices(None)
        i = 0
        while listing[i]:
            ident = (listing[i].contents.identifier or b"").decode()  # e.g. gmw/en-GB-x-rp
            name = ident.rsplit("/", 1)[-1].lower()
            if name == "en" or name.startswith("en-"):
                out.append(name)
            i += 1
        return out

    def set_voice(self, voice: str) -> None:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise GradnapError(f"eSpeak NG: cannot select voice {voice!r}")

    def synth_in_child(
        self, text: str, voice: str, rate: int, pitch: int, range_: int, seed: int
    ) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """Synthesize in a forked child (see the module docstring); returns int16 samples
        ``(N,)`` at :attr:`sample_rate` and ``(symbol, start sample)`` events."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns
            status = 0
            try:
                os.close(read_fd)
                self.samples, self.events = [], []
                self.set_voice(voice)
                lib = self.lib
                lib.espeak_SetParameter(_RATE, int(rate), 0)
                lib.espeak_SetParameter(_PITCH, int(pitch), 0)
                lib.espeak_SetParameter(_RANGE, int(range_), 0)
                lib.espeak_SetParameter(_VOLUME, 100, 0)
                lib.espeak_SetParameter(_WORDGAP, 0, 0)
                lib.espeak_ng_SetRandSeed(seed)
                _libc_srand(seed)
                data = text.encode("utf-8") + b"\0"
                err = lib.espeak_Synth(
                    data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
                )
                if err != 0:
                    raise RuntimeError(f"espeak_Synth returned {err}")
                lib.espeak_Synchronize()
                samples = np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)
                payload = pickle.dumps(("ok", samples.astype(np.int16), self.events))
            except BaseException as exc:  # report everything to the parent
                payload = pickle.dumps(("error", f"{type(exc).__name__}: {exc}", None))
                status = 1
            try:
                with os.fdopen(write_fd, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(status)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            payload = f.read()
        os.waitpid(pid, 0)
        if not payload:
            raise GradnapError(f"eSpeak NG ({voice}): synthesis process died on {text!r}")
        kind, a, b = pickle.loads(payload)
        if kind != "ok":
            raise GradnapError(f"eSpeak NG ({voice}): {a} (text {text!r})")
        return a, b

    def text_to_phonemes(self, text: str, voice: str) -> list[list[str]]:
        """eSpeak mnemonics (with stress marks) of ``text``, one list per word."""
        with self.lock:
            if self.phonemes_voice != voice:
                self.set_voice(voice)
                self.phonemes_voice = voice
            buf = ctypes.c_char_p(text.encode("utf-8"))
            ptr = ctypes.pointer(buf)
            words: list[list[str]] = []
            # phonememode: bits 8-23 = separator between phonemes (a space); words are
            # then separated by two spaces. One call per clause.
            mode = ord(" ") << 8
            for _ in range(10000):
                if not buf.value:
                    break
                out = self.lib.espeak_TextToPhonemes(ptr, _CHARS_UTF8, mode)
                for word in (out or b"").decode("utf-8", "replace").split("  "):
                    if word.strip():
                        words.append(word.split())
            return words


def _libc_srand(seed: int) -> None:
    try:
        ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))
    except (OSError, AttributeError):  # pragma: no cover - not a glibc system
        pass


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    """This process's engine. A process forked from one with an engine keeps it: the
    engine never synthesizes itself, so its state is the pristine one."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        return _ENGINE


def espeak_version() -> str:
    """The eSpeak NG library version, e.g. ``1.52.0``."""
    eng = _engine()
    return (eng.lib.espeak_Info(None) or b"?").decode()


@lru_cache(maxsize=1)
def espeak_voices() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(accents, variants)``: English voice codes (``en-us``...) and variant names
    (``m3``, ``klatt``...) shipped with espeakng-loader."""
    eng = _engine()
    accents = tuple(sorted(eng.voices()))
    vdir = eng.data_path / "voices" / "!v"
    variants = tuple(sorted(p.name for p in vdir.iterdir() if p.is_file())) if vdir.is_dir() else ()
    return accents, variants


def check_espeak_voice(voice: str) -> str:
    """Validate an eSpeak voice ``accent[+variant]`` (``en-gb-x-rp+f3``); returns it
    lower-cased, raises :class:`GradnapError` listing the valid names."""
    accents, variants = espeak_voices()
    accent, _, variant = voice.lower().partition("+")
    if accent not in accents:
        raise GradnapError(
            f"eSpeak voice {voice!r}: unknown accent {accent!r}; English accents: "
            + ", ".join(accents)
        )
    if variant and variant not in {v.lower() for v in variants}:
        raise GradnapError(
            f"eSpeak voice {voice!r}: unknown variant {variant!r}; variants: " + ", ".join(variants)
        )
    return voice.lower()


def synthesize_espeak(
    text: str,
    voice: str,
    rate: int = 175,
    pitch: int = 50,
    range_: int = 50,
    seed: int = 0,
) -> Synthesized:
    """Synthesize ``text`` with eSpeak voice ``voice`` (``accent[+variant]``).

    ``rate`` in words per minute (80-450), ``pitch`` and ``range_`` 0-100, ``seed`` for
    eSpeak's random generator. Returns 16 kHz float32 samples ``(N,)`` and phone spans
    from 0 to the audio's duration. Deterministic for the same arguments.
    """
    import soxr

    voice = check_espeak_voice(voice)
    eng = _engine()
    raw, events = eng.synth_in_child(text, voice, rate, pitch, range_, seed & 0x7FFFFFFF)
    if raw.size == 0:
        raise GradnapError(f"eSpeak NG ({voice}): no audio for {text!r}")
    x = raw.astype(np.float32) / 32768.0  # (N_22k,)
    sr = FEATURES.sample_rate
    if eng.sample_rate != sr:
        x = soxr.resample(x, eng.sample_rate, sr, quality="HQ")
    x = limit_peak(x)
    duration = len(x) / sr
    phones = [(strip_stress(sym), sample / eng.sample_rate) for sym, sample in events]
    spans, unmapped = build_spans(phones, duration, espeak_table(voice))
    return Synthesized(x, spans, unmapped)


def text_phonemes(text: str, voice: str = "en-us") -> list[list[str]]:
    """eSpeak's phoneme mnemonics (stress marks removed) of ``text``, one list per word."""
    voice = check_espeak_voice(voice)
    words = _engine().text_to_phonemes(text, voice)
    return [[strip_stress(s) for s in w if strip_stress(s)] for w in words]


def word_phonemes(word: str) -> list[str]:
    """ARPAbet phonemes without stress of ``word`` by eSpeak's en-us rules.

    ``word_phonemes("gradnap") == ["G", "R", "AE", "D", "N", "AE", "P"]``. Pauses and
    syllable marks are left out; symbols standing for two phonemes give both. Raises
    :class:`GradnapError` for a word without letters.
    """
    if not any(c.isalpha() for c in word):
        raise GradnapError(f"word_phonemes: {word!r} has no letters")
    out: list[str] = []
    for w in text_phonemes(word, "en-us"):
        for sym in w:
            for ph in ESPEAK_TO_ARPABET.get(sym, ()):
                if ph != "SIL":
                    out.append(ph)
            if sym not in ESPEAK_TO_ARPABET:
                log.warning("word_phonemes(%r): eSpeak symbol %r has no ARPAbet mapping", word, sym)
    return out
