"""The Captum-like API: collect GradNAP accumulators over a corpus (DESIGN §1, §5).

>>> nap = GradNAP(model, layers=None, target="prob", groups=("grapheme", "phoneme"))
>>> result = nap.collect(corpus, progress=True)          # a Corpus, a path or pairs
>>> result.profile("layer3", "a")                         # (C, W) GradNAP of group "a"
>>> result.axes("input").frequencies_hz                   # mel-bin centres, Hz

One pass streams every utterance through the sensitivity engine chunk by chunk; only
the accumulators (sums and counts per group and layer) are kept, so memory does not grow
with the corpus. Collection can checkpoint and resume, run on a shard of the corpus, and
all-reduce its accumulators under ``torchrun`` (``torch.distributed``, gloo on CPU).

**Window widths.** ``W_l`` is the cone width of one output frame in layer ``l``
(:meth:`gradnap.geometry.Geometry.cone_width`) when the model's geometry is known: any
chain of ``Conv1d`` and elementwise modules that :func:`gradnap.engine._chain.extract_chain`
accepts (the project's :class:`~gradnap.asr.model.Wav2Letter`, torchaudio's ``Wav2Letter``).
``window=`` (an int for every layer or ``{layer: W}``) overrides it. For other models the
geometry is *estimated* once, before the first utterance, from the engine itself: a
seeded ``N(0, 1)`` input of growing length (256 .. 8192 frames) is run and ``W_l`` is the
widest support (non-zero sensitivity) of 5 output frames around its middle; the estimate
is accepted only when that support stays clear of the input's edges (else an error asks
for ``window=``). Layers without a known geometry have no cone, so ``t*`` is searched
over the whole utterance; their jump (input frames per position, for the ms axis) is
``T_in / T_l`` of the probe, and the output clock (for the phoneme grouping) is the
probe's input-support centre of an output frame.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from gradnap._version import __version__
from gradnap.defaults import BLANK_INDEX, COLLECT, FEATURES, METHOD, FeatureConfig
from gradnap.engine.base import INPUT_LAYER, TARGETS, ForwardPass
from gradnap.errors import GradnapError
from gradnap.features import log_mel, mel_frequencies
from gradnap.geometry import Geometry
from gradnap.method.accumulators import GroupingSums, chunk_stats
from gradnap.method.examples import EXAMPLE_MODES, select_examples
from gradnap.method.groupings import ALL, AllGrouping, FrameClock, Grouping, make_groupings
from gradnap.method.result import FORMAT, FORMAT_VERSION, Result, build_arrays
from gradnap.method.windows import Positions, align, recrop

__all__ = [
    "GradNAP",
    "UtteranceError",
    "collect",
    "model_geometry",
    "model_identity",
    "corpus_identity",
    "parse_shard",
]

log = logging.getLogger(__name__)

MAX_PROBLEMS = COLLECT.max_problems


class _Progress(TypedDict):
    """:attr:`GradNAP.progress` (stored in results and checkpoints as ``progress``)."""

    #: Items of the data passed (processed, skipped or outside the shard).
    items_done: int
    #: Chained hash of the ids of the items passed (checks a resumed run's data).
    ids_hash: str
    utterances: int
    skipped: int
    frames: int
    examples: int
    seconds: float


def model_geometry(engine: Any, layers: list[str]) -> tuple[Geometry, dict[str, int]] | None:
    """Geometry of the engine's Conv1d chain and the geometry layer number of each of
    ``layers``; ``None`` when the engine has no chain (window widths are then estimated).
    The chain is the one :func:`gradnap.engine.make_engine` extracted: never again here."""
    chain = getattr(engine, "chain", None)
    if chain is None:
        return None
    try:
        index = {name: int(chain.positions[name][0]) for name in layers}
    except KeyError as exc:
        log.info("layer %s is not in the Conv1d chain: window widths will be estimated", exc)
        return None
    return chain.geometry, index


def model_identity(model: nn.Module) -> dict:
    """Class, config name and fields, parameter count and SHA-256 of the weights."""
    cfg = getattr(model, "config", None)
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "name": getattr(cfg, "name", None) or type(model).__name__,
        "config": (
            dataclasses.asdict(cfg)
            if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
            else None
        ),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "weights_sha256": h.hexdigest(),
    }


def corpus_identity(corpus) -> dict:
    """Root, utterance count and a hash of (id, text, audio size, has timings) per utterance."""
    h = hashlib.sha256()
    for utt in sorted(corpus.utterances, key=lambda u: u.id):
        try:
            size = Path(utt.audio_path).stat().st_size
        except OSError:
            size = -1
        h.update(f"{utt.id}\t{utt.text}\t{size}\t{utt.phones is not None}\n".encode())
    return {
        "root": str(Path(corpus.root).resolve()),
        "utterances": len(corpus.utterances),
        "with_phones": sum(u.phones is not None for u in corpus.utterances),
        "reading_problems": len(getattr(corpus, "problems", [])),
        "hash": h.hexdigest(),
    }


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int]:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` -> ``(0, 1)``."""
    if spec is None:
        return 0, 1
    try:
        i, n = (int(s) for s in spec.split("/")) if isinstance(spec, str) else map(int, spec)
    except (ValueError, TypeError):
        raise GradnapError(f"--shard {spec!r}: expected i/n, e.g. 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise GradnapError(f"--shard {spec!r}: need 0 <= i < n")
    return i, n


def _chain(digest: str, item_id: str) -> str:
    return hashlib.sha256(f"{digest}\n{item_id}".encode()).hexdigest()


def _item_id(utterance: Any, i: int) -> str:
    if isinstance(utterance, str):
        return utterance
    uid = getattr(utterance, "id", None)
    return str(uid) if uid is not None else f"item{i}"


def _is_corpus(data) -> bool:
    return hasattr(data, "utterances") and hasattr(data, "audio") and hasattr(data, "root")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the alignment and accumulation with one intra-op thread: they are hundreds of
    small memory-bound operations per chunk, for which a second thread adds more
    synchronisation than speed (and stalls badly on a busy machine)."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class UtteranceError(GradnapError):
    """One utterance cannot be used (unreadable, malformed, too short for the model): it
    is skipped and counted. Other errors (configuration, geometry) stop the run."""


class GradNAP:
    """Collects GradNAP accumulators for a model (DESIGN §1).

    Parameters
    ----------
    model:
        A PyTorch module mapping a spectrogram ``(B, F, T)`` to ``(B, K, T')`` (see the
        engines). It is put in eval mode.
    layers:
        ``named_modules()`` names (``"input"`` = the spectrogram); ``None`` = the engine's
        default (every layer). Unknown names raise :class:`GradnapError` listing valid ones.
    target:
        ``"prob"`` (default), ``"logprob"`` or ``"logit"``.
    examples:
        ``"nonblank"`` (default), ``"all"`` or ``"first"`` (:func:`~gradnap.method.examples.select_examples`).
    groups:
        Groupings collected in the same pass (:func:`gradnap.method.groupings.make_groupings`):
        ``"grapheme"``, ``"phoneme"``, ``"speaker"``, functions ``f(utt, frame, class)``.
    min_count:
        Groups with fewer examples are left out of profiles (kept in the accumulators).
    window:
        ``W_l`` per layer (int or ``{layer: int}``); default: cone widths (module doc).
    engine:
        ``"auto"``, ``"cone"`` or ``"autograd"`` (:func:`gradnap.engine.make_engine`), or
        an engine object following :mod:`gradnap.engine.base`.
    naps:
        Also accumulate sorted activations for NAPs (costs about one more sum per layer).
    chunk_frames:
        Target frames per engine call.
    blank:
        Class index of the CTC blank.
    features:
        Feature settings (for the time axis and corpus audio); default ``model.features``
        or :data:`gradnap.defaults.FEATURES`.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str] | str | None = None,
        *,
        target: str = METHOD.target,
        examples: str = METHOD.examples,
        groups: Any = COLLECT.groups,
        min_count: int = METHOD.min_count,
        window: int | dict[str, int] | None = None,
        engine: Any = "auto",
        naps: bool = True,
        chunk_frames: int = METHOD.chunk_frames,
        blank: int = BLANK_INDEX,
        features: FeatureConfig | None = None,
    ) -> None:
        if target not in TARGETS:
            raise GradnapError(f"target {target!r}: choose from {', '.join(TARGETS)}")
        if examples not in EXAMPLE_MODES:
            raise GradnapError(f"examples {examples!r}: choose from {', '.join(EXAMPLE_MODES)}")
        if int(min_count) < 0:
            raise GradnapError(f"min_count {min_count}: must be >= 0")
        if int(chunk_frames) < 1:
            raise GradnapError(f"chunk_frames {chunk_frames}: must be >= 1")
        model.eval()
        self.model = model
        if isinstance(layers, str):
            layers = [s.strip() for s in layers.split(",") if s.strip()]
        if layers is not None:
            layers = list(layers)
        if isinstance(engine, str):  # the engine checks the layer names
            from gradnap.engine import make_engine

            engine = make_engine(model, layers, target=target, kind=engine)
        self.engine = engine
        self.layers: list[str] = list(engine.layers)
        if layers is not None and self.layers != layers:
            raise GradnapError(f"the engine serves layers {self.layers}, not {layers}")
        if getattr(engine, "target", target) != target:
            raise GradnapError(f"the engine differentiates {engine.target!r}, not {target!r}")
        self.target = target
        self.examples = examples
        self.groupings: list[Grouping] = make_groupings(groups) + [AllGrouping()]
        self.min_count = int(min_count)
        self.naps = bool(naps)
        self.chunk_frames = int(chunk_frames)
        self.blank = int(blank)
        self.features = features if features is not None else getattr(model, "features", FEATURES)
        self.windows = self._check_windows(window)
        self.chain = model_geometry(engine, self.layers)
        self._model_id: dict | None = None
        #: Where the model came from (a checkpoint path), recorded in the result file.
        self.model_source: str | None = None
        #: This process's rank under torch.distributed (0 otherwise), set by :meth:`collect`.
        self.rank = 0
        #: The checkpoint file :meth:`collect` used (per rank under torch.distributed).
        self.checkpoint_file: Path | None = None
        self.reset()

    def _check_windows(self, window) -> dict[str, int]:
        if window is None:
            return {}
        if isinstance(window, int):
            out = dict.fromkeys(self.layers, window)
        else:
            out = {str(k): int(v) for k, v in dict(window).items()}
            bad = [k for k in out if k not in self.layers]
            if bad:
                raise GradnapError(
                    f"window: {bad} are not collected layers ({', '.join(self.layers)})"
                )
        for k, v in out.items():
            if v < 1:
                raise GradnapError(f"window[{k!r}] = {v}: must be >= 1")
        return out

    # --- state ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything collected so far."""
        self._sums: dict[str, GroupingSums] | None = None
        self._layer_info: dict[str, dict] | None = None
        self._clock: FrameClock | None = None
        self._n_features: int | None = None
        self.progress: _Progress = {
            "items_done": 0,
            "ids_hash": "",
            "utterances": 0,
            "skipped": 0,
            "frames": 0,
            "examples": 0,
            "seconds": 0.0,
        }
        self.problems: list[str] = []
        self._corpus: dict = {"root": None, "hash": None, "shards": [[0, 1]]}

    @property
    def model_id(self) -> dict:
        if self._model_id is None:
            self._model_id = model_identity(self.model)
        return self._model_id

    def _skip(self, message: str) -> None:
        log.warning("skipped: %s", message)
        self.progress["skipped"] += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    # --- geometry -----------------------------------------------------------------------

    def _init_layers(self, fwd: ForwardPass, n_features: int, n_frames: int) -> None:
        info: dict[str, dict] = {}
        if self.chain is None:  # jumps and the clock are estimated even for given widths
            try:
                estimated, self._clock = self._estimate(n_features)
            except GradnapError:
                if any(name not in self.windows for name in self.layers):
                    raise
                log.warning("no geometry: time axes of the window offsets are unknown")
                jumps = {n: n_frames / fwd.activations[n].shape[1] for n in self.layers}
                estimated = {n: (self.windows[n], jumps[n]) for n in self.layers}
                self._clock = FrameClock(n_frames / fwd.probs.shape[1], 0.0, self.features)
        else:
            estimated, self._clock = {}, FrameClock.from_geometry(self.chain[0], self.features)
        for name in self.layers:
            channels = int(fwd.activations[name].shape[0])
            d: dict[str, Any] = {"name": name, "channels": channels}
            if self.chain is not None:
                geom, index = self.chain
                d.update(index=index[name], width=geom.cone_width(index[name]))
                d.update(jump=geom.jump(index[name]), width_source="cone")
            else:
                width, jump = estimated[name]
                d.update(index=None, width=width, jump=jump, width_source="estimated")
            if name in self.windows:
                d.update(width=self.windows[name], width_source="user")
            info[name] = d
        self._layer_info = info
        shapes = {name: (d["channels"], d["width"]) for name, d in info.items()}
        self._sums = {
            g.name: GroupingSums(g.name, shapes, self.naps, getattr(g, "size_hint", 0))
            for g in self.groupings
        }

    def _estimate(self, n_features: int) -> tuple[dict[str, tuple[int, float]], FrameClock]:
        """Window width and jump of every layer, and the output clock, from the engine
        (see the module doc)."""
        gen = torch.Generator().manual_seed(0)
        for T in (256, 512, 1024, 2048, 4096, 8192):
            x = torch.randn(n_features, T, generator=gen)
            fwd = self.engine.forward(x)
            t_out = fwd.probs.shape[1]
            if t_out < 5:
                continue
            frames = torch.arange(t_out // 2 - 2, t_out // 2 + 3)
            classes = fwd.probs[:, frames].argmax(dim=0)
            wins = self.engine.sensitivities(fwd, frames, classes)
            out, clear = {}, True
            centres = []
            for name in self.layers:
                w = wins[name]
                t_l = fwd.activations[name].shape[1]
                nz = w.grads.abs().sum(dim=1) > 0  # (n, We)
                widths = []
                for i in range(nz.shape[0]):
                    cols = nz[i].nonzero().flatten()
                    if cols.numel() == 0:
                        continue
                    lo, hi = int(w.start[i] + cols[0]), int(w.start[i] + cols[-1])
                    clear &= lo > 0 and hi < t_l - 1
                    widths.append(hi - lo + 1)
                    if name == INPUT_LAYER:
                        centres.append((lo + hi) / 2 - float(frames[i]) * T / t_out)
                if not widths:
                    raise GradnapError(
                        f"layer {name!r}: zero sensitivity on a random input; pass window="
                    )
                out[name] = (max(widths), T / t_l)
            if clear:
                stride = T / t_out
                offset = float(np.mean(centres)) if centres else 0.0
                log.info(
                    "estimated window widths %s from a %d-frame probe",
                    {k: v[0] for k, v in out.items()},
                    T,
                )
                return out, FrameClock(stride, offset, self.features)
        raise GradnapError(
            "cannot estimate the window widths: the sensitivity of one output frame spans the "
            "whole probe input (8192 frames); pass window={layer: W} or window=W"
        )

    # --- one utterance ----------------------------------------------------------------

    def add(self, utterance: Any, features: torch.Tensor | np.ndarray, progress=None) -> int:
        """Add one utterance; returns its number of examples.

        ``features``: ``(F, T)``. Raises :class:`UtteranceError` (nothing added) when the
        features are unusable or the model cannot process them.
        """
        uid = _item_id(utterance, self.progress["utterances"])
        x = torch.as_tensor(features, dtype=torch.float32)
        if x.ndim != 2:
            raise UtteranceError(f"{uid}: features must be (F, T), got shape {tuple(x.shape)}")
        if self._n_features is not None and x.shape[0] != self._n_features:
            raise UtteranceError(f"{uid}: {x.shape[0]} feature bins, expected {self._n_features}")
        if not bool(torch.isfinite(x).all()):
            raise UtteranceError(f"{uid}: features contain NaN or infinity")
        try:
            fwd = self.engine.forward(x)
        except GradnapError as exc:
            raise UtteranceError(f"{uid}: {exc}") from exc
        except (RuntimeError, ValueError) as exc:
            raise UtteranceError(f"{uid}: the model cannot process it ({exc})") from exc
        probs = fwd.probs
        if probs.ndim != 2 or probs.shape[1] == 0:
            raise UtteranceError(
                f"{uid}: no output frame (input of {x.shape[1]} frames too short?)"
            )
        if not bool(torch.isfinite(probs).all()):
            raise UtteranceError(f"{uid}: model output is not finite")
        if probs.shape[0] <= self.blank:
            raise GradnapError(
                f"blank index {self.blank} but the model has {probs.shape[0]} classes; pass blank="
            )
        frames, classes = select_examples(probs, self.examples, self.blank)
        if self._layer_info is None:
            self._init_layers(fwd, x.shape[0], x.shape[1])
            self._n_features = int(x.shape[0])
        if self.chain is not None:  # the geometry must match what the model computes
            geom, index = self.chain
            for name in self.layers:
                t_l = fwd.activations[name].shape[1]
                if t_l != geom.output_length(x.shape[1], index[name]):
                    raise GradnapError(
                        f"{uid}: layer {name!r} has {t_l} positions, the Conv1d geometry "
                        f"predicts {geom.output_length(x.shape[1], index[name])}"
                    )
        assert self._sums is not None and self._clock is not None
        assert self._layer_info is not None
        fr_np, cl_np = frames.numpy(), classes.numpy()
        labels = {g.name: g.labels(utterance, fr_np, cl_np, self._clock) for g in self.groupings}
        gids = {name: self._sums[name].group_ids(lab) for name, lab in labels.items()}
        n = int(frames.numel())
        positions = {  # padded once for windows reaching 1.5 widths past the ends
            name: Positions(fwd.activations[name].detach(), pad=2 * self._layer_info[name]["width"])
            for name in self.layers
        }
        for s in range(0, n, self.chunk_frames):
            fr, cl = frames[s : s + self.chunk_frames], classes[s : s + self.chunk_frames]
            wins = self.engine.sensitivities(fwd, fr, cl)  # engines may need autograd
            with torch.no_grad(), _one_thread():
                stats = {}
                for name in self.layers:
                    win = wins[name]
                    grads, start, search = win.grads.detach(), win.start, None
                    if self.chain is not None:
                        geom, index = self.chain
                        search = geom.cone(fr, index[name])
                        width = geom.cone_width(index[name])
                        if grads.shape[2] != width:  # e.g. whole-layer windows: cut to the cone
                            grads, start = recrop(grads, start, search[0], width), search[0]
                    aligned = align(
                        positions[name],
                        grads,
                        start,
                        self._layer_info[name]["width"],
                        input_layer=name == INPUT_LAYER,
                        search=search,
                    )
                    del win
                    stats[name] = chunk_stats(aligned, self.naps)
                del wins
                self._accumulate(gids, slice(s, s + self.chunk_frames), int(fr.numel()), stats)
            if progress is not None:
                progress.update(int(fr.numel()))
        self.progress["utterances"] += 1
        self.progress["frames"] += int(probs.shape[1])
        self.progress["examples"] += n
        return n

    def _accumulate(self, gids: dict, rows: slice, n: int, stats: dict) -> None:
        """Add one chunk to every grouping; the dataset-wide ``all`` grouping (last) is
        summed from the partial sums of a grouping that labels every example of the chunk
        (one pass fewer), else directly."""
        assert self._sums is not None
        total = None
        for g in self.groupings:
            sums = self._sums[g.name]
            if g.name == ALL and total is not None:
                sums.add_total(n, int(gids[ALL][rows][0]), total)
                continue
            parts = sums.add(gids[g.name][rows], stats)
            if total is None:
                total = parts

    # --- the corpus loop --------------------------------------------------------------

    def _items(
        self, data, start: int, shard: tuple[int, int]
    ) -> Iterator[tuple[int, Any, Callable[[], Any] | None]]:
        """``(index, utterance, load)`` of ``data`` from item ``start`` on, in ``shard``;
        items before ``start`` or outside the shard are passed with ``load=None``."""
        s, n = shard
        if _is_corpus(data):
            for i, utt in enumerate(data.utterances):
                if i < start or i % n != s:
                    yield i, utt, None
                    continue

                def load(utt=utt):
                    try:
                        return log_mel(data.audio(utt, self.features), self.features)
                    except GradnapError as exc:
                        raise UtteranceError(str(exc)) from exc

                yield i, utt, load
            return
        for i, item in enumerate(data):
            loader: Callable[[], Any]
            if isinstance(item, tuple | list) and len(item) == 2:
                utt, feats = item

                def given(feats=feats):
                    return feats

                loader = given
            else:
                utt = None
                kind = type(item).__name__

                def malformed(i=i, kind=kind):
                    raise UtteranceError(f"item {i}: expected (utterance, features), got {kind}")

                loader = malformed
            yield i, utt, (None if i < start or i % n != s else loader)

    def collect(
        self,
        data: Any,
        *,
        progress: bool = True,
        checkpoint: str | Path | None = None,
        checkpoint_every: int = COLLECT.checkpoint_every,
        checkpoint_seconds: float = COLLECT.checkpoint_seconds,
        resume: bool = False,
        shard: str | tuple[int, int] | None = None,
        distributed: bool | None = None,
        limit: int | None = None,
    ) -> Result:
        """Collect over ``data`` and return the :class:`~gradnap.method.result.Result`.

        ``data``: a :class:`~gradnap.corpus.Corpus`, a corpus directory, or an iterable of
        ``(utterance, features (F, T))`` pairs (``utterance`` with ``.id`` and, for the
        phoneme grouping, ``.phones``). Broken utterances are skipped and counted.

        ``checkpoint``: a file to which the accumulators are written atomically every
        ``checkpoint_every`` utterances or ``checkpoint_seconds`` seconds; with
        ``resume=True`` an existing checkpoint is loaded and collection continues after
        its last utterance (same result as an uninterrupted run). ``shard``: ``"i/n"``
        processes items ``i, i+n, i+2n, ...``. ``distributed``: ``None`` = use
        ``torch.distributed`` when it is initialised or ``WORLD_SIZE > 1`` (torchrun);
        ranks split the shard and all-reduce their accumulators at the end; every rank
        returns the full result. ``limit``: stop after this many utterances.
        """
        from tqdm.auto import tqdm

        if isinstance(data, str | Path):
            from gradnap.corpus import read_corpus

            data = read_corpus(data)
        user_shard = parse_shard(shard)
        dist, own_group = _distributed(distributed)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
        eff_shard = (user_shard[0] + user_shard[1] * rank, user_shard[1] * world)
        if checkpoint is not None and world > 1:
            checkpoint = Path(f"{checkpoint}.rank{rank}-of-{world}")
        self.rank = rank
        self.checkpoint_file = None if checkpoint is None else Path(checkpoint)
        self.reset()
        if _is_corpus(data):
            self._corpus = corpus_identity(data)
        self._corpus["shards"] = [list(eff_shard)]
        if resume and checkpoint is not None and Path(checkpoint).is_file():
            self._restore(Result.load(checkpoint), checkpoint)
        start_item = self.progress["items_done"]
        total = None
        if _is_corpus(data):
            total = len(range(eff_shard[0], len(data.utterances), eff_shard[1]))
        bar = tqdm(
            desc="collect" if world == 1 else f"collect rank {rank}",
            unit="frame",
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.05,
        )
        t0 = time.perf_counter()
        seconds0 = self.progress["seconds"]
        last_ckpt_t, since_ckpt = t0, 0
        done_here = 0
        replay = ""  # hash of the ids of the items a resumed run skips
        try:
            for i, utt, load in self._items(data, start_item, eff_shard):
                uid = _item_id(utt, i)
                if i < start_item:
                    replay = _chain(replay, uid)
                    if i == start_item - 1 and replay != self.progress["ids_hash"]:
                        raise GradnapError(
                            f"resume: items 0..{i} of the data differ from the checkpoint's; "
                            "start again without resuming"
                        )
                    continue
                self.progress["ids_hash"] = _chain(self.progress["ids_hash"], uid)
                if load is not None:
                    if limit is not None and done_here >= limit:
                        break
                    try:
                        self.add(utt, load(), progress=bar)
                    except UtteranceError as exc:  # also raised by audio loading
                        self._skip(str(exc))
                    done_here += 1
                    since_ckpt += 1
                    bar.set_postfix_str(
                        f"utt {self.progress['utterances']}"
                        + (f"/{total}" if total is not None else "")
                        + (
                            f", skipped {self.progress['skipped']}"
                            if self.progress["skipped"]
                            else ""
                        ),
                        refresh=False,
                    )
                self.progress["items_done"] = i + 1
                now = time.perf_counter()
                if (
                    checkpoint is not None
                    and since_ckpt
                    and (since_ckpt >= checkpoint_every or now - last_ckpt_t >= checkpoint_seconds)
                ):
                    self.progress["seconds"] = seconds0 + now - t0
                    self.result(complete=False).save(checkpoint)
                    log.debug("checkpoint %s after item %d", checkpoint, i)
                    last_ckpt_t, since_ckpt = now, 0
        finally:
            bar.close()
            self.progress["seconds"] = seconds0 + time.perf_counter() - t0
        if start_item and self.progress["items_done"] < start_item:
            raise GradnapError(
                f"resume: the data has fewer items than the checkpoint's {start_item}; "
                "start again without resuming"
            )
        if dist is not None:
            try:
                self._all_reduce(dist, user_shard)
            finally:
                if own_group:
                    dist.destroy_process_group()
        result = self.result(complete=True)
        rate = self.progress["examples"] / max(self.progress["seconds"], 1e-9)
        log.info(
            "collected %d examples from %d utterances (%d skipped) at %.1f frames/s",
            self.progress["examples"],
            self.progress["utterances"],
            self.progress["skipped"],
            rate,
        )
        return result

    # --- result, checkpoint, resume -----------------------------------------------------

    def result(self, complete: bool = True) -> Result:
        """The accumulators and metadata collected so far as a :class:`Result`."""
        if self._sums is None:
            raise GradnapError("nothing collected: no utterance could be processed")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gradnap_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "complete": bool(complete),
            "layers": [self._layer_info[n] for n in self.layers],  # type: ignore[index]
            "groupings": [
                {
                    "name": g.name,
                    "kind": g.kind,
                    "function": getattr(g, "qualname", None),
                    "unlabelled": self._sums[g.name].unlabelled,
                }
                for g in self.groupings
            ],
            "options": {
                "target": self.target,
                "examples": self.examples,
                "min_count": self.min_count,
                "naps": self.naps,
                "chunk_frames": self.chunk_frames,
                "blank": self.blank,
                "engine": type(self.engine).__name__,
                "frame_seconds": self.features.frame_seconds,
                "n_features": self._n_features,
                "features": dataclasses.asdict(self.features),
            },
            "clock": self._clock.to_json() if self._clock else None,
            "model": dict(self.model_id, source=self.model_source),
            "corpus": self._corpus_meta(complete),
            "progress": dict(self.progress),
            "problems": list(self.problems),
        }
        extra: dict[str, np.ndarray] = {}
        if INPUT_LAYER in self.layers and self._n_features == self.features.n_mels:
            extra[f"axes/{INPUT_LAYER}/frequencies_hz"] = mel_frequencies(self.features)
        return Result(meta, build_arrays(self._sums, extra))

    def _corpus_meta(self, complete: bool) -> dict:
        corpus = dict(self._corpus)
        if corpus.get("root") is None and complete:  # an iterable: identify it by its ids
            corpus["utterances"] = self.progress["items_done"]
            corpus["hash"] = self.progress["ids_hash"] or None
        return corpus

    def _restore(self, ckpt: Result, path) -> None:
        m = ckpt.meta
        want = {
            "model": self.model_id["weights_sha256"],
            "layers": self.layers,
            "groupings": [g.name for g in self.groupings],
            "target": self.target,
            "examples": self.examples,
            "naps": self.naps,
            "chunk_frames": self.chunk_frames,
            "blank": self.blank,
            "corpus": self._corpus.get("hash"),
            "shards": self._corpus.get("shards"),
        }
        have = {
            "model": m["model"].get("weights_sha256"),
            "layers": [d["name"] for d in m["layers"]],
            "groupings": [g["name"] for g in m["groupings"]],
            "target": m["options"].get("target"),
            "examples": m["options"].get("examples"),
            "naps": m["options"].get("naps"),
            "chunk_frames": m["options"].get("chunk_frames"),
            "blank": m["options"].get("blank"),
            "corpus": m["corpus"].get("hash"),
            "shards": m["corpus"].get("shards"),
        }
        diff = [k for k in want if want[k] != have[k]]
        if diff:
            raise GradnapError(
                f"{path}: checkpoint does not match this run ({', '.join(diff)} differ); "
                "delete it or run without --resume"
            )
        self._sums = ckpt.grouping_sums()
        self._layer_info = {d["name"]: d for d in m["layers"]}
        clock = m.get("clock") or {}
        self._clock = FrameClock(clock.get("stride", 1.0), clock.get("offset", 0.0), self.features)
        self._n_features = m["options"].get("n_features")
        progress: _Progress = m["progress"]  # as :meth:`result` wrote it
        self.progress = progress.copy()
        self.problems = list(m.get("problems", []))
        log.info("resuming %s after %d items", path, self.progress["items_done"])

    # --- torch.distributed ------------------------------------------------------------

    def _all_reduce(self, dist, user_shard: tuple[int, int]) -> None:
        world = dist.get_world_size()
        state = (self._layer_info, self._clock, self._n_features)
        states: list = [None] * world
        dist.all_gather_object(states, state)
        ref = next((s for s in states if s[0] is not None), None)
        if ref is None:
            raise GradnapError("nothing collected on any rank")
        if self._layer_info is None:
            self._layer_info, self._clock, self._n_features = ref
            shapes = {n: (d["channels"], d["width"]) for n, d in self._layer_info.items()}
            self._sums = {
                g.name: GroupingSums(g.name, shapes, self.naps, getattr(g, "size_hint", 0))
                for g in self.groupings
            }
        assert self._sums is not None
        labels: list = [None] * world
        dist.all_gather_object(labels, {n: (s.labels, s.unlabelled) for n, s in self._sums.items()})
        for name, sums in self._sums.items():
            union: list[str] = []
            seen: set[str] = set()
            for per_rank in labels:
                for label in per_rank[name][0]:
                    if label not in seen:
                        seen.add(label)
                        union.append(label)
            sums.reorder(union)
            g = len(union)
            sums.unlabelled = sum(per_rank[name][1] for per_rank in labels)
            dist.all_reduce(sums.examples[:g])
            for layer_sums in sums.layers.values():
                for t in layer_sums.fields().values():
                    dist.all_reduce(t[:g])
        gathered: list = [None] * world
        dist.all_gather_object(gathered, (self.progress, self.problems))
        self.progress = {
            "utterances": sum(p["utterances"] for p, _ in gathered),
            "skipped": sum(p["skipped"] for p, _ in gathered),
            "frames": sum(p["frames"] for p, _ in gathered),
            "examples": sum(p["examples"] for p, _ in gathered),
            "seconds": max(p["seconds"] for p, _ in gathered),
            "items_done": max(p["items_done"] for p, _ in gathered),
            "ids_hash": "",
        }
        self.problems = [m for _, probs in gathered for m in probs][:MAX_PROBLEMS]
        self._corpus["shards"] = [list(user_shard)]
        self._corpus["world_size"] = world


def _distributed(flag: bool | None):
    """``(torch.distributed, created)`` when it is (or, under torchrun, can be) initialised,
    else ``(None, False)``; ``created``: this call initialised the process group."""
    if flag is False:
        return None, False
    import torch.distributed as dist

    if not dist.is_available():
        if flag:
            raise GradnapError("torch.distributed is not available in this PyTorch build")
        return None, False
    if dist.is_initialized():
        return dist, False
    if flag or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        return dist, True
    return None, False


def collect(model: nn.Module, data: Any, **kwargs) -> Result:
    """One-call form: ``GradNAP(model, **options).collect(data, **run_options)``."""
    run_keys = {
        "progress",
        "checkpoint",
        "checkpoint_every",
        "checkpoint_seconds",
        "resume",
        "shard",
        "distributed",
        "limit",
    }
    run = {k: kwargs.pop(k) for k in list(kwargs) if k in run_keys}
    return GradNAP(model, **kwargs).collect(data, **run)
