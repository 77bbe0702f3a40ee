"""The result of a collection run: metadata, accumulators, and the profiles computed from them.

One ``.npz`` file per run, readable with numpy alone (``np.load(path)``; no pickles):
plain arrays of sums and counts (:mod:`gradnap.method.accumulators`) plus the JSON
metadata (:class:`~gradnap.method.metadata.RunMeta`). The format is described in
``docs/results.md``. :class:`Result` computes GradNAPs, NAvAIs and NAPs
(docs/method.md §1.4, §1.9) with their axes; results of shards merge by addition
(:func:`merge_results`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradnap.defaults import COLLECT
from gradnap.engine.base import INPUT_LAYER
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes
from gradnap.method.accumulators import (
    FOLD_SOURCE,
    NAP_FIELDS,
    PREFIX,
    TOTAL_FIELDS,
    Accumulators,
    FoldLayout,
    array_key,
    encode_fold_arrays,
    upgrade_arrays,
)
from gradnap.method.groupings import ALL, is_random_label
from gradnap.method.metadata import (
    FORMAT_VERSION,
    CorpusMeta,
    LayerMeta,
    Progress,
    RunMeta,
    add_counts,
)
from gradnap.method.profiles import (
    dataset_mean,
    gradnap_profile,
    mean_profile,
    nap_profile,
    navai_profile,
    neuron_std,
    relative_magnitude_db,
)
from gradnap.method.spectrum import SPECTRUM_LAYER

__all__ = ["Axes", "Result", "merge_results", "PROFILE_KINDS"]

log = logging.getLogger(__name__)

#: Kinds of profile :meth:`Result.profile` computes.
PROFILE_KINDS = ("gradnap", "navai", "nap", "activation", "gradient", "sensitivity_db")
#: Layers whose NAvAI (mean input minus the dataset mean, no mask) is defined: the input
#: and a waveform input's spectrum (docs/method.md §1.9, §1.10).
INPUT_VIEWS = (INPUT_LAYER, SPECTRUM_LAYER)
#: Why a result without NAP sums cannot give NAPs (the error and the report say this).
NO_NAPS = (
    "this result holds no NAP sums (collected with naps=False / 'gradnap collect --no-naps'); "
    "collect again with NAPs to see the NAP baseline"
)
INPUT = INPUT_LAYER
#: Name of the mel-frequency axis array of the input layer in a result file.
FREQUENCIES_KEY = f"axes/{INPUT_LAYER}/frequencies_hz"


@dataclass(frozen=True)
class Axes:
    """Axes of one layer's profiles ``(C, W)``."""

    #: ``(C,)`` neuron (channel) indices; mel-bin indices for the input.
    neurons: np.ndarray
    #: ``(W,)`` int: window column minus ``W // 2`` (layer positions relative to ``t*``).
    offsets: np.ndarray
    #: ``(W,)`` float: the same offsets in milliseconds (``offset * jump * frame ms``).
    offsets_ms: np.ndarray
    #: ``(F,)`` frequencies in Hz of the rows: mel-bin centres for a log-mel input, the
    #: frequency bins of a waveform input's spectrum (:data:`SPECTRUM_LAYER`); else ``None``.
    frequencies_hz: np.ndarray | None = None


class Result:
    """Accumulators and metadata of one run (or a merge of several).

    ``meta``: the run's :class:`~gradnap.method.metadata.RunMeta`; ``arrays``: the
    result file's arrays by name (accumulators and axes). Profiles use ``min_count`` from
    the run's options unless given.
    """

    def __init__(self, meta: RunMeta, arrays: dict[str, np.ndarray]) -> None:
        self.meta = meta
        self.arrays = arrays
        self._cache: dict[tuple, np.ndarray] = {}  # per (layer, grouping) means and scales

    # --- file -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a result file; raises :class:`GradnapError` naming the file and saying what
        is wrong when it is not one (not an .npz, a truncated or corrupt .npz, an .npz of
        other arrays, a result of a newer gradnap, missing arrays)."""
        path = Path(path)
        if path.is_dir():
            raise GradnapError(f"{path}: is a directory, not a result file")
        if not path.is_file():
            raise GradnapError(f"{path}: result file not found")
        arrays = _read_npz(path)
        if "meta" not in arrays:
            raise GradnapError(
                f"{path}: not a gradnap result (an .npz file without a 'meta' entry; it "
                f"holds {_some(arrays)})"
            )
        meta_entry = arrays.pop("meta")
        try:
            meta = RunMeta.from_json(json.loads(meta_entry.item()))
        except (ValueError, TypeError, AttributeError) as exc:
            raise GradnapError(
                f"{path}: not a gradnap result (its 'meta' entry is not the JSON metadata: {exc})"
            ) from exc
        except GradnapError as exc:
            raise GradnapError(f"{path}: {exc}") from None
        # older layouts, float16 means and float32 sums back to float64 sums
        if meta.format_version == 2:  # full-resolution per-fold sums: today's layout
            layout = FoldLayout()
            options = dataclasses.replace(
                meta.options, fold_bins=layout.bins, fold_span=layout.span
            )
            meta = meta.replace(options=options)
        arrays = upgrade_arrays(arrays, meta.format_version, fold_layout(meta))
        missing = _missing_arrays(meta, arrays)
        if missing:
            raise GradnapError(
                f"{path}: damaged result file: lacks {len(missing)} arrays ({_some(missing)})"
            )
        return cls(meta.replace(format_version=FORMAT_VERSION), arrays)

    def to_bytes(self) -> bytes:
        """The ``.npz`` file. A complete result stores its float sums as float32 (about
        7 significant digits, far below the sampling error of any mean; half the size)
        and its per-fold sums as float16 means, scaled per array (relative error at most
        ``2**-11`` of each mean, about 1% of the sampling error of a per-fold mean on the
        demo; :func:`~gradnap.method.accumulators.encode_fold_arrays`); a checkpoint
        (incomplete) keeps float64 sums, so a resumed run equals an uninterrupted one
        exactly (docs/results.md, "Size")."""
        buf = io.BytesIO()
        meta = np.array(json.dumps(self.meta.to_json(), sort_keys=True))
        arrays = self.arrays
        if self.complete:
            arrays = encode_fold_arrays(arrays)
            arrays = {
                k: v.astype(np.float32)
                if k.startswith(PREFIX + "/") and v.dtype == np.float64
                else v
                for k, v in arrays.items()
            }
        # allow_pickle=True is numpy's default; passing it keeps mypy from matching **arrays to it
        np.savez(buf, allow_pickle=True, meta=meta, **arrays)
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file, then rename). Returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes())
        return path

    # --- what it holds ------------------------------------------------------------------

    @property
    def layers(self) -> list[str]:
        """Layer names, input side first."""
        return self.meta.layer_names

    @property
    def groupings(self) -> list[str]:
        """Grouping names (without the dataset-wide ``"all"``)."""
        return [name for name in self.meta.grouping_names if name != ALL]

    @property
    def min_count(self) -> int:
        return int(self.meta.options.min_count)

    @property
    def complete(self) -> bool:
        """``False`` for a checkpoint of an unfinished run."""
        return self.meta.complete

    @property
    def has_naps(self) -> bool:
        return bool(self.meta.options.naps)

    def layer_info(self, layer: str) -> LayerMeta:
        """Metadata of ``layer``: name, index, channels, width, jump, width_source."""
        return self.meta.layer(layer)

    def _check_layer(self, layer: str) -> None:
        self.meta.layer(layer)

    def _check_grouping(self, grouping: str) -> None:
        if grouping != ALL and grouping not in self.groupings:
            raise GradnapError(
                f"unknown grouping {grouping!r}; this result holds: {', '.join(self.groupings)}"
            )

    def labels(self, grouping: str) -> list[str]:
        """All labels of ``grouping`` (including groups below ``min_count``)."""
        self._check_grouping(grouping)
        return [str(s) for s in self.arrays[array_key(grouping, "labels")].tolist()]

    def counts(self, grouping: str) -> dict[str, int]:
        """Examples per group of ``grouping``."""
        labels = self.labels(grouping)
        ex = self.arrays[array_key(grouping, "examples")]
        return dict(zip(labels, (int(n) for n in ex), strict=True))

    def groups(self, grouping: str, min_count: int | None = None) -> list[str]:
        """Labels with at least ``min_count`` examples, sorted."""
        m = self.min_count if min_count is None else min_count
        return sorted(k for k, n in self.counts(grouping).items() if n >= m)

    def left_out(self, grouping: str, min_count: int | None = None) -> dict[str, int]:
        """Groups below ``min_count`` and their example counts (left out of profiles)."""
        m = self.min_count if min_count is None else min_count
        return {k: n for k, n in sorted(self.counts(grouping).items()) if n < m}

    def unlabelled(self, grouping: str) -> int:
        """Examples to which ``grouping`` gave no label."""
        self._check_grouping(grouping)
        return self.meta.grouping(grouping).unlabelled

    @property
    def num_examples(self) -> int:
        return int(self.arrays[array_key(ALL, "examples")].sum())

    def axes(self, layer: str) -> Axes:
        """Neurons, window offsets (positions and ms) and, for the input, mel frequencies."""
        info = self.layer_info(layer)
        w, c = info.width, info.channels
        offsets = np.arange(w) - w // 2
        frame_ms = 1000.0 * self.meta.options.frame_seconds
        offsets_ms = offsets * (float(info.jump) if info.jump is not None else np.nan) * frame_ms
        freqs = self.arrays.get(f"axes/{layer}/frequencies_hz")
        return Axes(np.arange(c), offsets, offsets_ms, None if freqs is None else freqs.copy())

    # --- profiles -----------------------------------------------------------------------

    def _find_grouping(self, group: str, grouping: str | None) -> str:
        if grouping is not None:
            self._check_grouping(grouping)
            if group not in self.labels(grouping):
                raise GradnapError(
                    f"grouping {grouping!r} has no group {group!r}; "
                    f"groups: {', '.join(self.labels(grouping))}"
                )
            return grouping
        hits = [g for g in self.groupings if group in self.labels(g)]
        if len(hits) == 1:
            return hits[0]
        if group == ALL:
            return ALL
        if not hits:
            raise GradnapError(
                f"no grouping has a group {group!r} (groupings: {', '.join(self.groupings)})"
            )
        functions = {g.name: g.function for g in self.meta.groupings}
        real = [g for g in hits if not is_random_label(g, functions.get(g))]
        if len(real) == 1:  # random-label groupings reuse the real labels: the real one
            return real[0]
        raise GradnapError(f"group {group!r} is in several groupings ({', '.join(hits)}); name one")

    @property
    def folds(self) -> int:
        """``K``: number of folds of the per-fold sums (1 for format-version-1 files)."""
        return int(self.meta.options.folds)

    def fold_sums(self, layer: str, grouping: str, field: str) -> np.ndarray:
        """The per-fold sums of ``field`` (``act_sum``, ``grad_sum`` ``(G, K, C, B)``,
        ``count`` ``(G, K, B)``) of the window columns the run's
        :class:`~gradnap.method.accumulators.FoldLayout` keeps (:func:`fold_layout`),
        groups in :meth:`labels` order (docs/method.md §6)."""
        self._check_layer(layer)
        self._check_grouping(grouping)
        names = {v: k for k, v in FOLD_SOURCE.items()}
        if field not in names:
            raise GradnapError(f"per-fold sums exist for {', '.join(names)}, not {field!r}")
        key = array_key(grouping, layer, names[field])
        if key not in self.arrays:
            raise GradnapError(f"result lacks {key}")
        return self.arrays[key]

    def has_profiles(self, grouping: str, kind: str = "gradnap") -> bool:
        """``grouping`` keeps full-resolution totals (all but random-label groupings
        collected with folds, which keep per-fold sums only); for ``kind="nap"``, NAP sums
        (none for random-label groupings, nor with ``naps=False``)."""
        self._check_grouping(grouping)
        field = "sorted_sum" if kind == "nap" else "act_sum"
        return any(array_key(grouping, d.name, field) in self.arrays for d in self.meta.layers)

    def _sums(self, layer: str, grouping: str, field: str) -> np.ndarray:
        """Full-resolution totals ``(G, ...)``."""
        key = array_key(grouping, layer, field)
        if key not in self.arrays:
            if field.startswith("sorted"):
                raise GradnapError(NO_NAPS)
            if array_key(grouping, layer, "fold_act") in self.arrays:
                raise GradnapError(
                    f"grouping {grouping!r} keeps per-fold sums only (random labels, "
                    "for the cross-validated statistics; docs/method.md §6): it has no profiles"
                )
            raise GradnapError(f"result lacks {key}")
        return self.arrays[key]

    def dataset_mean(self, layer: str, grouping: str | None = None) -> np.ndarray:
        """``M_l`` ``(C, W)``: mean aligned activation over all examples of all groups of
        ``grouping`` (including groups below ``min_count``); ``None`` = every example."""
        self._check_layer(layer)
        g = ALL if grouping is None else grouping
        self._check_grouping(g)
        mean = self._cached(
            ("mean", layer, g),
            lambda: dataset_mean(self._sums(layer, g, "act_sum"), self._sums(layer, g, "count")),
        )
        return mean.copy()

    def profile(
        self,
        layer: str,
        group: str,
        grouping: str | None = None,
        kind: str = "gradnap",
        min_count: int | None = None,
    ) -> np.ndarray:
        """Profile ``(C, W)`` of ``group`` in ``layer`` (axes: :meth:`axes`).

        ``kind``: ``"gradnap"`` (default, docs/method.md §1.4), ``"navai"`` (input layer and
        a waveform's spectrum only), ``"nap"`` (sorted activations; columns are ranks, not
        time), ``"activation"`` (``Ā``), ``"gradient"`` (``Ḡ``) or ``"sensitivity_db"``
        (the spectrum layer only: the group's mean sensitivity magnitude against
        the dataset's, in dB, §1.10). ``grouping`` may be omitted when exactly one
        grouping has the label, not counting random-label groupings (chance levels, which
        reuse the real labels) when a real one has it. Groups below ``min_count`` raise
        :class:`GradnapError`.
        """
        if kind not in PROFILE_KINDS:
            raise GradnapError(
                f"unknown profile kind {kind!r}; choose from {', '.join(PROFILE_KINDS)}"
            )
        self._check_layer(layer)
        if kind == "navai" and layer not in INPUT_VIEWS:
            raise GradnapError(f"NAvAI is defined for the input layer, not {layer!r}")
        if kind == "sensitivity_db" and layer != SPECTRUM_LAYER:
            raise GradnapError(
                f"sensitivity_db is defined for the {SPECTRUM_LAYER!r} layer of a waveform "
                f"model (docs/method.md §1.10), not {layer!r}"
            )
        grouping = self._find_grouping(group, grouping)
        gi = self.labels(grouping).index(group)
        n = int(self.arrays[array_key(grouping, "examples")][gi])
        m = self.min_count if min_count is None else min_count
        if grouping != ALL and n < m:
            raise GradnapError(
                f"group {group!r} of {grouping!r} has {n} examples < min_count {m}; it is left "
                "out (pass min_count=0 to compute it anyway)"
            )
        return self._profile(layer, grouping, gi, kind)

    def _cached(self, key: tuple, compute) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _profile(self, layer: str, grouping: str, gi: int, kind: str) -> np.ndarray:
        if kind in ("nap",):
            sorted_sum = self._sums(layer, grouping, "sorted_sum")
            sorted_count = self._sums(layer, grouping, "sorted_count")
            std = self._cached(
                ("std", layer, grouping),
                lambda: neuron_std(
                    self._sums(layer, grouping, "act_sum").sum(axis=0),
                    self._sums(layer, grouping, "act_sqsum").sum(axis=0),
                    self._sums(layer, grouping, "count").sum(axis=0),
                ),
            )
            sorted_mean = self._cached(
                ("sorted_mean", layer, grouping), lambda: dataset_mean(sorted_sum, sorted_count)
            )
            return nap_profile(sorted_sum[gi], sorted_count[gi], sorted_mean, std)
        act_sum = self._sums(layer, grouping, "act_sum")
        count = self._sums(layer, grouping, "count")
        if kind == "gradient":
            return mean_profile(self._sums(layer, grouping, "grad_sum")[gi], count[gi])
        if kind == "sensitivity_db":
            grad_sum = self._sums(layer, grouping, "grad_sum")
            totals = self._cached(("grad_total", layer, grouping), lambda: grad_sum.sum(axis=0))
            return relative_magnitude_db(grad_sum[gi], count[gi], totals, count.sum(axis=0))
        mean = self._cached(("mean", layer, grouping), lambda: dataset_mean(act_sum, count))
        if kind == "activation":
            return mean_profile(act_sum[gi], count[gi], mean)
        if kind == "navai":
            return navai_profile(act_sum[gi], count[gi], mean)
        grad_sum = self._sums(layer, grouping, "grad_sum")
        return gradnap_profile(act_sum[gi], grad_sum[gi], count[gi], mean)

    def profiles(
        self,
        layer: str,
        grouping: str = "grapheme",
        kind: str = "gradnap",
        min_count: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Profiles ``(C, W)`` of every group of ``grouping`` with at least ``min_count``
        examples, by label (sorted)."""
        return {
            g: self.profile(layer, g, grouping, kind, min_count=min_count)
            for g in self.groups(grouping, min_count)
        }

    def navai(self, group: str, grouping: str | None = None) -> np.ndarray:
        """NAvAI ``(F, W_0)`` of ``group`` (requires the input layer)."""
        return self.profile(INPUT, group, grouping, kind="navai")

    def nap(self, layer: str, group: str, grouping: str | None = None) -> np.ndarray:
        """NAP ``(C, W)`` of ``group`` in ``layer`` (columns are ranks, largest first)."""
        return self.profile(layer, group, grouping, kind="nap")

    # --- reporting ----------------------------------------------------------------------

    def summary(self) -> str:
        """A few lines: run status, layers, groups kept and left out."""
        p = self.meta.progress
        lines = [
            f"gradnap result ({'complete' if self.complete else 'INCOMPLETE checkpoint'}): "
            f"{p.utterances} utterances, {p.skipped} skipped, "
            f"{self.num_examples} examples of {p.frames} output frames",
            "layers: " + ", ".join(f"{d.name} ({d.channels}x{d.width})" for d in self.meta.layers),
        ]
        for g in self.groupings:
            kept, out = self.groups(g), self.left_out(g)
            line = f"{g}: {len(kept)} groups with >= {self.min_count} examples"
            if out:
                line += f"; left out: {', '.join(f'{k} ({n})' for k, n in out.items())}"
            un = self.unlabelled(g)
            if un:
                line += f"; {un} examples without a label"
            lines.append(line)
        if p.ties:  # in layer order
            counts = [
                f"{d.name} {p.ties[d.name]}"
                + (f" ({p.flat[d.name]} flat)" if p.flat.get(d.name) else "")
                for d in self.meta.layers
                if p.ties.get(d.name)
            ]
            lines.append(f"t* chosen by the tie rule (examples per layer): {', '.join(counts)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Result {len(self.layers)} layers, groupings {self.groupings}, {self.num_examples} examples>"

    def __add__(self, other: Result) -> Result:
        return merge_results([self, other])

    # --- accumulators -------------------------------------------------------------------

    def accumulators(self, copy: bool = False) -> Accumulators:
        """The sums as :class:`~gradnap.method.accumulators.Accumulators` (``copy=False``:
        views of this result's arrays)."""
        return Accumulators.from_arrays(
            self.arrays,
            {g.name: g.unlabelled for g in self.meta.groupings},
            {d.name: d.shape for d in self.meta.layers},
            fold_layout(self.meta),
            copy,
        )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the .npz file ``path`` (no pickles), or :class:`GradnapError`
    saying why it is not one."""
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        raise GradnapError(f"{path}: empty file, not a result file")
    if head == b"\x93NUMPY":
        raise GradnapError(f"{path}: a single .npy array, not a result file (.npz)")
    if not head.startswith(b"PK"):
        raise GradnapError(f"{path}: not a gradnap result file (not an .npz archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise GradnapError(
            f"{path}: truncated or corrupt .npz file (an interrupted copy or write?): {exc}"
        ) from exc
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickled" in str(exc):
            raise GradnapError(
                f"{path}: holds Python objects (pickles), not a gradnap result file"
            ) from exc
        raise GradnapError(f"{path}: truncated or corrupt .npz file ({exc})") from exc
    except Exception as exc:  # zipfile and numpy raise several types
        raise GradnapError(f"{path}: cannot read result file ({exc})") from exc


def fold_layout(meta: RunMeta) -> FoldLayout:
    """The :class:`~gradnap.method.accumulators.FoldLayout` of a result's per-fold sums."""
    return FoldLayout(meta.options.fold_bins, meta.options.fold_span)


def _missing_arrays(meta: RunMeta, arrays: dict[str, np.ndarray]) -> list[str]:
    """The accumulator arrays ``meta`` promises that ``arrays`` (today's layout) lacks:
    totals (none for a random-label grouping with folds), NAP sums (when on, not for
    random labels) and per-fold sums (with folds); see the collector's ``_specs``."""
    folds = meta.options.folds >= 2
    want = []
    for g in meta.groupings:
        random = is_random_label(g.name, g.function) and g.name != ALL
        fields = list(FOLD_SOURCE) if folds else []
        if not (random and folds):
            fields += TOTAL_FIELDS
            if meta.options.naps and not random:
                fields += NAP_FIELDS
        want += [array_key(g.name, "labels"), array_key(g.name, "examples")]
        want += [array_key(g.name, d.name, f) for d in meta.layers for f in fields]
    return [k for k in want if k not in arrays]


def _some(names: Iterable[str], n: int = 3) -> str:
    names = list(names)
    if not names:
        return "nothing"
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def merge_results(results: Iterable[Result | str | Path]) -> Result:
    """Add up results of shards or separate runs (accumulators are sums).

    All results must be compatible (:meth:`~gradnap.method.metadata.RunMeta.mismatches`:
    the same model weights, layers, window widths, groupings and options). Two results of
    the same shard of the same corpus would count its examples twice and raise
    :class:`GradnapError`.
    """
    results = list(results)
    names = [f"result {i}" if isinstance(r, Result) else str(r) for i, r in enumerate(results, 1)]
    loaded = [r if isinstance(r, Result) else Result.load(r) for r in results]
    if not loaded:
        raise GradnapError("merge: no result given")
    first = loaded[0]
    sums = first.accumulators(copy=True)
    for i, r in enumerate(loaded[1:], 1):
        diff = first.meta.mismatches(r.meta, "merge")
        if diff:
            raise GradnapError(
                f"merge: {names[i]} differs from {names[0]} in {'; '.join(diff)}; "
                "only results of the same model, layers, groupings and options add up"
            )
        sums.merge(r.accumulators())
    # corpus: shards of the same corpus must not repeat
    seen: dict[tuple, str] = {}
    for name, r in zip(names, loaded, strict=True):
        c = r.meta.corpus
        for shard in c.shards or ((0, 1),):
            key = (c.hash, tuple(shard))
            if c.hash is not None and key in seen:
                raise GradnapError(
                    f"merge: shard {shard[0]}/{shard[1]} of corpus {c.root} appears twice "
                    f"({seen[key]} and {name}; its examples would be counted twice)"
                )
            seen[key] = name
    corpora = [r.meta.corpus for r in loaded]
    if len({c.hash for c in corpora}) == 1:
        corpus = corpora[0].replace_shards(sorted(s for (_, s) in seen))
    else:
        log.warning("merge: the results come from %d different corpora", len(corpora))
        corpus = CorpusMeta(hash=None, shards=(), merged=tuple(corpora))
    meta = first.meta.replace(
        corpus=corpus,
        progress=Progress.combine((r.meta.progress for r in loaded), parallel=False),
        problems=tuple(p for r in loaded for p in r.meta.problems)[: COLLECT.max_problems],
        complete=all(r.complete for r in loaded),
        merged_from=sum(r.meta.merged_from for r in loaded),
        listening_offsets=add_counts(*(r.meta.listening_offsets for r in loaded)),
        groupings=tuple(
            g.__class__(g.name, g.kind, g.function, sums[g.name].unlabelled)
            for g in first.meta.groupings
        ),
    )
    extra = {k: v for k, v in first.arrays.items() if k.startswith("axes/")}
    return Result(meta, {**extra, **sums.to_arrays()})
