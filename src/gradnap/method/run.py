"""The run loop: a whole corpus through the collector, with shards, checkpoints, resume
and ``torch.distributed`` (docs/method.md §5).

>>> nap = GradNAP(model, layers=None, target="prob", groupings=("grapheme", "phoneme"))
>>> result = nap.collect(corpus, progress=True)          # a Corpus, a path or pairs
>>> result.profile("layer3", "a")                         # (C, W) GradNAP of group "a"
>>> result.axes("input").frequencies_hz                   # mel-bin centres, Hz

One pass streams every utterance through :meth:`Collector.add` chunk by chunk; only the
accumulators are kept, so memory does not grow with the corpus. A run can checkpoint and
resume (the same result as an uninterrupted run), process one shard of the corpus, and
all-reduce its accumulators under ``torchrun`` (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradnap.defaults import COLLECT
from gradnap.errors import GradnapError
from gradnap.fileio import check_writable, remove_stale_temporaries
from gradnap.method.collector import Collector, UtteranceError, item_id
from gradnap.method.metadata import CorpusMeta, Progress, add_counts
from gradnap.method.result import Result
from gradnap.progress import progress_bar

__all__ = ["GradNAP", "collect", "corpus_identity", "parse_shard"]

log = logging.getLogger(__name__)

#: Keyword arguments of :meth:`GradNAP.collect` (the rest of :func:`collect`'s go to GradNAP).
RUN_OPTIONS = (
    "progress",
    "checkpoint",
    "checkpoint_every",
    "checkpoint_seconds",
    "resume",
    "shard",
    "distributed",
    "limit",
)


def corpus_identity(corpus: Any) -> CorpusMeta:
    """Root, utterance count and a hash of (id, text, audio size, has timings) per utterance."""
    h = hashlib.sha256()
    for utt in sorted(corpus.utterances, key=lambda u: u.id):
        try:
            size = Path(utt.audio_path).stat().st_size
        except OSError:
            size = -1
        h.update(f"{utt.id}\t{utt.text}\t{size}\t{utt.phones is not None}\n".encode())
    return CorpusMeta(
        root=str(Path(corpus.root).resolve()),
        utterances=len(corpus.utterances),
        with_phones=sum(u.phones is not None for u in corpus.utterances),
        reading_problems=len(getattr(corpus, "problems", [])),
        hash=h.hexdigest(),
    )


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


def _shard_size(data: Any, shard: tuple[int, int], at_most: int | None) -> int | None:
    """Items of ``data`` in ``shard``, at most ``at_most``; ``None`` when ``data`` has no
    length (the progress bar's total)."""
    n = len(data.utterances) if _is_corpus(data) else getattr(data, "__len__", lambda: None)()
    if n is None:
        return None
    total = len(range(shard[0], n, shard[1]))
    return total if at_most is None else min(total, at_most)


def _reading_notes(corpus: Any, groupings: list[Any]) -> tuple[list[str], list[str]]:
    """``(skipped, warnings)``: the messages of the utterances the corpus reader skipped,
    and of other problems of the corpus (its kept utterances' warnings, missing phone
    timings for the phoneme grouping). Raises :class:`GradnapError` when the phoneme
    grouping is the only one asked for and no utterance has phone timings."""
    from gradnap.method.groupings import AllGrouping, PhonemeGrouping

    warnings = list(getattr(corpus, "warnings", []))
    if any(isinstance(g, PhonemeGrouping) for g in groupings):
        n = len(corpus.utterances)
        timed = sum(u.phones is not None for u in corpus.utterances)
        if timed == 0 and n:
            msg = (
                f"{corpus.root}: no utterance has phone timings (<speaker>-<chapter>.phones.tsv), "
                "which the phoneme grouping needs; add them with "
                f"'gradnap corpus align {corpus.root}' (docs/alignment.md)"
            )
            if all(isinstance(g, PhonemeGrouping | AllGrouping) for g in groupings):
                raise GradnapError(msg)
            warnings.append(msg + "; the phoneme grouping stays empty")
            log.warning("%s", warnings[-1])
        elif timed < n:
            warnings.append(
                f"{corpus.root}: {n - timed} of {n} utterances have no phone timings; "
                "their examples get no phoneme label"
            )
            log.warning("%s", warnings[-1])
    return list(getattr(corpus, "problems", [])), warnings


def _chain(digest: str, item: str) -> str:
    return hashlib.sha256(f"{digest}\n{item}".encode()).hexdigest()


def _is_corpus(data: Any) -> bool:
    return hasattr(data, "utterances") and hasattr(data, "features") and hasattr(data, "root")


Loader = Callable[[], Any]


class GradNAP(Collector):
    """Collects GradNAP accumulators for a model over a corpus (docs/method.md §1).

    The constructor takes the method's options (:class:`~gradnap.method.collector.Collector`);
    :meth:`collect` runs them over a corpus.
    """

    def reset(self) -> None:
        super().reset()
        self._corpus = CorpusMeta()
        #: This process's rank under torch.distributed (0 otherwise), set by :meth:`collect`.
        self.rank = 0
        #: The checkpoint file :meth:`collect` used (per rank under torch.distributed).
        self.checkpoint_file: Path | None = None
        #: Items done at the last checkpoint written (or resumed from); ``None``: none yet.
        self.checkpointed_items: int | None = None
        self._reduced = False  # the accumulators hold every rank's sums (all-reduced)
        self._checkpoint_given: str | Path | None = None  # before the per-rank suffix

    def _items(
        self, data: Any, start: int, shard: tuple[int, int]
    ) -> Iterator[tuple[int, Any, Loader | None]]:
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
                        return data.features(utt, self.features)
                    except GradnapError as exc:
                        raise UtteranceError(str(exc)) from exc

                yield i, utt, load
            return
        for i, item in enumerate(data):
            loader: Loader
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
        its last utterance (same result as an uninterrupted run; without a checkpoint
        file a warning says that the run starts from the beginning). A checkpoint that
        cannot be written raises :class:`GradnapError` before any work, or, when it
        fails later (a full disk), stops the run saying which checkpoint is kept; the
        temporary files of a killed checkpoint write are removed. ``shard``: ``"i/n"``
        processes items ``i, i+n, i+2n, ...``. ``distributed``: ``None`` = use
        ``torch.distributed`` when it is initialised or ``WORLD_SIZE > 1`` (torchrun);
        ranks split the shard and all-reduce their accumulators at the end; every rank
        returns the full result. ``limit``: stop after this many utterances.
        """
        if isinstance(data, str | Path):
            from gradnap.corpus import read_corpus

            data = read_corpus(data)
        user_shard = parse_shard(shard)
        dist, own_group = _distributed(distributed)
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
        eff_shard = (user_shard[0] + user_shard[1] * rank, user_shard[1] * world)
        self.reset()
        self.rank = rank
        self._checkpoint_given = checkpoint
        if checkpoint is not None and world > 1:
            checkpoint = Path(f"{checkpoint}.rank{rank}-of-{world}")
        self.checkpoint_file = None if checkpoint is None else Path(checkpoint)
        if self.checkpoint_file is not None:
            check_writable(self.checkpoint_file, "checkpoint")  # before any work
            remove_stale_temporaries(self.checkpoint_file)
        corpus = corpus_identity(data) if _is_corpus(data) else CorpusMeta()
        self._corpus = dataclasses.replace(corpus, shards=(eff_shard,))
        notes = _reading_notes(data, self.groupings) if _is_corpus(data) else ([], [])
        if resume and self.checkpoint_file is not None:
            if self.checkpoint_file.is_file():
                self._resume(Result.load(self.checkpoint_file), self.checkpoint_file)
            else:
                log.warning("resume: no checkpoint %s; starting from the beginning", checkpoint)
        elif resume:
            log.warning("resume: no checkpoint file given; starting from the beginning")
        start_item = self.progress.items_done
        reading_skipped, reading_warnings = notes  # once per result: in shard 0
        if start_item == 0 and eff_shard[0] == 0:  # (a resumed run has them already)
            self.count(skipped=self.progress.skipped + len(reading_skipped))
            self.problems = (reading_skipped + self.problems)[: COLLECT.max_problems]
        resumed = len(range(eff_shard[0], start_item, eff_shard[1]))  # items done before
        bar = progress_bar(
            _shard_size(data, eff_shard, None if limit is None else resumed + limit),
            "collect" if world == 1 else f"collect rank {rank}",
            enabled=progress,
            initial=resumed,
        )
        t0 = time.perf_counter()
        seconds0 = self.progress.seconds
        last_ckpt_t, since_ckpt = t0, 0
        done_here = 0
        replay = ""  # hash of the ids of the items a resumed run skips
        try:
            for i, utt, load in self._items(data, start_item, eff_shard):
                uid = item_id(utt, i)
                if i < start_item:
                    replay = _chain(replay, uid)
                    if i == start_item - 1 and replay != self.progress.ids_hash:
                        raise GradnapError(
                            f"resume: items 0..{i} of the data differ from the checkpoint's; "
                            "start again without resuming"
                        )
                    continue
                self.count(ids_hash=_chain(self.progress.ids_hash, uid))
                if load is not None:
                    if limit is not None and done_here >= limit:
                        break
                    examples = 0
                    try:
                        examples = self.add(utt, load())
                    except UtteranceError as exc:  # also raised by audio loading
                        self.skip(_naming_file(str(exc), utt, uid))
                        bar.note(f"skipped {self.progress.skipped}")
                    done_here += 1
                    since_ckpt += 1
                    bar.update(1, frames=examples)
                self.count(items_done=i + 1)
                now = time.perf_counter()
                if (
                    checkpoint is not None
                    and since_ckpt
                    and (since_ckpt >= checkpoint_every or now - last_ckpt_t >= checkpoint_seconds)
                ):
                    self.count(seconds=seconds0 + now - t0)
                    try:
                        self._checkpoint()
                    except GradnapError as exc:  # a full disk: stop now, not at the end
                        raise GradnapError(f"{exc}; {self._kept()}") from exc
                    last_ckpt_t, since_ckpt = now, 0
        finally:
            bar.close()
            self.count(seconds=seconds0 + time.perf_counter() - t0)
        if start_item and self.progress.items_done < start_item:
            raise GradnapError(
                f"resume: the data has fewer items than the checkpoint's {start_item}; "
                "start again without resuming"
            )
        if eff_shard[0] == 0:  # warnings (utterances kept) after the skipped ones
            new = [m for m in reading_warnings if m not in self.problems]
            self.problems = (self.problems + new)[: COLLECT.max_problems]
        if dist is not None:
            try:
                self._all_reduce(dist, user_shard)
            finally:
                if own_group:
                    dist.destroy_process_group()
        if self.sums is None:
            raise GradnapError(_nothing_collected(self.progress.skipped, self.problems))
        result = self.result(complete=True)
        p = self.progress
        log.info(
            "collected %d examples from %d utterances (%d skipped) at %.1f frames/s",
            p.examples,
            p.utterances,
            p.skipped,
            p.frames_per_second,
        )
        return result

    def result(self, complete: bool = True, corpus: CorpusMeta | None = None) -> Result:
        """The accumulators and metadata collected so far as a :class:`Result`."""
        if corpus is None:
            corpus = self._corpus
            if corpus.root is None and complete:  # an iterable: identify it by its ids
                corpus = dataclasses.replace(
                    corpus,
                    utterances=self.progress.items_done,
                    hash=self.progress.ids_hash or None,
                )
        return super().result(complete, corpus)

    def _resume(self, checkpoint: Result, path: str | Path) -> None:
        """Continue from a checkpoint of the same run (:meth:`RunMeta.mismatches`)."""
        diff = self.planned_meta(checkpoint.meta, self._corpus).mismatches(
            checkpoint.meta, "resume"
        )
        if diff:
            raise GradnapError(
                f"{path}: checkpoint does not match this run ({', '.join(diff)} "
                "differ); delete it or run without --resume"
            )
        self.restore(checkpoint)
        self.checkpointed_items = self.progress.items_done
        log.info("resuming %s after %d items", path, self.progress.items_done)

    # --- checkpoints ------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Write the accumulators so far to :attr:`checkpoint_file` (nothing before the
        first utterance that could be used); :class:`GradnapError` when it fails."""
        path = self.checkpoint_file
        if path is None or self.sums is None:
            return
        self.result(complete=False).save(path)
        self.checkpointed_items = self.progress.items_done
        log.debug("checkpoint %s after %d items", path, self.checkpointed_items)

    def _kept(self) -> str:
        """Where the collection is kept after a failed write, and how to go on."""
        path = self.checkpoint_file
        if path is None or self.checkpointed_items is None or not path.is_file():
            return "no checkpoint was written, nothing is kept"
        return (
            f"the checkpoint {path} after {self.checkpointed_items} items is kept: make room "
            f"and run the same command again with --resume (--checkpoint "
            f"{self._checkpoint_given})"
        )

    def keep_collected(self) -> str:
        """After the result could not be written: save what was collected as a checkpoint,
        so that a resumed run finishes without collecting again. Returns a sentence for
        the user saying what is kept and how to go on."""
        if self.checkpoint_file is not None and not self._reduced and self.sums is not None:
            try:
                self._checkpoint()
            except GradnapError as exc:
                log.warning("%s", exc)
        return self._kept()

    # --- torch.distributed ------------------------------------------------------------

    def _all_reduce(self, dist: Any, user_shard: tuple[int, int]) -> None:
        world = dist.get_world_size()
        layouts: list[Any] = [None] * world
        layout = None if self.sums is None else self.result(complete=False).meta
        dist.all_gather_object(layouts, layout)
        ref = next((m for m in layouts if m is not None), None)
        if ref is None:
            raise GradnapError("nothing collected on any rank")
        if self.sums is None:
            self.adopt_layout(ref)
        assert self.sums is not None
        labels: list[Any] = [None] * world
        dist.all_gather_object(labels, {g.name: (g.labels, g.unlabelled) for g in self.sums})
        for sums in self.sums:
            union = list(
                dict.fromkeys(lab for per_rank in labels for lab in per_rank[sums.name][0])
            )
            sums.reorder(union)
            g = len(union)
            sums.unlabelled = sum(per_rank[sums.name][1] for per_rank in labels)
            dist.all_reduce(torch.from_numpy(sums.examples[:g]))
            for layer_sums in sums.layers.values():
                for a in layer_sums.fields().values():
                    t = torch.from_numpy(a[:g])  # a view: reduced in place
                    dist.all_reduce(t)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (self.progress, self.problems, self.listening))
        self.progress = Progress.combine((p for p, _, _ in gathered), parallel=True)
        self.problems = [m for _, probs, _ in gathered for m in probs][: COLLECT.max_problems]
        self.listening = add_counts(*(h for _, _, h in gathered))
        self._corpus = dataclasses.replace(self._corpus, shards=(user_shard,), world_size=world)
        self._reduced = True


def _naming_file(message: str, utt: Any, uid: str) -> str:
    """``message`` about utterance ``uid``, starting with its audio file (when it has one)."""
    path = getattr(utt, "audio_path", None)
    if path is None or str(path) in message:
        return message
    return f"{path}: {message.removeprefix(f'{uid}: ')}"


def _nothing_collected(skipped: int, problems: list[str]) -> str:
    if not skipped:
        return "nothing collected: no utterance was given"
    first = f" (the first: {problems[0]})" if problems else ""
    return f"nothing collected: all {skipped} utterances were skipped{first}"


def _distributed(flag: bool | None) -> tuple[Any, bool]:
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


def collect(model: nn.Module, data: Any, **kwargs: Any) -> Result:
    """One-call form: ``GradNAP(model, **options).collect(data, **run_options)``."""
    run = {k: kwargs.pop(k) for k in list(kwargs) if k in RUN_OPTIONS}
    return GradNAP(model, **kwargs).collect(data, **run)
