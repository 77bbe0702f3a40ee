"""Threads for torch work: one intra-op thread per worker, kept across calls.

Independent single-threaded operations on a few worker threads beat torch's own
intra-op parallelism on a small machine and stay fast when other processes compete for
the cores; the many small operations between them run best on one thread. The cone
engine and the collector both work this way (docs/engine.md).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

__all__ = ["WorkerPool", "one_thread"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_DONE = object()


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for the duration of the context (the setting is process-wide
    for the calling thread's operations and restored afterwards)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class WorkerPool:
    """Worker threads that each run torch with one intra-op thread, created on first use
    and kept for later calls. The setting must be made in every thread: a new thread
    starts with OpenMP's default thread count whatever the caller set, so without it
    every worker's operations would run on all cores at once (oversubscription).

    After a ``fork`` the child makes its own threads (the parent's do not exist there);
    a pickled pool carries no threads. The threads stop when the pool is collected,
    at exit, or on :meth:`close`.
    """

    def __init__(self, name: str = "gradnap") -> None:
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._size = 0
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def _executor(self, workers: int) -> ThreadPoolExecutor:
        if self._pid != os.getpid():  # forked: drop the parent's threads and lock
            self._reset()
        with self._lock:
            if self._pool is None or self._size < workers:
                self.close()
                pool = ThreadPoolExecutor(
                    workers, self.name, initializer=torch.set_num_threads, initargs=(1,)
                )
                self._finalizer = weakref.finalize(self, pool.shutdown, wait=False)
                self._pool, self._size = pool, workers
                log.debug("%s: %d worker threads started", self.name, workers)
            return self._pool

    def close(self) -> None:
        """Stop the worker threads (a later call starts them again)."""
        if self._finalizer is not None:
            self._finalizer()  # pool.shutdown(wait=False): idle threads exit
        self._pool, self._size, self._finalizer = None, 0, None

    def map(self, fn: Callable[[_T], Any], items: Sequence[_T], workers: int) -> None:
        """``fn(item)`` for every item on ``workers`` threads; a thread takes the next
        item when it is done with one. One worker or one item: in the calling thread.
        Every thread runs to the end, then the first error is raised."""
        if workers <= 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        todo = iter(items)
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    item = next(todo, _DONE)
                if item is _DONE:
                    return
                fn(item)  # type: ignore[arg-type]

        pool = self._executor(workers)
        helpers = [pool.submit(drain) for _ in range(min(workers, len(items)))]
        for h in helpers:
            h.exception()
        for h in helpers:
            h.result()

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name = state["name"]
        self._reset()
