"""The result file of a collection run, and the profiles computed from it.

One ``.npz`` file per run, readable with numpy alone (``np.load(path)``; no pickles):
plain arrays of sums and counts plus a JSON metadata string. The format is described in
``docs/results.md``. :class:`Result` wraps the arrays and computes GradNAPs, NAvAIs and
NAPs (DESIGN §1.4, §1.9) with their axes; results of shards merge by addition
(:func:`merge_results`).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradnap.defaults import FEATURES, METHOD
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes
from gradnap.method.accumulators import GroupingSums
from gradnap.method.groupings import ALL
from gradnap.method.profiles import (
    dataset_mean,
    gradnap_profile,
    mean_profile,
    nap_profile,
    navai_profile,
    neuron_std,
)

__all__ = ["Axes", "Result", "merge_results", "FORMAT", "FORMAT_VERSION", "PROFILE_KINDS"]

log = logging.getLogger(__name__)

FORMAT = "gradnap-result"
FORMAT_VERSION = 1
#: Kinds of profile :meth:`Result.profile` computes.
PROFILE_KINDS = ("gradnap", "navai", "nap", "activation", "gradient")
#: Why a result without NAP sums cannot give NAPs (the error and the report say this).
NO_NAPS = (
    "this result holds no NAP sums (collected with naps=False / 'gradnap collect --no-naps'); "
    "collect again with NAPs to see the NAP baseline"
)
INPUT = "input"


@dataclass(frozen=True)
class Axes:
    """Axes of one layer's profiles ``(C, W)``."""

    #: ``(C,)`` neuron (channel) indices; mel-bin indices for the input.
    neurons: np.ndarray
    #: ``(W,)`` int: window column minus ``W // 2`` (layer positions relative to ``t*``).
    offsets: np.ndarray
    #: ``(W,)`` float: the same offsets in milliseconds (``offset * jump * frame ms``).
    offsets_ms: np.ndarray
    #: ``(F,)`` mel-bin centre frequencies in Hz for the input layer, else ``None``.
    frequencies_hz: np.ndarray | None = None


def _key(grouping: str, *parts: str) -> str:
    return "/".join(("sums", grouping) + parts)


class Result:
    """Accumulators and metadata of one run (or a merge of several).

    ``meta`` is the JSON metadata (see ``docs/results.md``); ``arrays`` maps array names
    to numpy arrays. Profiles use ``min_count`` from the run's options unless given.
    """

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        if meta.get("format") != FORMAT:
            raise GradnapError(f"not a gradnap result (format {meta.get('format')!r})")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise GradnapError(
                f"result format version {meta['format_version']} is newer than this gradnap "
                f"reads ({FORMAT_VERSION}); upgrade gradnap"
            )
        self.meta = meta
        self.arrays = arrays
        self._layers = {d["name"]: d for d in meta["layers"]}
        self._cache: dict[tuple, np.ndarray] = {}  # per (layer, grouping) means and scales

    # --- file -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Result:
        """Read a result file; raises :class:`GradnapError` naming the file when unusable."""
        path = Path(path)
        if not path.is_file():
            raise GradnapError(f"{path}: result file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile / numpy raise several types
            raise GradnapError(f"{path}: cannot read result file ({exc})") from exc
        if "meta" not in arrays:
            raise GradnapError(f"{path}: not a gradnap result file (no 'meta' entry)")
        try:
            meta = json.loads(arrays.pop("meta").item())
        except (ValueError, TypeError) as exc:
            raise GradnapError(f"{path}: metadata is not valid JSON ({exc})") from exc
        try:
            return cls(meta, arrays)
        except GradnapError as exc:
            raise GradnapError(f"{path}: {exc}") from None
        except KeyError as exc:
            raise GradnapError(f"{path}: metadata lacks {exc}") from None

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = np.array(json.dumps(self.meta, sort_keys=True))
        # allow_pickle=True is numpy's default; passing it keeps mypy from matching **arrays to it
        np.savez(buf, allow_pickle=True, meta=meta, **self.arrays)
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
        return [d["name"] for d in self.meta["layers"]]

    @property
    def groupings(self) -> list[str]:
        """Grouping names (without the dataset-wide ``"all"``)."""
        return [g["name"] for g in self.meta["groupings"] if g["name"] != ALL]

    @property
    def min_count(self) -> int:
        return int(self.meta["options"].get("min_count", METHOD.min_count))

    @property
    def complete(self) -> bool:
        """``False`` for a checkpoint of an unfinished run."""
        return bool(self.meta.get("complete", False))

    @property
    def has_naps(self) -> bool:
        return bool(self.meta["options"].get("naps", False))

    def layer_info(self, layer: str) -> dict:
        """Metadata of ``layer``: name, index, channels, width, jump, width_source."""
        self._check_layer(layer)
        return dict(self._layers[layer])

    def _check_layer(self, layer: str) -> None:
        if layer not in self._layers:
            raise GradnapError(
                f"unknown layer {layer!r}; this result holds: {', '.join(self.layers)}"
            )

    def _check_grouping(self, grouping: str) -> None:
        if grouping != ALL and grouping not in self.groupings:
            raise GradnapError(
                f"unknown grouping {grouping!r}; this result holds: {', '.join(self.groupings)}"
            )

    def labels(self, grouping: str) -> list[str]:
        """All labels of ``grouping`` (including groups below ``min_count``)."""
        self._check_grouping(grouping)
        return [str(s) for s in self.arrays[_key(grouping, "labels")].tolist()]

    def counts(self, grouping: str) -> dict[str, int]:
        """Examples per group of ``grouping``."""
        labels = self.labels(grouping)
        ex = self.arrays[_key(grouping, "examples")]
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
        for g in self.meta["groupings"]:
            if g["name"] == grouping:
                return int(g.get("unlabelled", 0))
        return 0

    @property
    def num_examples(self) -> int:
        return int(self.arrays[_key(ALL, "examples")].sum())

    def axes(self, layer: str) -> Axes:
        """Neurons, window offsets (positions and ms) and, for the input, mel frequencies."""
        info = self.layer_info(layer)
        w, c = int(info["width"]), int(info["channels"])
        offsets = np.arange(w) - w // 2
        jump = info.get("jump")
        frame_ms = 1000.0 * float(self.meta["options"].get("frame_seconds", FEATURES.frame_seconds))
        offsets_ms = offsets * (float(jump) if jump is not None else np.nan) * frame_ms
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
        raise GradnapError(f"group {group!r} is in several groupings ({', '.join(hits)}); name one")

    def _sums(self, layer: str, grouping: str, field: str) -> np.ndarray:
        key = _key(grouping, layer, field)
        if key not in self.arrays:
            if field.startswith("sorted"):
                raise GradnapError(NO_NAPS)
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

        ``kind``: ``"gradnap"`` (default, DESIGN §1.4), ``"navai"`` (input layer only),
        ``"nap"`` (sorted activations; columns are ranks, not time), ``"activation"``
        (``Ā``) or ``"gradient"`` (``Ḡ``). ``grouping`` may be omitted when exactly one
        grouping has the label. Groups below ``min_count`` raise :class:`GradnapError`.
        """
        if kind not in PROFILE_KINDS:
            raise GradnapError(
                f"unknown profile kind {kind!r}; choose from {', '.join(PROFILE_KINDS)}"
            )
        self._check_layer(layer)
        if kind == "navai" and layer != INPUT:
            raise GradnapError(f"NAvAI is defined for the input layer, not {layer!r}")
        grouping = self._find_grouping(group, grouping)
        gi = self.labels(grouping).index(group)
        n = int(self.arrays[_key(grouping, "examples")][gi])
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
        p = self.meta.get("progress", {})
        lines = [
            f"gradnap result ({'complete' if self.complete else 'INCOMPLETE checkpoint'}): "
            f"{p.get('utterances', 0)} utterances, {p.get('skipped', 0)} skipped, "
            f"{self.num_examples} examples of {p.get('frames', 0)} output frames",
            "layers: "
            + ", ".join(f"{d['name']} ({d['channels']}x{d['width']})" for d in self.meta["layers"]),
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
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Result {len(self.layers)} layers, groupings {self.groupings}, {self.num_examples} examples>"

    def __add__(self, other: Result) -> Result:
        return merge_results([self, other])

    # --- accumulators -------------------------------------------------------------------

    def grouping_sums(self) -> dict[str, GroupingSums]:
        """The accumulators as :class:`~gradnap.method.accumulators.GroupingSums` (for merging)."""
        out = {}
        for g in self.meta["groupings"]:
            name = g["name"]
            prefix = _key(name) + "/"
            arrays = {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}
            out[name] = GroupingSums.from_arrays(name, arrays, g.get("unlabelled", 0))
        return out


def build_arrays(
    sums: dict[str, GroupingSums], extra: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Arrays of a result file from accumulators (plus axes arrays in ``extra``)."""
    arrays = dict(extra)
    for name, gs in sums.items():
        for key, value in gs.to_arrays().items():
            arrays[_key(name, key)] = value
    return arrays


_SAME_OPTIONS = ("target", "examples", "naps", "blank", "frame_seconds")


def merge_results(results: Iterable[Result | str | Path]) -> Result:
    """Add up results of shards or separate runs (accumulators are sums).

    All results must come from the same model weights, layers, window widths, groupings
    and options (target, examples, NAPs). Two results of the same shard of the same
    corpus would count its examples twice and raise :class:`GradnapError`.
    """
    loaded = [r if isinstance(r, Result) else Result.load(r) for r in results]
    if not loaded:
        raise GradnapError("merge: no result given")
    first = loaded[0]
    meta = json.loads(json.dumps(first.meta))  # deep copy
    sums = first.grouping_sums()
    for i, r in enumerate(loaded[1:], 2):
        where = f"merge: result {i}"
        if r.meta["model"].get("weights_sha256") != first.meta["model"].get("weights_sha256"):
            raise GradnapError(f"{where} comes from different model weights than result 1")
        mine = [(d["name"], d["channels"], d["width"]) for d in first.meta["layers"]]
        theirs = [(d["name"], d["channels"], d["width"]) for d in r.meta["layers"]]
        if mine != theirs:
            raise GradnapError(f"{where} has different layers or window widths: {theirs} vs {mine}")
        if [g["name"] for g in r.meta["groupings"]] != [g["name"] for g in first.meta["groupings"]]:
            raise GradnapError(
                f"{where} has different groupings: {r.groupings} vs {first.groupings}"
            )
        for opt in _SAME_OPTIONS:
            a, b = first.meta["options"].get(opt), r.meta["options"].get(opt)
            if a != b:
                raise GradnapError(f"{where} was collected with {opt}={b!r}, result 1 with {a!r}")
        other = r.grouping_sums()
        for name, gs in sums.items():
            gs.merge(other[name])
    # corpus: shards of the same corpus must not repeat
    seen: set[tuple] = set()
    corpora = []
    for r in loaded:
        c = r.meta.get("corpus", {})
        for shard in c.get("shards") or [[0, 1]]:
            key = (c.get("hash"), tuple(shard))
            if c.get("hash") is not None and key in seen:
                raise GradnapError(
                    f"merge: shard {shard[0]}/{shard[1]} of corpus {c.get('root')} appears twice "
                    "(its examples would be counted twice)"
                )
            seen.add(key)
        corpora.append(c)
    hashes = {c.get("hash") for c in corpora}
    if len(hashes) == 1:
        meta["corpus"] = dict(corpora[0])
        meta["corpus"]["shards"] = sorted(list(s) for (_, s) in seen)
    else:
        log.warning("merge: the results come from %d different corpora", len(hashes))
        meta["corpus"] = {"merged": corpora, "hash": None, "shards": None}
    progress: dict = {}
    for counter in ("utterances", "skipped", "frames", "examples", "seconds"):
        progress[counter] = sum(r.meta.get("progress", {}).get(counter, 0) for r in loaded)
    meta["progress"] = progress
    meta["problems"] = [p for r in loaded for p in r.meta.get("problems", [])][:1000]
    meta["complete"] = all(r.complete for r in loaded)
    meta["merged_from"] = len(loaded)
    for g in meta["groupings"]:
        g["unlabelled"] = sums[g["name"]].unlabelled
    extra = {k: v for k, v in first.arrays.items() if k.startswith("axes/")}
    return Result(meta, build_arrays(sums, extra))
