"""One result however the work is split: torch threads, the collector's worker threads,
shards merged, and torch.distributed ranks (gloo) give the same sums and profiles, compared
by label, within float rounding (docs/method.md §5)."""

import socket

import pytest
import torch

from gradnap.method.compare import compare_results
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP
from helpers import items, parity, tiny_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.slow,
]

#: Relative to each array's (each profile's) maximum: float32 rounding of the result
#: file and of per-chunk partial sums, far below what one moved window changes.
TOL = 1e-4


def utterance(utt, frame, cls):
    """A grouping function: the utterance (label order differs between splits)."""
    return utt.id


def data():
    """Five utterances of seeded noise for the project's architecture (194-frame cones)."""
    gen = torch.Generator().manual_seed(7)
    return items([torch.randn(128, t, generator=gen) for t in (200, 260, 330, 420, 250)])


def run(threads: int = 1, workers: int | None = None, shard: str | None = None, **kw) -> Result:
    """A collection with ``threads`` torch threads (the cone engine's workers follow them)
    and ``workers`` collector threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = tiny_model(scale=1.6)  # ~4 % saturated outputs: flat scores, the tie rule
        nap = GradNAP(
            model,
            examples="all",
            min_count=1,
            groupings=("grapheme", parity, utterance),
            chunk_frames=48,
            threads=workers,
        )
        return nap.collect(data(), shard=shard, progress=False, **kw)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference():
    return run()


def assert_same(a: Result, b: Result) -> None:
    report = compare_results(a, b)
    assert not report.unmatched
    assert report.within(TOL), report.table()
    assert a.meta.progress.ties == b.meta.progress.ties
    assert a.meta.progress.flat == b.meta.progress.flat
    assert a.meta.listening_offsets == b.meta.listening_offsets


def test_the_reference_run_exercises_the_tie_rule(reference):
    p = reference.meta.progress
    assert p.utterances == 5 and p.examples > 500
    assert sum(p.flat.values()) > 0  # saturated outputs: no sensitivity at all


@pytest.mark.parametrize(("threads", "workers"), [(2, 1), (1, 2), (2, 2)])
def test_torch_threads_and_collector_workers(reference, threads, workers):
    assert_same(reference, run(threads, workers))


def test_shards_merged(reference):
    halves = [run(shard=f"{i}/2") for i in (1, 0)]
    merged = merge_results(halves)
    assert merged.labels("utterance") != reference.labels("utterance")
    assert_same(reference, merged)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    r = run(distributed=True)
    if rank == 0:
        r.save(out)


def test_two_gloo_ranks(reference, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ranks.npz"
    mp.spawn(_rank, args=(2, port, str(out)), nprocs=2, join=True)
    r = Result.load(out)
    assert r.meta.corpus.world_size == 2
    assert_same(reference, r)
