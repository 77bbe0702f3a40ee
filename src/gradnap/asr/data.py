"""Training data: cached features, held-out splits and length-bucketed batches.

* :func:`load_features` computes the log-mel spectrogram of every utterance once and
  keeps them in one cache file per corpus and feature setting (float16), so training
  epochs never redo the STFT. Changed or new audio files are recomputed; unreadable
  ones are skipped and counted.
* :func:`split_corpus` holds out whole voices (speakers) and a fraction of the
  *sentences* (by a hash of the text, so a sentence read by several voices is held out
  for all of them), split into a validation and a test half.
* :func:`make_batches` sorts utterances by length (with a seeded jitter per epoch),
  packs them into batches of at most ``max_frames`` padded input frames and shuffles the
  batch order; :func:`collate` pads a batch.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from gradnap.alphabet import encode_text
from gradnap.corpus.librispeech import Corpus, Utterance
from gradnap.defaults import CACHE_DIR, FEATURES, FeatureConfig
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_bytes
from gradnap.geometry import Geometry
from gradnap.progress import progress_bar

__all__ = [
    "Example",
    "Split",
    "Batch",
    "load_features",
    "feature_cache_path",
    "split_corpus",
    "make_batches",
    "collate",
]

log = logging.getLogger(__name__)

_CACHE_FORMAT = "gradnap-feature-cache-1"


@dataclass
class Example:
    """One utterance ready for training: features ``(F, T)`` and class targets ``(U,)``."""

    utterance: Utterance
    features: torch.Tensor  # (F, T), float16 or float32
    targets: torch.Tensor  # (U,) int64

    @property
    def id(self) -> str:
        return self.utterance.id

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[1])


def feature_cache_path(
    corpus_root: Path, features: FeatureConfig = FEATURES, cache_dir: Path | None = None
) -> Path:
    """Cache file of ``corpus_root``'s features: ``<cache_dir>/features/<name>-<hash>.pt``."""
    root = Path(corpus_root).resolve()
    key = hashlib.sha1(f"{root}|{sorted(asdict(features).items())}".encode()).hexdigest()[:12]
    base = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    return base / "features" / f"{root.name}-{key}.pt"


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def load_features(
    corpus: Corpus,
    features: FeatureConfig = FEATURES,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> list[Example]:
    """Examples of every readable utterance of ``corpus``, in corpus order.

    Features come from the cache file (:func:`feature_cache_path`) when the audio file
    is unchanged (size and modification time); the rest are computed and the cache is
    rewritten atomically. Unreadable audio is skipped and recorded in
    ``corpus.problems``. Features are stored as float16 ``(F, T)``.
    """
    path = feature_cache_path(corpus.root, features, cache_dir)
    cached: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}
    if use_cache and path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("format") == _CACHE_FORMAT:
                cached = {k: (tuple(v[0]), v[1]) for k, v in blob["items"].items()}
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            log.warning("%s: unreadable feature cache, rebuilding (%s)", path, exc)
    examples: list[Example] = []
    fresh: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}
    todo: list[Utterance] = []
    for utt in corpus.utterances:
        try:
            stamp = _stamp(utt.audio_path)
        except OSError:
            stamp = (-1, -1)
        hit = cached.get(str(utt.audio_path))
        if hit is not None and hit[0] == stamp:
            fresh[str(utt.audio_path)] = hit
        else:
            todo.append(utt)
    if todo:
        log.info("computing features of %d utterances (%d cached)", len(todo), len(fresh))
        with progress_bar(len(todo), "features", enabled=progress) as bar:
            for utt, mel in corpus.iter_features(features, todo):
                fresh[str(utt.audio_path)] = (_stamp(utt.audio_path), mel.to(torch.float16))
                bar.update(1)
        if use_cache:
            buf = io.BytesIO()
            items = {k: (list(v[0]), v[1]) for k, v in fresh.items()}
            torch.save({"format": _CACHE_FORMAT, "items": items}, buf)
            atomic_write_bytes(path, buf.getvalue())
            log.info("feature cache written: %s", path)
    for utt in corpus.utterances:
        hit = fresh.get(str(utt.audio_path))
        if hit is None:
            continue  # unreadable: already recorded by iter_features
        targets = torch.tensor(encode_text(utt.text), dtype=torch.int64)
        examples.append(Example(utt, hit[1], targets))
    return examples


def _text_fraction(text: str) -> float:
    """A stable number in [0, 1) from the text (the same sentence, the same number)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], 16) / 16**12


@dataclass
class Split:
    """Disjoint parts of a corpus for training and evaluation."""

    train: list = field(default_factory=list)
    #: Held-out sentences of the training voices, for the per-epoch validation.
    valid: list = field(default_factory=list)
    #: Other held-out sentences of the training voices, for the final test.
    test: list = field(default_factory=list)
    #: Every utterance of the held-out voices.
    holdout_voice: list = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"train {len(self.train)}, valid {len(self.valid)}, test {len(self.test)}, "
            f"held-out voice {len(self.holdout_voice)}"
        )


def split_corpus(
    items: Sequence,
    holdout_voices: Sequence[str] = (),
    heldout_fraction: float = 0.05,
    speakers: Sequence[str] | None = None,
) -> Split:
    """Split ``items`` (:class:`Example` or :class:`Utterance`) by voice and by sentence.

    Utterances of ``holdout_voices`` (speaker names) go to ``holdout_voice``. Of the
    rest, sentences whose text hash falls below ``heldout_fraction`` are held out: the
    lower half of that range to ``valid``, the upper half to ``test``. The split depends
    only on the texts, so it is the same for every run and every seed. ``speakers``
    (the corpus' speakers) lets an unknown held-out voice raise an error.
    """
    if not 0 <= heldout_fraction < 1:
        raise GradnapError(f"--heldout-fraction: {heldout_fraction} is not in [0, 1)")
    known = set(speakers) if speakers is not None else None
    for v in holdout_voices:
        if known is not None and v not in known:
            raise GradnapError(
                f"--holdout-voice: no speaker {v!r} in the corpus; speakers: {', '.join(sorted(known))}"
            )
    out = Split()
    hold = set(holdout_voices)
    for item in items:
        utt = item.utterance if isinstance(item, Example) else item
        if utt.speaker in hold:
            out.holdout_voice.append(item)
            continue
        f = _text_fraction(utt.text)
        if f < heldout_fraction / 2:
            out.valid.append(item)
        elif f < heldout_fraction:
            out.test.append(item)
        else:
            out.train.append(item)
    return out


def make_batches(
    lengths: Sequence[int],
    max_frames: int,
    max_batch: int | None = None,
    seed: int | None = None,
    jitter: float = 0.1,
) -> list[list[int]]:
    """Group indices into batches of similar length.

    ``lengths``: input frames per utterance. Indices are sorted by length (multiplied by
    a random factor in ``[1, 1 + jitter]`` when ``seed`` is given, so batches differ
    between epochs), packed while ``batch size * longest <= max_frames`` (and at most
    ``max_batch`` utterances), and the batch order is shuffled with ``seed``. Without a
    seed the order is deterministic and sorted (for evaluation).
    """
    n = len(lengths)
    if n == 0:
        return []
    lens = np.asarray(lengths, dtype=np.float64)
    rng = np.random.default_rng(seed) if seed is not None else None
    keys = lens * (1 + jitter * rng.random(n)) if rng is not None else lens
    order = np.argsort(keys, kind="stable")
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0
    for i in order.tolist():
        longest_if = max(longest, int(lengths[i]))
        full = max_batch is not None and len(cur) >= max_batch
        if cur and (longest_if * (len(cur) + 1) > max_frames or full):
            batches.append(cur)
            cur, longest_if = [], int(lengths[i])
        cur.append(i)
        longest = longest_if
    if cur:
        batches.append(cur)
    if rng is not None:
        perm = rng.permutation(len(batches))
        batches = [batches[j] for j in perm]
    return batches


@dataclass
class Batch:
    """A padded batch."""

    features: torch.Tensor  # (B, F, T) float32, zero-padded
    input_lengths: torch.Tensor  # (B,) int64 input frames
    output_lengths: torch.Tensor  # (B,) int64 output frames
    targets: torch.Tensor  # (sum U,) int64, concatenated
    target_lengths: torch.Tensor  # (B,) int64
    examples: list[Example]


def collate(examples: Sequence[Example], geometry: Geometry) -> Batch:
    """Pad ``examples`` to one batch; output lengths come from ``geometry``."""
    n_feat = int(examples[0].features.shape[0])
    t_max = max(e.num_frames for e in examples)
    x = torch.zeros(len(examples), n_feat, t_max)
    for i, e in enumerate(examples):
        x[i, :, : e.num_frames] = e.features.float()
    in_lens = torch.tensor([e.num_frames for e in examples], dtype=torch.int64)
    out_lens = torch.tensor(
        [geometry.output_length(e.num_frames) for e in examples], dtype=torch.int64
    )
    targets = torch.cat([e.targets for e in examples])
    t_lens = torch.tensor([len(e.targets) for e in examples], dtype=torch.int64)
    return Batch(x, in_lens, out_lens, targets, t_lens, list(examples))
