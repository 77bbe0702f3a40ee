"""The metadata of a result file: one frozen dataclass, one codec, one compatibility rule.

:class:`RunMeta` describes a collection run (or a merge of several): what was collected
(layers, groupings, options), from what (model, corpus) and how far it got (progress,
problems). It is written as JSON into every result file and checkpoint
(:meth:`RunMeta.to_json`) and read back by :meth:`RunMeta.from_json`, which also reads
every earlier version of the format. :meth:`RunMeta.mismatches` is the one rule that
decides whether two runs may be resumed from or merged with each other; the counters of
several runs or ranks add up with :meth:`Progress.combine`.

The JSON layout is documented in ``docs/results.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from gradnap._version import __version__
from gradnap.errors import GradnapError

__all__ = [
    "add_counts",
    "FORMAT",
    "FORMAT_VERSION",
    "Clock",
    "CorpusMeta",
    "GroupingMeta",
    "LayerMeta",
    "ModelMeta",
    "Options",
    "Progress",
    "RunMeta",
]

_K = TypeVar("_K", int, str)

#: The ``format`` field of every result file.
FORMAT = "gradnap-result"
#: The newest format version this package writes and reads.
FORMAT_VERSION = 4
#: Version 1: totals only. Version 2: full-resolution per-fold sums in place of the totals.
#: Version 3: totals, and time-binned per-fold sums beside them (docs/results.md).
#: Version 4: per-fold sums at full resolution in the window's central span
#: (``options.fold_span``), stored as float16 means.


def _pick(cls: type, data: Mapping[str, Any], **renamed: str) -> dict[str, Any]:
    """The entries of ``data`` that are fields of ``cls`` (``renamed``: field <- JSON key)."""
    names = {f.name for f in dataclasses.fields(cls)}
    out = {k: v for k, v in data.items() if k in names}
    for name, key in renamed.items():
        if key in data:
            out[name] = data[key]
    return out


@dataclass(frozen=True)
class LayerMeta:
    """One collected layer."""

    name: str
    channels: int
    #: Window width ``W_l`` (positions of the layer).
    width: int
    #: The layer's number in the model's Conv1d chain (0 = input); ``None`` when unknown.
    index: int | None = None
    #: Input frames per position of the layer (``None``: unknown).
    jump: float | None = None
    #: Where ``width`` came from: ``"cone"``, ``"estimated"``, ``"model"`` (declared by
    #: a model without a finite cone) or ``"user"``.
    width_source: str = "cone"

    @property
    def shape(self) -> tuple[int, int]:
        """``(C, W)`` of the layer's profiles."""
        return self.channels, self.width


@dataclass(frozen=True)
class GroupingMeta:
    """One collected grouping."""

    name: str
    #: ``"builtin"`` or ``"function"``.
    kind: str = "builtin"
    #: ``module.qualname`` of a user function.
    function: str | None = None
    #: Examples to which the grouping gave no label.
    unlabelled: int = 0


@dataclass(frozen=True)
class Options:
    """The method's options of the run."""

    target: str
    examples: str
    min_count: int
    naps: bool
    chunk_frames: int
    blank: int
    #: Class name of the sensitivity engine.
    engine: str
    #: Seconds per input frame.
    frame_seconds: float
    #: Feature bins of the input (``None`` until the first utterance is seen).
    n_features: int | None = None
    #: The :class:`~gradnap.defaults.FeatureConfig` as a dict.
    features: dict[str, Any] = field(default_factory=dict)
    #: When phoneme labels are read (``"centre"`` in files of gradnap 0.1).
    label_time: str = "centre"
    #: Number of folds ``K`` of the per-fold sums (docs/method.md §6); 1 for version-1 files.
    folds: int = 1
    #: What the fold hash is taken of: ``"utterance"`` (id) or ``"speaker"``.
    fold_key: str = "utterance"
    #: Which window columns the per-fold sums keep
    #: (:class:`gradnap.method.accumulators.FoldLayout`): the equal time bins outside the
    #: full-resolution span (6 in format-3 files, which have no span) ...
    fold_bins: int = 6
    #: ... and the fraction of the window at full resolution (0 in files before format 4).
    fold_span: float = 0.0


@dataclass(frozen=True)
class Clock:
    """Output frame ``f`` is centred on input frame ``f * stride + offset``."""

    stride: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True)
class ModelMeta:
    """Which model the run used."""

    class_name: str | None = None
    name: str | None = None
    config: dict[str, Any] | None = None
    parameters: int | None = None
    #: SHA-256 over the state dict (names, shapes, dtypes, bytes).
    weights_sha256: str | None = None
    #: Where the model came from (a model file), when known.
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["class"] = d.pop("class_name")
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelMeta:
        return cls(**_pick(cls, data, class_name="class"))


@dataclass(frozen=True)
class CorpusMeta:
    """Which data the sums cover."""

    root: str | None = None
    utterances: int | None = None
    with_phones: int | None = None
    reading_problems: int = 0
    #: Identifies the corpus (see ``docs/results.md``); ``None`` for merged corpora.
    hash: str | None = None
    #: The ``(i, n)`` shards the sums cover.
    shards: tuple[tuple[int, int], ...] = ((0, 1),)
    #: Processes under ``torch.distributed`` (1 otherwise).
    world_size: int = 1
    #: The corpora of a merge of results from different corpora.
    merged: tuple[CorpusMeta, ...] = ()

    def replace_shards(self, shards: Iterable[Iterable[int]]) -> CorpusMeta:
        """A copy covering ``shards``."""
        return dataclasses.replace(self, shards=tuple((int(i), int(n)) for i, n in shards))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "root": self.root,
            "utterances": self.utterances,
            "with_phones": self.with_phones,
            "reading_problems": self.reading_problems,
            "hash": self.hash,
            "shards": [list(s) for s in self.shards],
        }
        if self.world_size != 1:
            d["world_size"] = self.world_size
        if self.merged:
            d["merged"] = [c.to_json() for c in self.merged]
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CorpusMeta:
        d = _pick(cls, data)
        d["shards"] = tuple((int(i), int(n)) for i, n in (data.get("shards") or ()))
        d["merged"] = tuple(cls.from_json(c) for c in data.get("merged") or ())
        return cls(**d)


@dataclass(frozen=True)
class Progress:
    """How far a run got. A resumed run continues from these counters."""

    #: Items of the data passed (processed, skipped or outside the shard).
    items_done: int = 0
    #: Chained hash of the ids of the items passed (checks a resumed run's data).
    ids_hash: str = ""
    utterances: int = 0
    skipped: int = 0
    frames: int = 0
    examples: int = 0
    seconds: float = 0.0
    #: Per layer: examples whose alignment centre ``t*`` the tie rule chose among several
    #: positions of the maximal score (docs/method.md §1.3).
    ties: dict[str, int] = field(default_factory=dict)
    #: Per layer: of those, examples with a flat score (every searched position tied, e.g.
    #: no sensitivity in the cone): left unaligned at the cone's centre.
    flat: dict[str, int] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        """Examples per second of collection."""
        return self.examples / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def combine(cls, parts: Iterable[Progress], *, parallel: bool) -> Progress:
        """The counters of several runs added up. ``parallel``: the runs ran at the same
        time (ranks of one distributed run): seconds and items are the maximum, not the
        sum, and the items of each are the same data (``items_done`` keeps its meaning)."""
        parts = list(parts)
        seconds = [p.seconds for p in parts]
        return cls(
            items_done=max((p.items_done for p in parts), default=0) if parallel else 0,
            ids_hash="",
            utterances=sum(p.utterances for p in parts),
            skipped=sum(p.skipped for p in parts),
            frames=sum(p.frames for p in parts),
            examples=sum(p.examples for p in parts),
            seconds=(max(seconds, default=0.0) if parallel else sum(seconds)),
            ties=add_counts(*(p.ties for p in parts)),
            flat=add_counts(*(p.flat for p in parts)),
        )


def add_counts(*histograms: Mapping[_K, int]) -> dict[_K, int]:
    """Histograms ``{value: count}`` added up, sorted by value (listening offsets and
    tie-rule counts per layer of shards, ranks, merges)."""
    out: dict[_K, int] = {}
    for h in histograms:
        for k, v in h.items():
            out[k] = out.get(k, 0) + int(v)
    return dict(sorted(out.items()))


Purpose = Literal["resume", "merge"]


@dataclass(frozen=True)
class RunMeta:
    """Everything a result file says about its run (see the module docstring)."""

    layers: tuple[LayerMeta, ...]
    groupings: tuple[GroupingMeta, ...]
    options: Options
    model: ModelMeta = ModelMeta()
    corpus: CorpusMeta = CorpusMeta()
    progress: Progress = Progress()
    clock: Clock | None = None
    #: ``False`` in a checkpoint of an unfinished run.
    complete: bool = True
    #: Messages of skipped utterances (the first ``COLLECT.max_problems``).
    problems: tuple[str, ...] = ()
    #: Number of results merged into this one (1: a single run).
    merged_from: int = 1
    #: Where the model listens: examples per listening offset, the input layer's alignment
    #: centre minus the receptive-field centre of the output frame, in whole ms (empty
    #: without the input layer or a known geometry).
    listening_offsets: dict[int, int] = field(default_factory=dict)
    gradnap_version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = FORMAT_VERSION

    # --- lookups ------------------------------------------------------------------------

    @property
    def layer_names(self) -> list[str]:
        return [d.name for d in self.layers]

    @property
    def grouping_names(self) -> list[str]:
        return [g.name for g in self.groupings]

    def layer(self, name: str) -> LayerMeta:
        for d in self.layers:
            if d.name == name:
                return d
        raise GradnapError(
            f"unknown layer {name!r}; this result holds: {', '.join(self.layer_names)}"
        )

    def grouping(self, name: str) -> GroupingMeta:
        for g in self.groupings:
            if g.name == name:
                return g
        raise GradnapError(
            f"unknown grouping {name!r}; this result holds: {', '.join(self.grouping_names)}"
        )

    def replace(self, **changes: Any) -> RunMeta:
        """A copy with ``changes`` (:func:`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    # --- the one compatibility rule -----------------------------------------------------

    def mismatches(self, other: RunMeta, purpose: Purpose) -> list[str]:
        """What differs between this run and ``other`` that forbids ``purpose``, one
        readable item each (e.g. ``"target ('prob' vs 'logit')"``); empty when compatible.

        Both purposes need the same model weights, layers (names, channels, widths),
        groupings and the options that change the sums (target, examples, NAPs, blank,
        frame length, the number of folds and what they are hashed from). Resuming also needs the same chunking (it fixes the order of float
        additions, so a resumed run equals an uninterrupted one), the same corpus and the
        same shards. Merging needs disjoint data instead: that is checked on the shards by
        :func:`gradnap.method.result.merge_results`.
        """
        checks: dict[str, tuple[Any, Any]] = {
            "model weights": (self.model.weights_sha256, other.model.weights_sha256),
            "layers": (
                [(d.name, d.channels, d.width) for d in self.layers],
                [(d.name, d.channels, d.width) for d in other.layers],
            ),
            "groupings": (self.grouping_names, other.grouping_names),
        }
        for opt in (
            "target", "examples", "naps", "blank", "frame_seconds", "label_time", "folds", "fold_key",
            "fold_bins", "fold_span",
        ):  # fmt: skip
            checks[opt] = (getattr(self.options, opt), getattr(other.options, opt))
        if purpose == "resume":
            checks["chunk_frames"] = (self.options.chunk_frames, other.options.chunk_frames)
            checks["corpus"] = (self.corpus.hash, other.corpus.hash)
            checks["shards"] = (self.corpus.shards, other.corpus.shards)
        out = []
        for key, (a, b) in checks.items():
            if a != b:
                out.append(key if key in ("model weights", "corpus") else f"{key} ({a!r} vs {b!r})")
        return out

    # --- codec --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The JSON object written into result files (layout: ``docs/results.md``)."""
        options = dataclasses.asdict(self.options)
        if self.format_version < 4:  # older versions: written back unchanged
            options.pop("fold_span")
        if self.format_version < 3:
            options.pop("fold_bins")
        if self.format_version < 2:
            options.pop("folds")
            options.pop("fold_key")
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "gradnap_version": self.gradnap_version,
            "created": self.created,
            "complete": self.complete,
            "layers": [dataclasses.asdict(d) for d in self.layers],
            "groupings": [dataclasses.asdict(g) for g in self.groupings],
            "options": options,
            "clock": None if self.clock is None else dataclasses.asdict(self.clock),
            "model": self.model.to_json(),
            "corpus": self.corpus.to_json(),
            "progress": {  # the tie counts only when there are any (files of 0.1 have none)
                k: v
                for k, v in dataclasses.asdict(self.progress).items()
                if v or k not in ("ties", "flat")
            },
            "problems": list(self.problems),
            "merged_from": self.merged_from,
            "listening_offsets_ms": {str(k): v for k, v in sorted(self.listening_offsets.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunMeta:
        """Read the metadata of a result file of any format version up to
        :data:`FORMAT_VERSION`; :class:`GradnapError` says what is wrong."""
        if data.get("format") != FORMAT:
            raise GradnapError(f"not a gradnap result (format {data.get('format')!r})")
        version = int(data.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise GradnapError(
                f"result format version {version} is newer than this gradnap reads "
                f"({FORMAT_VERSION}); upgrade gradnap"
            )
        try:
            options = dict(data["options"])
            clock = data.get("clock")
            return cls(
                layers=tuple(LayerMeta(**_pick(LayerMeta, d)) for d in data["layers"]),
                groupings=tuple(GroupingMeta(**_pick(GroupingMeta, g)) for g in data["groupings"]),
                options=Options(**_pick(Options, options)),
                model=ModelMeta.from_json(data.get("model") or {}),
                corpus=CorpusMeta.from_json(data.get("corpus") or {}),
                progress=Progress(**_pick(Progress, data.get("progress") or {})),
                clock=None if not clock else Clock(**_pick(Clock, clock)),
                complete=bool(data.get("complete", False)),
                problems=tuple(str(p) for p in data.get("problems") or ()),
                merged_from=int(data.get("merged_from", 1)),
                listening_offsets={
                    int(k): int(v) for k, v in (data.get("listening_offsets_ms") or {}).items()
                },
                gradnap_version=str(data.get("gradnap_version", "unknown")),
                created=str(data.get("created", "")),
                format_version=version,
            )
        except KeyError as exc:
            raise GradnapError(f"metadata lacks {exc}") from None
        except TypeError as exc:
            raise GradnapError(f"metadata is malformed ({exc})") from None
