"""The collector: one utterance at a time into the accumulators (docs/method.md §1).

:class:`Collector` holds the method's options, the sensitivity engine (built once, and
the owner of the layer check and of the model's Conv1d chain), the groupings and the
accumulators. :meth:`Collector.add` is the per-utterance step: forward pass, examples,
labels, and for every chunk of examples the engine's sensitivities, the windows at
``t*`` and the sums. :mod:`gradnap.method.run` drives it over a corpus.

**Window widths.** ``W_l`` is the cone width of one output frame in layer ``l``
(:meth:`gradnap.geometry.Geometry.cone_width`) when the engine has the model's Conv1d
chain (the project's :class:`~gradnap.asr.model.Wav2Letter`, torchaudio's
``Wav2Letter``). ``window=`` (an int for every layer or ``{layer: W}``) overrides it. For
other models the geometry is *estimated* once, before the first utterance, from the
engine itself: a seeded ``N(0, 1)`` input of growing length (256 .. 8192 frames) is run
and ``W_l`` is the widest support (non-zero sensitivity) of 5 output frames around its
middle; the estimate is accepted only when that support stays clear of the input's
edges (else an error asks for ``window=``). Layers without a known geometry have no cone,
so ``t*`` is searched over the whole utterance; their jump (input frames per position,
for the ms axis) is ``T_in / T_l`` of the probe, and the output clock (for the phoneme
grouping) is the probe's input-support centre of an output frame. A model without a
finite cone (attention) declares widths, jumps and the clock itself
(``engine.layout``, e.g. :meth:`gradnap.asr.hf.HFCTCModel.window_layout`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from gradnap.defaults import BLANK_INDEX, COLLECT, FEATURES, METHOD, FeatureConfig
from gradnap.engine import ConeEngine, make_engine
from gradnap.engine.base import INPUT_LAYER, TARGETS, ForwardPass, Window
from gradnap.errors import GradnapError
from gradnap.features import mel_frequencies
from gradnap.geometry import Geometry
from gradnap.method.accumulators import (
    FOLD_KEYS,
    NAP_FIELDS,
    Accumulators,
    ChunkRows,
    FoldLayout,
    GroupingSums,
    SumsSpec,
    chunk_parts,
    chunk_stats,
    fold_of,
    sort_windows,
)
from gradnap.method.examples import EXAMPLE_MODES, select_examples
from gradnap.method.groupings import (
    AllGrouping,
    FrameClock,
    Grouping,
    InputEvidence,
    make_groupings,
)
from gradnap.method.metadata import (
    Clock,
    CorpusMeta,
    GroupingMeta,
    LayerMeta,
    ModelMeta,
    Options,
    Progress,
    RunMeta,
    add_counts,
)
from gradnap.method.result import FREQUENCIES_KEY, Result
from gradnap.method.spectrum import (
    SPECTRUM_LAYER,
    SpectrumLayout,
    spectrum_aligned,
    spectrum_layout,
)
from gradnap.method.windows import Aligned, Buffers, Positions, align, recrop
from gradnap.threads import WorkerPool, one_thread

__all__ = ["Collector", "UtteranceError", "model_geometry", "model_identity"]

log = logging.getLogger(__name__)


class UtteranceError(GradnapError):
    """One utterance cannot be used (unreadable, malformed, too short for the model): it
    is skipped and counted. Other errors (configuration, geometry) stop the run."""


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


def model_identity(model: nn.Module, source: str | None = None) -> ModelMeta:
    """Class, config name and fields, parameter count and SHA-256 of the weights."""
    cfg = getattr(model, "config", None)
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return ModelMeta(
        class_name=f"{type(model).__module__}.{type(model).__qualname__}",
        name=getattr(cfg, "name", None) or type(model).__name__,
        config=(
            dataclasses.asdict(cfg)
            if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type)
            else None
        ),
        parameters=int(sum(p.numel() for p in model.parameters())),
        weights_sha256=h.hexdigest(),
        source=source,
    )


def item_id(utterance: Any, i: int) -> str:
    """The id of an utterance (``.id``, or the string itself; ``item<i>`` otherwise)."""
    if isinstance(utterance, str):
        return utterance
    uid = getattr(utterance, "id", None)
    return str(uid) if uid is not None else f"item{i}"


@dataclass(frozen=True)
class _Plan:
    """How a chunk's sums are formed: the groups of every grouping as the columns of one
    membership matrix (those of the groupings that keep NAP sums first), and each
    grouping's share of them."""

    #: ``(n, M)`` the membership columns of every grouping side by side.
    member: torch.Tensor
    #: The first ``naps`` columns belong to groupings that keep NAP sums.
    naps: int
    #: Per grouping with labelled examples: its sums, its rows and its columns.
    steps: tuple[tuple[GroupingSums, ChunkRows, slice], ...]


class Collector:
    """Collects GradNAP accumulators for a model, one utterance at a time.

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
        ``"nonblank"`` (default), ``"all"`` or ``"first"``
        (:func:`~gradnap.method.examples.select_examples`).
    groupings:
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
    label_time:
        When a time-based label (the phoneme) is read: ``"centre"``, ``"peak"``,
        ``"centroid"`` or ``"mass"`` (:class:`~gradnap.method.groupings.PhonemeGrouping`,
        docs/method.md §1.5).
    threads:
        Threads for the windows and sums of a chunk (layers run in parallel, each with one
        intra-op thread; the result does not depend on it); default: torch's intra-op
        thread count.
    folds, fold_key, fold_span, fold_bins:
        ``K`` per-fold sums, by a hash of the utterance (or speaker) id, and which window
        columns they keep (:class:`~gradnap.method.accumulators.FoldLayout`: the central
        ``fold_span`` of the window at full resolution, the rest in time bins of
        ``ceil(W / fold_bins)`` columns or, with 0, not kept); docs/method.md §6.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str] | str | None = None,
        *,
        target: str = METHOD.target,
        examples: str = METHOD.examples,
        groupings: Any = COLLECT.groupings,
        min_count: int = METHOD.min_count,
        window: int | dict[str, int] | None = None,
        engine: Any = "auto",
        naps: bool = True,
        chunk_frames: int = METHOD.chunk_frames,
        blank: int = BLANK_INDEX,
        features: FeatureConfig | None = None,
        threads: int | None = None,
        label_time: str = METHOD.label_time,
        folds: int = METHOD.folds,
        fold_key: str = METHOD.fold_key,
        fold_bins: int = METHOD.fold_bins,
        fold_span: float = METHOD.fold_span,
    ) -> None:
        if target not in TARGETS:
            raise GradnapError(f"target {target!r}: choose from {', '.join(TARGETS)}")
        if examples not in EXAMPLE_MODES:
            raise GradnapError(f"examples {examples!r}: choose from {', '.join(EXAMPLE_MODES)}")
        if int(min_count) < 0:
            raise GradnapError(f"min_count {min_count}: must be >= 0")
        if int(folds) < 1:
            raise GradnapError(f"folds {folds}: must be >= 1")
        if fold_key not in FOLD_KEYS:
            raise GradnapError(f"fold_key {fold_key!r}: choose from {', '.join(FOLD_KEYS)}")
        if int(chunk_frames) < 1:
            raise GradnapError(f"chunk_frames {chunk_frames}: must be >= 1")
        model.eval()
        self.model = model
        if isinstance(layers, str):
            layers = [s.strip() for s in layers.split(",") if s.strip()]
        wanted = None if layers is None else list(layers)
        if isinstance(engine, str):  # the engine checks the layer names
            engine = make_engine(model, wanted, target=target, kind=engine)
        self.engine = engine
        self._window_layout = {"contiguous": True} if isinstance(engine, ConeEngine) else {}
        self.layers: list[str] = list(engine.layers)
        if wanted is not None and self.layers != wanted:
            raise GradnapError(f"the engine serves layers {self.layers}, not {wanted}")
        if getattr(engine, "target", target) != target:
            raise GradnapError(f"the engine differentiates {engine.target!r}, not {target!r}")
        self.target = target
        self.examples = examples
        self.label_time = label_time
        self.groupings: list[Grouping] = make_groupings(
            groupings, label_time=label_time, class_labels=getattr(model, "labels", None)
        ) + [AllGrouping()]
        #: Groupings whose labels are read where the model listens (the input alignment).
        self._need_evidence: list[Any] = [
            g for g in self.groupings if getattr(g, "needs_evidence", False)
        ]
        if self._need_evidence and INPUT_LAYER not in self.layers:
            raise GradnapError(
                f"label_time={label_time!r} reads phoneme labels at the input layer's "
                f"alignment: collect the {INPUT_LAYER!r} layer too, or use label_time='centre'"
            )
        self.min_count = int(min_count)
        self.naps = bool(naps)
        self.chunk_frames = int(chunk_frames)
        self.folds = int(folds)
        self.fold_key = fold_key
        self.fold_layout = FoldLayout(int(fold_bins), float(fold_span))
        self.blank = int(blank)
        self.features = features if features is not None else getattr(model, "features", FEATURES)
        self.windows = self._check_windows(window)
        #: The layers summed: the engine's, and after a waveform input its spectrum
        #: (docs/method.md §1.10; derived from the input layer's windows).
        self.sum_layers: list[str] = list(self.layers)
        if INPUT_LAYER in self.layers and self.features.input == "waveform":
            self.sum_layers.insert(self.layers.index(INPUT_LAYER) + 1, SPECTRUM_LAYER)
        self._spectrum: SpectrumLayout | None = None
        self.chain = model_geometry(engine, self.layers)
        self.threads = max(1, min(len(self.layers), threads or torch.get_num_threads()))
        self._workers = WorkerPool("gradnap-collect")
        #: Per layer, the arrays its chunks are cropped into (kept across chunks).
        self._buffers: dict[str, Buffers] = {}
        self._layer_order = list(self.layers)
        self._model_id: ModelMeta | None = None
        #: Where the model came from (a model file), recorded in the result file.
        self.model_source: str | None = None
        self.reset()

    def _check_windows(self, window: int | dict[str, int] | None) -> dict[str, int]:
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
        self.sums: Accumulators | None = None
        self._layer_meta: dict[str, LayerMeta] | None = None
        self._clock: FrameClock | None = None
        self._n_features: int | None = None
        self.progress = Progress()
        self.problems: list[str] = []
        #: Examples per listening offset in ms (input ``t*`` minus the receptive-field
        #: centre), when the input layer is collected.
        self.listening: dict[int, int] = {}

    @property
    def model_id(self) -> ModelMeta:
        if self._model_id is None:
            self._model_id = model_identity(self.model)
        return dataclasses.replace(self._model_id, source=self.model_source)

    def count(self, **increments: Any) -> None:
        """Add to the progress counters (``utterances=1``, ...) or set ``items_done`` etc."""
        self.progress = dataclasses.replace(self.progress, **increments)

    def skip(self, message: str) -> None:
        """Count a skipped utterance and keep its message (the first ``COLLECT.max_problems``)."""
        log.warning("skipped: %s", message)
        self.count(skipped=self.progress.skipped + 1)
        if len(self.problems) < COLLECT.max_problems:
            self.problems.append(message)

    # --- geometry -----------------------------------------------------------------------

    def _init_layers(self, fwd: ForwardPass, n_features: int, n_frames: int) -> None:
        estimated: dict[str, tuple[int, float]] = {}
        layout = getattr(self.engine, "layout", None)
        declared = layout(self.layers) if self.chain is None and callable(layout) else None
        if declared is not None:  # the model's own windows (attention: no finite cone)
            estimated, (stride, offset) = declared
            self._clock = FrameClock(stride, offset, self.features)
        elif self.chain is None:  # jumps and the clock are estimated even for given widths
            try:
                estimated, self._clock = self._estimate(n_features)
            except GradnapError:
                if any(name not in self.windows for name in self.layers):
                    raise
                log.warning("no geometry: time axes of the window offsets are unknown")
                estimated = {
                    n: (self.windows[n], n_frames / fwd.activations[n].shape[1])
                    for n in self.layers
                }
                self._clock = FrameClock(n_frames / fwd.probs.shape[1], 0.0, self.features)
        else:
            self._clock = FrameClock.from_geometry(self.chain[0], self.features)
        info: dict[str, LayerMeta] = {}
        for name in self.layers:
            channels = int(fwd.activations[name].shape[0])
            if self.chain is not None:
                geom, index = self.chain
                i = index[name]
                d = LayerMeta(name, channels, geom.cone_width(i), i, float(geom.jump(i)), "cone")
            else:
                width, jump = estimated[name]
                source = "model" if declared is not None else "estimated"
                d = LayerMeta(name, channels, width, None, jump, source)
            if name in self.windows:
                d = dataclasses.replace(d, width=self.windows[name], width_source="user")
            info[name] = d
        self._set_layers(info)

    def _set_layers(self, info: dict[str, LayerMeta]) -> None:
        """Take the layers' metadata (the spectrum layer's added when it is summed) and
        make the accumulators."""
        if SPECTRUM_LAYER in self.sum_layers:
            self._spectrum = layout = spectrum_layout(
                info[INPUT_LAYER].width, self.features.sample_rate
            )
            info[SPECTRUM_LAYER] = LayerMeta(
                SPECTRUM_LAYER, layout.channels, layout.frames, None, float(layout.hop), "spectrum"
            )
        info = {name: info[name] for name in self.sum_layers}
        self._layer_meta = info
        # the largest windows first, so that the threads finish together
        self._layer_order = sorted(self.layers, key=lambda n: -info[n].channels * info[n].width)
        if self.sums is None:
            self.sums = Accumulators.zeros(self._specs(), {n: d.shape for n, d in info.items()})

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

    def _check_features(self, uid: str, features: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The features ``(F, T)`` as float32, or :class:`UtteranceError`."""
        x = torch.as_tensor(features, dtype=torch.float32)
        if x.ndim != 2:
            raise UtteranceError(f"{uid}: features must be (F, T), got shape {tuple(x.shape)}")
        if self._n_features is not None and x.shape[0] != self._n_features:
            raise UtteranceError(f"{uid}: {x.shape[0]} feature bins, expected {self._n_features}")
        if not bool(torch.isfinite(x).all()):
            raise UtteranceError(f"{uid}: features contain NaN or infinity")
        return x

    def _forward(self, uid: str, x: torch.Tensor) -> ForwardPass:
        """The engine's forward pass of ``x`` ``(F, T)``, checked."""
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
        if self._layer_meta is None:
            self._init_layers(fwd, x.shape[0], x.shape[1])
            self._n_features = int(x.shape[0])
        return fwd

    def _check_geometry(self, uid: str, fwd: ForwardPass, x: torch.Tensor) -> None:
        """The geometry must match what the model computes."""
        if self.chain is None:
            return
        geom, index = self.chain
        for name in self.layers:
            t_l = fwd.activations[name].shape[1]
            if t_l != geom.output_length(x.shape[1], index[name]):
                raise GradnapError(
                    f"{uid}: layer {name!r} has {t_l} positions, the Conv1d geometry "
                    f"predicts {geom.output_length(x.shape[1], index[name])}"
                )

    def add(self, utterance: Any, features: torch.Tensor | np.ndarray, progress=None) -> int:
        """Add one utterance; returns its number of examples.

        ``features``: ``(F, T)``. Raises :class:`UtteranceError` (nothing added) when the
        features are unusable or the model cannot process them. ``progress``: a tqdm bar
        updated with the examples done.
        """
        uid = item_id(utterance, self.progress.utterances)
        fold = self._fold(uid, utterance)
        with one_thread():
            x = self._check_features(uid, features)
        fwd = self._forward(uid, x)  # the engine's own threads
        with one_thread():
            self._check_geometry(uid, fwd, x)
            frames, classes = select_examples(fwd.probs, self.examples, self.blank)
            assert self.sums is not None and self._clock is not None
            assert self._layer_meta is not None
            fr_np, cl_np = frames.numpy(), classes.numpy()
            gids = {  # labels read where the model listens come per chunk, below
                g.name: self.sums[g.name].group_ids(g.labels(utterance, fr_np, cl_np, self._clock))
                for g in self.groupings
                if g not in self._need_evidence
            }
            positions = {  # padded once for windows reaching 1.5 widths past the ends
                name: Positions(fwd.activations[name].detach(), 2 * self._layer_meta[name].width)
                for name in self.layers
            }
        n = int(frames.numel())
        for s in range(0, n, self.chunk_frames):
            fr, cl = frames[s : s + self.chunk_frames], classes[s : s + self.chunk_frames]
            # the engine's own threads; the cone engine's worker threads also transpose
            # the windows to the (n, C, W) layout the alignment wants
            wins = self.engine.sensitivities(fwd, fr, cl, **self._window_layout)
            with torch.no_grad(), one_thread():
                chunk_gids = {name: ids[s : s + self.chunk_frames] for name, ids in gids.items()}
                done: dict[str, Aligned] = {}  # per layer, its windows at t*
                inputs: dict[str, Aligned] = {}  # the input layer's alignment, when collected
                ties: dict[str, tuple[int, int]] = {}  # per layer, where the tie rule chose
                windows = functools.partial(
                    self._window_step,
                    positions=positions,
                    wins=wins,
                    frames=fr,
                    done=done,
                    inputs=inputs,
                    ties=ties,
                )
                if self._need_evidence:  # labels need the input layer's alignment: windows
                    self._workers.map(windows, self._layer_order, self.threads)  # first
                    aligned = inputs[INPUT_LAYER]
                    assert aligned.score is not None and aligned.score_start is not None
                    evidence = InputEvidence(
                        aligned.centre.numpy(), aligned.score.numpy(), aligned.score_start.numpy()
                    )
                    for g in self._need_evidence:
                        labels = g.labels(utterance, fr.numpy(), cl.numpy(), self._clock, evidence)
                        chunk_gids[g.name] = self.sums[g.name].group_ids(labels)
                plan = self._begin_chunk(chunk_gids, int(fr.numel()), fold)

                # layers are independent: their windows and sums on the collector's threads
                step = functools.partial(self._layer_step, windows=windows, plan=plan, done=done)
                self._workers.map(step, self._layer_order, self.threads)
                if INPUT_LAYER in inputs:
                    self._count_listening(fr, inputs[INPUT_LAYER].centre)
                if ties:
                    self._count_ties(ties)
                del wins
            if progress is not None:
                progress.update(int(fr.numel()))
        p = self.progress
        self.count(
            utterances=p.utterances + 1,
            frames=p.frames + int(fwd.probs.shape[1]),
            examples=p.examples + n,
        )
        return n

    def _layer_step(
        self,
        name: str,
        windows: Callable[[str], None],
        plan: _Plan,
        done: dict[str, Aligned],
    ) -> None:
        """One layer of a chunk: its windows at ``t*`` (``windows``, unless ``done`` has
        them already), then the sums of every grouping."""
        if name not in done:
            windows(name)
        self._accumulate(name, plan, done[name])
        if name == INPUT_LAYER and self._spectrum is not None:
            self._accumulate(SPECTRUM_LAYER, plan, done[SPECTRUM_LAYER])

    def _window_step(
        self,
        name: str,
        positions: dict[str, Positions],
        wins: dict[str, Window],
        frames: torch.Tensor,
        done: dict[str, Aligned],
        inputs: dict[str, Aligned],
        ties: dict[str, tuple[int, int]],
    ) -> None:
        """The windows at ``t*`` of one layer, into ``done`` (the input layer's alignment
        also into ``inputs``, and a waveform's spectra into ``done``; the examples whose
        ``t*`` the tie rule chose, and the flat ones among them, into ``ties``)."""
        aligned = self._align(name, positions[name], wins[name], frames)
        if name == INPUT_LAYER:
            inputs[name] = aligned
            if self._spectrum is not None:  # before the input's windows are sorted
                done[SPECTRUM_LAYER] = spectrum_aligned(aligned, self._spectrum)
        if aligned.ties:
            ties[name] = (aligned.ties, aligned.flat)
        done[name] = aligned

    def _count_ties(self, ties: dict[str, tuple[int, int]]) -> None:
        """Add a chunk's tie-rule counts per layer (docs/method.md §1.3) to the progress."""
        p = self.progress
        self.count(
            ties=add_counts(p.ties, {k: t for k, (t, _) in ties.items()}),
            flat=add_counts(p.flat, {k: f for k, (_, f) in ties.items() if f}),
        )

    def _count_listening(self, frames: torch.Tensor, peak: torch.Tensor) -> None:
        """Add the chunk's listening offsets (input ``t*`` minus the output frame's
        receptive-field centre, in whole ms) to :attr:`listening`."""
        assert self._clock is not None
        centre = frames.numpy() * self._clock.stride + self._clock.offset  # input frames
        ms = np.rint((peak.numpy() - centre) * 1000.0 * self.features.frame_seconds)
        values, counts = np.unique(ms.astype(np.int64), return_counts=True)
        self.listening = add_counts(
            self.listening, dict(zip(values.tolist(), counts.tolist(), strict=True))
        )

    def _align(self, name: str, positions: Positions, win: Window, frames: torch.Tensor) -> Aligned:
        """The windows at ``t*`` of one layer."""
        grads, start, search = win.grads.detach(), win.start, None
        if self.chain is not None:
            geom, index = self.chain
            search = geom.cone(frames, index[name])
            width = geom.cone_width(index[name])
            if grads.shape[2] != width:  # e.g. whole-layer windows: cut to the cone
                grads, start = recrop(grads, start, search[0], width), search[0]
        assert self._layer_meta is not None
        return align(
            positions,
            grads,
            start,
            self._layer_meta[name].width,
            input_layer=name == INPUT_LAYER,
            search=search,
            buffers=self._buffers.setdefault(name, Buffers()),
        )

    def _fold(self, uid: str, utterance: Any) -> int:
        """The fold of an utterance (docs/method.md §6): a hash of its id or speaker."""
        key = uid
        if self.fold_key == "speaker":
            speaker = getattr(utterance, "speaker", None)
            if speaker is None:
                raise GradnapError(f"{uid}: fold_key='speaker' but the utterance has no speaker")
            key = str(speaker)
        return fold_of(key, self.folds)

    def _specs(self) -> dict[str, tuple[int, SumsSpec]]:
        """What each grouping's sums keep (docs/method.md §6): a random-label grouping
        keeps per-fold sums only when there are folds (it exists to check the
        cross-validated statistics' zero), and no NAP sums."""
        out = {}
        for g in self.groupings:
            random = bool(getattr(g, "random_labels", False))
            spec = SumsSpec(
                naps=self.naps and not random,
                folds=self.folds,
                totals=not (random and self.folds >= 2),
                layout=self.fold_layout,
            )
            out[g.name] = (getattr(g, "size_hint", 0), spec)
        return out

    def _begin_chunk(self, gids: dict[str, torch.Tensor], n: int, fold: int = 0) -> _Plan:
        """Count a chunk's examples in every grouping; returns how its sums are formed
        (one matrix product per field gives the partial sums of every group of every
        grouping, :func:`~gradnap.method.accumulators.chunk_parts`)."""
        assert self.sums is not None
        steps, members, col, naps = [], [], 0, 0
        for with_naps in (True, False):
            for g in self.groupings:
                sums = self.sums[g.name]
                if sums.spec.naps != with_naps:
                    continue
                chunk = sums.begin_chunk(gids[g.name], fold)
                if chunk is None:
                    continue
                m = chunk.member.shape[1]
                steps.append((sums, chunk, slice(col, col + m)))
                members.append(chunk.member)
                col += m
            if with_naps:
                naps = col
        member = torch.cat(members, dim=1) if members else torch.zeros(n, 0)
        return _Plan(member, naps if self.naps else 0, tuple(steps))

    @staticmethod
    def _accumulate(layer: str, plan: _Plan, aligned: Aligned) -> None:
        """Add one layer's chunk to every grouping as :meth:`_begin_chunk` planned. The
        NAPs are sorted after the totals, in the activation windows themselves (they are
        not needed any more: no copy)."""
        if not plan.steps:
            return
        stats = chunk_stats(aligned, naps=False)
        parts = chunk_parts(stats, plan.member, naps=False)
        if plan.naps:
            stats.ascending, stats.sorted_count = sort_windows(aligned, aligned.act.numpy())
            nap_parts = chunk_parts(stats, plan.member[:, : plan.naps], True, NAP_FIELDS)
        for sums, chunk, cols in plan.steps:
            mine = {k: v[cols] for k, v in parts.items()}
            if sums.spec.naps and plan.naps:
                mine.update({k: v[cols] for k, v in nap_parts.items()})
            sums.add_parts(layer, chunk, mine)

    # --- result -------------------------------------------------------------------------

    def options(self) -> Options:
        """The run's options as recorded in its metadata."""
        return Options(
            target=self.target,
            examples=self.examples,
            min_count=self.min_count,
            naps=self.naps,
            chunk_frames=self.chunk_frames,
            blank=self.blank,
            engine=type(self.engine).__name__,
            frame_seconds=self.features.frame_seconds,
            n_features=self._n_features,
            features=dataclasses.asdict(self.features),
            label_time=self.label_time,
            folds=self.folds,
            fold_key=self.fold_key,
            fold_bins=self.fold_layout.bins,
            fold_span=self.fold_layout.span,
        )

    def planned_meta(self, like: RunMeta, corpus: CorpusMeta) -> RunMeta:
        """This run's metadata as far as it is known before any utterance, to compare
        with a checkpoint ``like`` (window widths given by ``window=`` must match; the
        others follow from the model, which is compared by its weights)."""
        known = {d.name: d for d in like.layers}
        layers = []
        for name in self.sum_layers:
            d = known.get(name, LayerMeta(name, 0, 0))
            if name in self.windows:
                d = dataclasses.replace(d, width=self.windows[name])
            layers.append(d)
        return RunMeta(
            layers=tuple(layers),
            groupings=tuple(GroupingMeta(g.name) for g in self.groupings),
            options=self.options(),
            model=self.model_id,
            corpus=corpus,
        )

    def meta(self, complete: bool, corpus: CorpusMeta) -> RunMeta:
        """The run's metadata so far."""
        assert self.sums is not None and self._layer_meta is not None
        unlabelled = self.sums.unlabelled()
        return RunMeta(
            layers=tuple(self._layer_meta[n] for n in self.sum_layers),
            groupings=tuple(
                GroupingMeta(g.name, g.kind, getattr(g, "qualname", None), unlabelled[g.name])
                for g in self.groupings
            ),
            options=self.options(),
            clock=None if self._clock is None else Clock(self._clock.stride, self._clock.offset),
            model=self.model_id,
            corpus=corpus,
            progress=self.progress,
            complete=bool(complete),
            problems=tuple(self.problems),
            listening_offsets=dict(self.listening),
        )

    def result(self, complete: bool = True, corpus: CorpusMeta | None = None) -> Result:
        """The accumulators and metadata collected so far as a :class:`Result` (its arrays
        are views of the accumulators: save or copy it before collecting more)."""
        if self.sums is None:
            raise GradnapError("nothing collected: no utterance could be processed")
        arrays = self.sums.to_arrays()
        if INPUT_LAYER in self.layers and self._n_features == self.features.n_mels:
            arrays[FREQUENCIES_KEY] = mel_frequencies(self.features)
        if self._spectrum is not None:
            arrays[f"axes/{SPECTRUM_LAYER}/frequencies_hz"] = self._spectrum.frequencies_hz
        return Result(self.meta(complete, corpus or CorpusMeta()), arrays)

    def restore(self, checkpoint: Result) -> None:
        """Continue from ``checkpoint`` (its compatibility is the caller's to check)."""
        m = checkpoint.meta
        self.sums = checkpoint.accumulators(copy=True)
        self._set_layers({d.name: d for d in m.layers})
        clock = m.clock or Clock()
        self._clock = FrameClock(clock.stride, clock.offset, self.features)
        self._n_features = m.options.n_features
        self.progress = m.progress
        self.problems = list(m.problems)
        self.listening = dict(m.listening_offsets)

    def adopt_layout(self, meta: RunMeta) -> None:
        """Empty accumulators laid out as ``meta``'s (a rank that saw no utterance)."""
        self.sums = None
        self._set_layers({d.name: d for d in meta.layers})
        clock = meta.clock or Clock()
        self._clock = FrameClock(clock.stride, clock.offset, self.features)
        self._n_features = meta.options.n_features
