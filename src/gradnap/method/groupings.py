"""Groupings: a label for every example (output frame) of an utterance (docs/method.md §1.5).

A grouping turns the examples of one utterance into group labels (strings) or ``None``
(the example belongs to no group of that grouping). Several groupings are collected in
one pass; each keeps its own accumulators.

Built-in groupings:

``grapheme``
    The predicted class, printed by :func:`gradnap.alphabet.class_label` (``"a"``..``"z"``,
    ``"_"`` for space, ``"'"``, ``"<b>"`` for blank when blank frames are examples).
``phoneme``
    The phone whose time span ``[start, end)`` contains the centre time of the output
    frame (the last phone's span is closed at its end). The centre time is the centre of
    the frame's receptive field: input frame ``Geometry.centre(frame, L)`` mapped to
    seconds by :func:`gradnap.features.frame_to_seconds`. Utterances without phone timings
    (``utterance.phones is None``) and frames whose centre lies outside the timings give
    ``None``.
``speaker``
    ``utterance.speaker`` (the voice, for synthesized corpora).
``all``
    One group ``"all"`` holding every example: the dataset-wide accumulator. It is always
    collected; the name is reserved.

Any callable ``f(utterance, frame, predicted_class) -> label | None`` is a grouping too
(``frame`` is the output frame index, ``predicted_class`` the class index; the label is
converted with ``str``). Its name is the function's ``__name__`` unless given as
``(name, f)`` or ``{name: f}``.

:func:`random_label_grouping` makes such a function that labels every example at random
(seeded, size-matched in expectation): the chance level of a comparison. Its labels are
the real grouping's, so a label can be in both; where a grouping is not named, the real
one is meant (:func:`is_random_label`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gradnap.alphabet import class_label
from gradnap.defaults import (
    FEATURES,
    LABEL_TIMES,
    METHOD,
    NUM_CLASSES,
    PHONE_SET,
    FeatureConfig,
)
from gradnap.errors import GradnapError
from gradnap.features import frame_to_seconds
from gradnap.geometry import Geometry

__all__ = [
    "FrameClock",
    "Grouping",
    "GraphemeGrouping",
    "PhonemeGrouping",
    "SpeakerGrouping",
    "AllGrouping",
    "FunctionGrouping",
    "BUILTIN_GROUPINGS",
    "ALL",
    "make_groupings",
    "is_random_label",
    "random_label_grouping",
]

log = logging.getLogger(__name__)

#: Name of the reserved dataset-wide grouping (one group holding every example).
ALL = "all"

LabelFunction = Callable[[Any, int, int], Any]


@dataclass(frozen=True)
class FrameClock:
    """Output frame -> time: input frame ``frame * stride + offset`` (its receptive-field
    centre), in seconds through :func:`gradnap.features.frame_to_seconds`."""

    stride: float
    offset: float
    features: FeatureConfig = FEATURES

    @classmethod
    def from_geometry(cls, geometry: Geometry, features: FeatureConfig = FEATURES) -> FrameClock:
        """The clock of the output layer of ``geometry`` (exact)."""
        out = geometry.num_layers
        return cls(float(geometry.jump(out)), float(geometry.centre(0, out)), features)

    def centre_seconds(self, frames: np.ndarray) -> np.ndarray:
        """Centre time in seconds of output frames ``frames`` ``(n,)`` -> ``(n,)`` float64."""
        centre = np.asarray(frames, dtype=np.float64) * self.stride + self.offset
        return np.asarray(frame_to_seconds(centre, self.features), dtype=np.float64)

    def to_json(self) -> dict:
        return {"stride": self.stride, "offset": self.offset}


class Grouping(Protocol):
    """Labels for the examples of one utterance."""

    #: Name of the grouping (keys the accumulators and the result file).
    name: str
    #: ``"builtin"`` or ``"function"`` (recorded in the result file).
    kind: str

    def labels(
        self, utterance: Any, frames: np.ndarray, classes: np.ndarray, clock: FrameClock
    ) -> list[str | None]:
        """``frames``, ``classes``: ``(n,)`` int64 output frames and predicted classes.
        Returns ``n`` labels (``None`` = no group)."""
        ...


class GraphemeGrouping:
    """The predicted grapheme (:func:`gradnap.alphabet.class_label`). A model with more
    classes than gradnap's alphabet labels the others by ``class_labels[k]`` (the model's
    ``labels``, e.g. the tokens ``<unk>``, ``1`` of a Hugging Face vocabulary), else by
    the class index."""

    name = "grapheme"
    kind = "builtin"
    #: Expected number of groups (accumulators are allocated for them up front).
    size_hint = NUM_CLASSES

    def __init__(self, class_labels: Sequence[str] | None = None) -> None:
        self.class_labels = tuple(class_labels or ())

    def labels(self, utterance, frames, classes, clock) -> list[str | None]:
        extra = self.class_labels
        return [
            class_label(k) if 0 <= k < NUM_CLASSES else (extra[k] if k < len(extra) else str(k))
            for k in classes.tolist()
        ]


@dataclass(frozen=True)
class InputEvidence:
    """Where the model listens, for each example of a chunk: the input layer's alignment.

    ``score[i, j]`` is ``sum_f |S_0[f, t]|`` at input frame ``t = start[i] + j`` within the
    example's cone (``-inf`` outside it and outside the utterance); ``peak`` is ``t*``.
    """

    #: ``(n,)`` input frame of the alignment centre ``t*``.
    peak: np.ndarray
    #: ``(n, We)`` input sensitivity mass per input frame (``-inf`` where not searched).
    score: np.ndarray
    #: ``(n,)`` input frame of column 0 of ``score``.
    start: np.ndarray


def phone_index(phones: Sequence[Any], t: np.ndarray) -> np.ndarray:
    """Index of the phone whose span ``[start, end)`` holds time ``t`` (seconds, any
    shape; the last span is closed at its end), ``-1`` where none does."""
    t = np.asarray(t, dtype=np.float64)
    if not phones:
        return np.full(t.shape, -1, dtype=np.int64)
    starts = np.array([p.start for p in phones], dtype=np.float64)
    ends = np.array([p.end for p in phones], dtype=np.float64)
    idx = np.searchsorted(starts, t, side="right") - 1  # last phone starting <= t
    safe = np.clip(idx, 0, len(phones) - 1)
    end = ends[safe]
    inside = (idx >= 0) & ((t < end) | ((safe == len(phones) - 1) & (t <= end)))
    return np.where(inside, idx, -1)


def parse_label_time(spec: str) -> tuple[str, float]:
    """``(definition, offset in ms)`` of a label-time specification: one of
    :data:`~gradnap.defaults.LABEL_TIMES`, or ``"centre+68"`` / ``"centre-20"`` (the
    receptive-field centre shifted by that many ms)."""
    if spec in LABEL_TIMES:
        return spec, 0.0
    m = re.fullmatch(r"centre([+-]\d+(?:\.\d+)?)", str(spec))
    if m is None:
        raise GradnapError(
            f"label time {spec!r}: choose from {', '.join(LABEL_TIMES)}, "
            "or centre+MS / centre-MS (a fixed offset in ms)"
        )
    return "centre", float(m.group(1))


class PhonemeGrouping:
    """The phone at the example's label time (docs/method.md §1.5).

    ``label_time``: where the model listens, from the input layer's alignment
    (:class:`InputEvidence`, mass ``m(t) = sum_f |S_0[f, t]|`` over the frame's cone):
    ``"median"`` (default): the mass-weighted median time; ``"peak"``: ``t*``, the time of
    the largest mass; ``"centroid"``: the mass-weighted mean time; ``"mass"``: the phone
    whose span holds the largest share of the mass. Or at a fixed place: ``"centre"``: the
    receptive-field centre of the output frame; ``"centre+68"``: 68 ms after it. An
    example whose mass is all zero gets no label from the mass-based definitions.
    """

    name = "phoneme"
    kind = "builtin"
    size_hint = len(PHONE_SET)

    def __init__(self, label_time: str = METHOD.label_time) -> None:
        self.label_time = label_time
        self._definition, self._offset_ms = parse_label_time(label_time)
        #: The collector passes :class:`InputEvidence` to :meth:`labels`.
        self.needs_evidence = self._definition != "centre"

    def labels(
        self, utterance, frames, classes, clock, evidence: InputEvidence | None = None
    ) -> list[str | None]:
        phones = getattr(utterance, "phones", None)
        if not phones:
            return [None] * len(frames)
        idx = label_spans(self.label_time, phones, frames, clock, evidence)
        return [phones[i].phone if i >= 0 else None for i in idx.tolist()]


def label_spans(
    label_time: str,
    phones: Sequence[Any],
    frames: np.ndarray,
    clock: FrameClock,
    evidence: InputEvidence | None = None,
) -> np.ndarray:
    """Index into ``phones`` of the phone at each example's label time, ``(n,)`` int
    (``-1``: no label); ``label_time`` as in :class:`PhonemeGrouping`."""
    how, offset_ms = parse_label_time(label_time)
    if how == "centre":
        return phone_index(phones, clock.centre_seconds(frames) + offset_ms / 1000.0)
    if evidence is None:
        raise GradnapError(f"label time {label_time!r} needs the input layer")
    if how == "peak":
        return phone_index(phones, frame_to_seconds(evidence.peak, clock.features))
    mass = np.where(np.isfinite(evidence.score), evidence.score, 0.0)  # (n, We)
    mass = np.maximum(mass, 0.0)
    pos = evidence.start[:, None] + np.arange(mass.shape[1])  # (n, We) input frames
    total = mass.sum(axis=1)
    if how == "mass":  # the phone with the largest sensitivity mass
        where = phone_index(phones, frame_to_seconds(pos, clock.features))  # (n, We)
        per_phone = np.zeros((len(frames), len(phones) + 1))
        rows = np.broadcast_to(np.arange(len(frames))[:, None], where.shape)
        np.add.at(per_phone, (rows, where + 1), mass)  # column 0: no phone
        per_phone[:, 0] = 0.0
        idx = np.where(per_phone.max(axis=1) > 0, per_phone.argmax(axis=1) - 1, -1)
    else:
        if how == "centroid":
            t = (mass * pos).sum(axis=1) / np.maximum(total, 1e-300)
        else:  # median: the first time with half the mass at or before it
            half = np.cumsum(mass, axis=1) >= 0.5 * total[:, None]
            t = pos[np.arange(len(frames)), half.argmax(axis=1)].astype(np.float64)
        idx = phone_index(phones, frame_to_seconds(t, clock.features))
    return np.where(total > 0, idx, -1)


class SpeakerGrouping:
    """The utterance's speaker (``utterance.speaker``)."""

    name = "speaker"
    kind = "builtin"

    def labels(self, utterance, frames, classes, clock) -> list[str | None]:
        speaker = getattr(utterance, "speaker", None)
        label = None if speaker is None else str(speaker)
        return [label] * len(frames)


class AllGrouping:
    """Every example in one group ``"all"`` (the dataset-wide accumulator)."""

    name = ALL
    kind = "builtin"
    size_hint = 1

    def labels(self, utterance, frames, classes, clock) -> list[str | None]:
        return [ALL] * len(frames)


class FunctionGrouping:
    """A user function ``f(utterance, frame, predicted_class) -> label | None``."""

    kind = "function"

    def __init__(self, name: str, function: LabelFunction) -> None:
        self.name = name
        self.function = function

    @property
    def qualname(self) -> str:
        f = self.function
        return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"

    @property
    def random_labels(self) -> bool:
        """The function is a :class:`RandomLabelGrouping` (labels independent of the data)."""
        return isinstance(self.function, RandomLabelGrouping)

    def labels(self, utterance, frames, classes, clock) -> list[str | None]:
        out: list[str | None] = []
        for tau, k in zip(frames.tolist(), classes.tolist(), strict=True):
            label = self.function(utterance, tau, k)
            out.append(None if label is None else str(label))
        return out


BUILTIN_GROUPINGS: dict[str, type] = {
    "grapheme": GraphemeGrouping,
    "phoneme": PhonemeGrouping,
    "speaker": SpeakerGrouping,
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise GradnapError(f"groups: grouping name {name!r} must be a non-empty string without '/'")
    if name == ALL:
        raise GradnapError(f"groups: the grouping name {ALL!r} is reserved (dataset-wide)")
    return name


def make_groupings(
    spec: str | LabelFunction | Grouping | Iterable | Mapping[str, LabelFunction],
    label_time: str = METHOD.label_time,
    class_labels: Sequence[str] | None = None,
) -> list[Grouping]:
    """Groupings from a specification.

    ``spec`` is a comma-separated string (``"grapheme,phoneme"``), a callable, a
    :class:`Grouping`, a ``{name: callable}`` mapping, or a sequence of these (and of
    ``(name, callable)`` pairs). Unknown names raise :class:`GradnapError` listing the
    built-in ones. The dataset-wide ``all`` grouping is not part of the list (the
    collector always adds it). ``label_time``: of the built-in ``phoneme`` grouping
    (:class:`PhonemeGrouping`); ``class_labels``: a label per model class for the built-in
    ``grapheme`` grouping's classes beyond gradnap's alphabet (:class:`GraphemeGrouping`).
    """
    items: list = []
    if isinstance(spec, str):
        items = [s.strip() for s in spec.split(",") if s.strip()]
    elif isinstance(spec, Mapping):
        items = [(k, v) for k, v in spec.items()]
    elif callable(spec) or hasattr(spec, "labels"):
        items = [spec]
    else:
        for item in spec:
            if isinstance(item, str):
                items.extend(s.strip() for s in item.split(",") if s.strip())
            else:
                items.append(item)
    out: list[Grouping] = []
    for item in items:
        if isinstance(item, str):
            if item not in BUILTIN_GROUPINGS:
                raise GradnapError(
                    f"groups: unknown grouping {item!r}; built-in: {', '.join(BUILTIN_GROUPINGS)}"
                    " (or pass a function f(utterance, frame, predicted_class) -> label)"
                )
            if item == "phoneme":
                out.append(PhonemeGrouping(label_time))
            elif item == "grapheme":
                out.append(GraphemeGrouping(class_labels))
            else:
                out.append(BUILTIN_GROUPINGS[item]())
        elif isinstance(item, Sequence) and len(item) == 2 and callable(item[1]):
            out.append(FunctionGrouping(_check_name(item[0]), item[1]))
        elif hasattr(item, "labels") and hasattr(item, "name"):
            _check_name(item.name)
            out.append(item)
        elif callable(item):
            out.append(FunctionGrouping(_check_name(getattr(item, "__name__", "function")), item))
        else:
            raise GradnapError(f"groups: cannot make a grouping of {item!r}")
    if not out:
        raise GradnapError("groups: no grouping given")
    names = [g.name for g in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise GradnapError(f"groups: grouping names must be unique; repeated: {', '.join(dup)}")
    return out


# --- random labels (the chance level) ---------------------------------------------------


@dataclass(frozen=True)
class RandomLabelGrouping:
    """A seeded user grouping that gives every example a random label, for the chance level.

    The paper compares against profiles of randomly permuted labels. Accumulators hold
    per-group sums, from which an example-level permutation cannot be recovered, so the
    chance level is *collected*: every example gets a label drawn from a distribution
    (e.g. the counts of the real grouping), independent of the example. The label is a
    hash of ``(seed, utterance id, frame)``, so it does not depend on the order in which
    utterances are processed: shards, workers and resumed runs agree. Labels are drawn
    independently, so group sizes match the distribution in expectation only.

    Call it as ``f(utterance, frame, predicted_class) -> label``; ``utterance`` is an
    object with an ``id`` attribute (or the id itself), ``frame`` the output frame. The
    label depends only on ``(seed, utterance id, frame)``; ``predicted_class`` is ignored.
    Picklable, so it can be sent to worker processes. Like a function, it has a
    ``__name__`` (:attr:`name`), which collectors use as the grouping's name.
    """

    #: The labels drawn from.
    choices: tuple[str, ...]
    #: Cumulative probabilities ``(len(choices),)``, last = 1.
    cumulative: tuple[float, ...]
    seed: int = 0
    name: str = "chance"

    @property
    def __name__(self) -> str:  # a grouping function's name
        return self.name

    def uniform(self, utterance, frame: int) -> float:
        """The example's uniform random number in ``[0, 1)``."""
        uid = getattr(utterance, "id", utterance)
        key = f"{self.seed}\x1f{uid}\x1f{int(frame)}".encode()
        h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
        return h / 2.0**64

    def __call__(self, utterance, frame: int, predicted_class: int | None = None) -> str:
        u = self.uniform(utterance, frame)
        i = int(np.searchsorted(self.cumulative, u, side="right"))
        return self.choices[min(i, len(self.choices) - 1)]


#: Grouping names that mark random labels (a chance level): ``chance_phoneme``, ``random``...
RANDOM_LABEL_PREFIXES = ("chance", "random")


def is_random_label(name: str, function: str | None = None) -> bool:
    """Whether a grouping gives random labels (a chance level) rather than a property of
    the examples: its recorded ``function`` (``GroupingMeta.function``) is a
    :class:`RandomLabelGrouping`, or its name starts with one of
    :data:`RANDOM_LABEL_PREFIXES` (the convention :func:`random_label_grouping`'s names
    and the figures follow)."""
    if function is not None and function.startswith(f"{__name__}.RandomLabelGrouping"):
        return True
    return name.lower().startswith(RANDOM_LABEL_PREFIXES)


def random_label_grouping(
    labels: Sequence[str] | Mapping[str, float], *, seed: int = 0, name: str = "chance"
) -> RandomLabelGrouping:
    """A grouping for the chance level: each example gets a random label, seeded.

    ``labels``: the labels to draw from, uniformly, or ``{label: weight}`` (e.g. the group
    counts of the real grouping, so that random groups have the same sizes in
    expectation). ``name`` is the grouping's name (its ``__name__``). Collect profiles
    with it next to the real groupings and cluster them with :func:`cluster_layers` to
    get the chance level of the silhouette scores.
    """
    if isinstance(labels, Mapping):
        names = tuple(str(k) for k in labels)
        weights = np.array([float(labels[k]) for k in labels], dtype=np.float64)
    else:
        names = tuple(str(k) for k in labels)
        weights = np.ones(len(names))
    if not names:
        raise GradnapError("random_label_grouping: no labels given")
    if len(set(names)) != len(names):
        raise GradnapError("random_label_grouping: labels are not unique")
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
        raise GradnapError("random_label_grouping: weights must be >= 0 with a positive sum")
    cum = np.cumsum(weights) / weights.sum()
    cum[-1] = 1.0
    return RandomLabelGrouping(names, tuple(float(c) for c in cum), int(seed), str(name))
