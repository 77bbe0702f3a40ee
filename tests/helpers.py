"""Small, seeded models, corpora and comparison helpers shared by the tests.

Plain functions and classes, imported by name (``from helpers import tiny_model``); the
shared pytest fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch import nn

from gradnap.asr.model import ModelConfig, Wav2Letter
from gradnap.corpus.timings import PhoneSpan, write_timings
from gradnap.engine import ChainError, extract_chain
from gradnap.engine.base import ForwardPass, Window
from gradnap.method.result import Result
from gradnap.method.run import GradNAP

# --- the project's architecture, few channels ---------------------------------------------------

#: The project's Wav2Letter (kernels 48, 7 x 7, 32, 1, 1; stride 2; 128 mel features,
#: 29 classes) with 8 and 16 channels: runs on real features in milliseconds.
TINY = ModelConfig("tiny", (8,) * 8 + (16, 16, 29))


def tiny_model(
    seed: int = 0, *, n_features: int = TINY.n_features, scale: float = 1.0
) -> Wav2Letter:
    """A :data:`TINY` model in eval mode, PyTorch's seeded initialisation times ``scale``."""
    torch.manual_seed(seed)
    model = Wav2Letter(replace(TINY, n_features=n_features)).eval()
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model


# --- engine comparisons: tiny random models of several layouts ------------------------------------

N_FEATURES = 6
N_CLASSES = 5


def _positive_biases(model: nn.Module) -> None:
    """Small positive biases keep a few-channel ReLU network alive on short inputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                m.bias.uniform_(0.0, 0.2)


def tiny_wav2letter(seed: int = 0) -> Wav2Letter:
    """The project's architecture (kernels 48, 7.., 32, 1, 1; stride 2) with 3-5 channels on
    :data:`N_FEATURES` inputs and :data:`N_CLASSES` outputs, biases positive."""
    torch.manual_seed(seed)
    cfg = ModelConfig("tiny", (3,) * 8 + (5, 5, N_CLASSES), n_features=N_FEATURES)
    model = Wav2Letter(cfg).eval()
    _positive_biases(model)
    return model


class TorchaudioLike(nn.Module):
    """torchaudio's ``Wav2Letter`` layout: ``acoustic_model`` of Conv1d/ReLU(inplace) pairs
    (numeric padding, the k=32 layer lengthens the output by one), ``log_softmax`` in forward."""

    output_kind = "log_probs"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        c = 3
        self.acoustic_model = nn.Sequential(
            nn.Conv1d(N_FEATURES, c, 12, stride=2, padding=5),
            nn.ReLU(inplace=True),
            nn.Conv1d(c, c, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv1d(c, 4, 8, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv1d(4, N_CLASSES, 1),
            nn.ReLU(inplace=True),
        )
        _positive_biases(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.acoustic_model(x), dim=1)


def _randomize_bn(bn: nn.BatchNorm1d) -> None:
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)


def mixed_model(seed: int = 0) -> nn.Sequential:
    """Strides 2 and 3, dilation 2, "same", "valid" and numeric padding, batch norm (folded
    and not), dropout, several activations, two convolutions in a row."""
    torch.manual_seed(seed)
    m = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv1d(N_FEATURES, 4, 5, stride=2, padding=2),
            bn1=nn.BatchNorm1d(4),
            act1=nn.LeakyReLU(0.1),
            conv2=nn.Conv1d(4, 4, 3, dilation=2, padding="same"),
            act2=nn.Tanh(),
            drop=nn.Dropout(0.3),
            conv3=nn.Conv1d(4, 3, 4, stride=3, padding=1),
            act3=nn.GELU(),
            bn3=nn.BatchNorm1d(3),
            conv4=nn.Conv1d(3, 4, 2, padding="valid"),
            conv5=nn.Conv1d(4, 4, 3, padding="same"),
            act5=nn.ELU(),
            out=nn.Conv1d(4, N_CLASSES, 2, padding=1),
        )
    )
    _randomize_bn(m.bn1)
    _randomize_bn(m.bn3)
    return m.eval()


class Residual(nn.Module):
    """Not a chain (a skip connection): only the autograd engine can handle it."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv1d(N_FEATURES, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.out = nn.Conv1d(4, N_CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        return self.out(h + self.relu(self.conv2(h)))


def expand(win: Window, length: int) -> torch.Tensor:
    """Place windows ``(n, C, W)`` starting at ``win.start`` into ``(n, C, length)``;
    columns outside ``0..length-1`` must be zero and are dropped."""
    n, c, w = win.grads.shape
    lo = min(0, int(win.start.min())) if n else 0
    hi = max(length, int((win.start + w).max())) if n else length
    full = win.grads.new_zeros(n, c, hi - lo)
    for r in range(n):
        s = int(win.start[r]) - lo
        full[r, :, s : s + w] = win.grads[r]
    outside = torch.cat([full[:, :, :-lo], full[:, :, -lo + length :]], dim=2)
    assert outside.abs().max() == 0 if outside.numel() else True, "nonzero outside the utterance"
    return full[:, :, -lo : -lo + length]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` (0 when both are zero)."""
    scale = float(b.abs().max())
    diff = float((a - b).abs().max())
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def assert_engines_agree(engine, reference, x: torch.Tensor, tol: float = 1e-4) -> int:
    """Every output frame, predicted class: ``engine`` equals ``reference`` in every layer.

    Returns the number of frames compared.
    """
    fwd = engine.forward(x)
    ref_fwd = reference.forward(x)
    torch.testing.assert_close(fwd.probs, ref_fwd.probs, rtol=1e-4, atol=1e-6)
    frames = torch.arange(fwd.probs.shape[1])
    classes = fwd.probs.argmax(0)
    got = engine.sensitivities(fwd, frames, classes)
    want = reference.sensitivities(ref_fwd, frames, classes)
    assert list(got) == list(want) == engine.layers
    for name in engine.layers:
        torch.testing.assert_close(fwd.activations[name], ref_fwd.activations[name])
        length = ref_fwd.activations[name].shape[-1]
        g = expand(got[name], length)
        w = want[name].grads
        assert g.shape == w.shape, name
        assert float(w.abs().max()) > 0, f"{name}: all-zero reference (dead model?)"
        err = rel_err(g, w)
        assert err <= tol, f"layer {name}: relative error {err:.3g}"
    return frames.numel()


# --- the collector: a plain reference engine, a small model and data ------------------------------


class FrameEngine:
    """Per-frame autograd reference (the engine contract, written out plainly).

    One forward with hooks, then one backward per target frame. Whole-layer windows
    (start 0), or, given ``(geometry, layer index)``, cone-wide windows starting at the
    cone's first position (zeros outside the utterance), like the cone engine.
    """

    def __init__(self, model, layers, target="prob", cone=None):
        self.model, self.layers, self.target, self.cone = model, list(layers), target, cone
        try:  # the geometry the collector uses, as make_engine would find it
            self.chain = extract_chain(model, self.layers)
        except ChainError:
            self.chain = None
        self.modules = dict(model.named_modules())

    def forward(self, x):
        inp = x.detach().clone()[None].requires_grad_(True)  # (1, F, T)
        acts = {"input": inp}
        hooks = [
            self.modules[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o))
            for n in self.layers
            if n != "input"
        ]
        try:
            logits = self.model(inp)[0]  # (K, T')
        finally:
            for h in hooks:
                h.remove()
        out = {n: acts[n][0].detach() for n in self.layers}
        return ForwardPass(out, torch.softmax(logits, 0).detach(), state=(acts, logits))

    def sensitivities(self, fwd, frames, classes):
        acts, logits = fwd.state
        y = {
            "prob": torch.softmax(logits, 0),
            "logprob": torch.log_softmax(logits, 0),
            "logit": logits,
        }[self.target]
        inputs = [acts[n] for n in self.layers]
        per = {n: [] for n in self.layers}
        for tau, k in zip(frames.tolist(), classes.tolist(), strict=True):
            grads = torch.autograd.grad(y[k, tau], inputs, retain_graph=True)
            for n, g in zip(self.layers, grads, strict=True):
                per[n].append(g[0])
        out = {}
        for n in self.layers:
            g = torch.stack(per[n])  # (n, C, T)
            if self.cone is None:
                out[n] = Window(g, torch.zeros(len(frames), dtype=torch.int64))
                continue
            geom, index = self.cone
            lo, hi = geom.cone(frames, index[n])
            width = int(hi[0] - lo[0] + 1)
            gp = nn.functional.pad(g, (width, width))
            cols = (lo[:, None] + torch.arange(width) + width).clamp(0, gp.shape[2] - 1)
            out[n] = Window(gp.gather(2, cols[:, None, :].expand(-1, g.shape[1], -1)), lo)
        return out


def parity(utt, frame, cls):
    """A grouping function: the output frame's parity."""
    return "even" if frame % 2 == 0 else "odd"


def items(xs):
    """``(utterance, features)`` pairs for the collector, utterances ``u0, u1, ...``."""
    return [(SimpleNamespace(id=f"u{i}", speaker="s", phones=None), x) for i, x in enumerate(xs)]


def small_model(seed=0):
    """Three convolutions on 6 features, 5 classes (blank 4); receptive field 13."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(6, 8, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 4, padding="same"),  # even kernel: asymmetric padding
        nn.ReLU(),
        nn.Conv1d(8, 5, 1),
    )


#: The layers of :func:`small_model` the collector tests profile.
LAYERS = ["input", "1", "3"]


def small_data(n=6, seed=1):
    """Up to six utterances of random features for :func:`small_model`."""
    gen = torch.Generator().manual_seed(seed)
    # lengths around and below the receptive field (13 input frames)
    return items([torch.randn(6, t, generator=gen) for t in (3, 9, 14, 27, 40, 61)[:n]])


def gradnap_of(model, engine, **kw):
    """A GradNAP over :data:`LAYERS`: every frame an example, blank 4, graphemes and parity."""
    opts = dict(examples="all", blank=4, min_count=1, groupings=("grapheme", parity))
    opts.update(kw)
    return GradNAP(model, LAYERS, engine=engine, **opts)


# --- the method: whole-layer windows ------------------------------------------------------------


def whole(grads):
    """Whole-layer window: grads (n, C, T), start 0."""
    return grads, torch.zeros(grads.shape[0], dtype=torch.int64)


# --- corpora ------------------------------------------------------------------------------------


def write_corpus(
    root: Path,
    n: int = 4,
    seconds: float | Sequence[float] = 0.5,
    broken: bool = True,
    *,
    speakers: Sequence[str] = ("s1",),
    chapter: str = "c1",
    texts: Sequence[str] | None = None,
    phones: bool | Sequence[str] = True,
) -> Path:
    """A LibriSpeech-format corpus of seeded noise; returns ``root``.

    ``n`` utterances ``{speaker}-{chapter}-0000 ..`` per speaker, each ``seconds`` long (or
    ``seconds[i]``), transcribed ``texts[i]`` (default "HELLO THERE"). ``phones``: a
    ``phones.tsv`` with the spans SIL HH AH L OW (or the phones given) evenly over each
    utterance; ``broken``: one
    more transcribed utterance whose audio file is not audio.
    """
    rng = np.random.default_rng(0)
    for speaker in speakers:
        d = root / speaker / chapter
        d.mkdir(parents=True)
        lines, timings = [], {}
        for i in range(n):
            uid = f"{speaker}-{chapter}-{i:04d}"
            length = seconds if isinstance(seconds, int | float) else seconds[i]
            sf.write(
                d / f"{uid}.wav", rng.normal(0, 0.1, round(16000 * length)).astype("float32"), 16000
            )
            lines.append(f"{uid} {'HELLO THERE' if texts is None else texts[i]}")
            names = ["SIL", "HH", "AH", "L", "OW"] if phones is True else list(phones or ())
            cuts = np.linspace(0, length, len(names) + 1)
            timings[uid] = [
                PhoneSpan(p, float(a), float(b))
                for p, a, b in zip(names, cuts[:-1], cuts[1:], strict=True)
            ]
        if broken:
            (d / f"{speaker}-{chapter}-{n:04d}.wav").write_bytes(b"RIFF broken")
            lines.append(f"{speaker}-{chapter}-{n:04d} BROKEN AUDIO")
        (d / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
        if phones:
            write_timings(d / f"{speaker}-{chapter}.phones.tsv", timings)
    return root


def by_label(r: Result):
    """{(grouping, label, array name): array} (label order independent)."""
    out = {}
    for g in r.groupings + ["all"]:
        for i, label in enumerate(r.labels(g)):
            for k, v in r.arrays.items():
                if k.startswith(f"sums/{g}/") and k != f"sums/{g}/labels":
                    out[(g, label, k)] = v[i]
    return out


#: Tolerance for sums read from result files, which store float32 (docs/results.md) ...
FILE_RTOL = 1e-6
#: ... and per-fold sums as float16 means (relative rounding at most 2**-12 each).
FILE_FOLD_RTOL = 2.0**-11


def assert_same_sums(a: Result, b: Result, rtol=1e-10, fold_rtol=None):
    """Equal sums, matched by label, within ``rtol`` of each array's largest value
    (``fold_rtol``, default ``rtol``, for the per-fold sums of activations and
    sensitivities)."""
    x, y = by_label(a), by_label(b)
    assert set(x) == set(y)
    for k in x:
        if x[k].dtype.kind == "i":
            assert np.array_equal(x[k], y[k]), k
        else:
            tol = fold_rtol if fold_rtol and k[2].endswith(("/fold_act", "/fold_grad")) else rtol
            scale = float(np.abs(y[k]).max(initial=0.0))
            np.testing.assert_allclose(x[k], y[k], rtol=tol, atol=tol * scale, err_msg=str(k))


# --- a full disk --------------------------------------------------------------------------------


def disk_full(monkeypatch, *names: str, after: int = 0) -> list[str]:
    """Simulate a full disk for gradnap's atomic writes (:mod:`gradnap.fileio`): writing a
    file named one of ``names`` (every file when none is given) fails with
    ``OSError(ENOSPC)`` once ``after`` such writes have succeeded. Returns the list of
    the names whose write failed (appended to as it happens)."""
    import tempfile

    import gradnap.fileio as fileio

    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync
    open_files: dict[int, str] = {}  # fd -> target name
    done: list[str] = []
    failed: list[str] = []

    def mkstemp(*args, **kw):
        fd, tmp = real_mkstemp(*args, **kw)
        open_files[fd] = Path(tmp).name[1:].removesuffix(fileio.TMP_SUFFIX)[:-9]
        return fd, tmp

    def fsync(fd):
        name = open_files.get(fd)
        if name is not None and (not names or name in names):
            if len(done) >= after:
                failed.append(name)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            done.append(name)
        return real_fsync(fd)

    monkeypatch.setattr(fileio.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(fileio.os, "fsync", fsync)
    return failed
