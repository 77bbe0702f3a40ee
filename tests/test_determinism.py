"""One result however the work is split (docs/method.md §5): torch threads and the
collector's worker threads give the same bits; shards merged and torch.distributed ranks
(gloo) the same sums and profiles, compared by label, within float rounding. From audio
files on: the features are part of what must not depend on the threads."""

import socket

import numpy as np
import pytest
import torch

from gradnap.method.compare import compare_results
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP
from helpers import parity, tiny_model, write_corpus

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Five utterances of seeded noise, 2-4 s (cones of 194 input frames fit)."""
    root = tmp_path_factory.mktemp("determinism") / "corpus"
    return write_corpus(root, 5, (2.0, 2.6, 3.3, 4.2, 2.5), broken=False, phones=False)


def run(corpus, threads=1, workers=None, shard=None, **kw) -> Result:
    """A collection with ``threads`` torch threads (the cone engine's workers follow them)
    and ``workers`` collector threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = tiny_model(scale=1.6)  # some saturated outputs: flat scores, the tie rule
        nap = GradNAP(
            model,
            examples="all",
            min_count=1,
            groupings=("grapheme", parity, utterance),
            chunk_frames=48,
            threads=workers,
        )
        return nap.collect(corpus, shard=shard, progress=False, **kw)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(corpus):
    return run(corpus)


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
def test_torch_threads_and_collector_workers_give_the_same_bits(
    corpus, reference, threads, workers
):
    other = run(corpus, threads, workers)
    assert set(other.arrays) == set(reference.arrays)
    for key, value in reference.arrays.items():
        assert np.array_equal(value, other.arrays[key]), key
    assert other.meta.progress.ties == reference.meta.progress.ties
    assert other.meta.listening_offsets == reference.meta.listening_offsets


def test_shards_merged(corpus, reference):
    merged = merge_results([run(corpus, shard=f"{i}/2") for i in (1, 0)])
    assert merged.labels("utterance") != reference.labels("utterance")
    assert_same(reference, merged)


def _rank(rank: int, world: int, port: int, corpus: str, out: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    r = run(corpus, distributed=True)
    if rank == 0:
        r.save(out)


def test_two_gloo_ranks(corpus, reference, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ranks.npz"
    mp.spawn(_rank, args=(2, port, str(corpus), str(out)), nprocs=2, join=True)
    r = Result.load(out)
    assert r.meta.corpus.world_size == 2
    # a result file holds float16 per-fold means: compare with the reference's file
    assert_same(Result.load(reference.save(tmp_path / "reference.npz")), r)
