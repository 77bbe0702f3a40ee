"""Where the model listens (docs/method.md §1.5): a summary of the listening offsets, the
input layer's alignment centre ``t*`` minus the receptive-field centre of the output
frame, from the histogram a result holds (``Result.meta.listening_offsets``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradnap.errors import GradnapError

__all__ = ["ListeningSummary", "listening_summary"]


@dataclass(frozen=True)
class ListeningSummary:
    """Quartiles of the listening offset (ms) over ``examples`` examples."""

    median: float
    q25: float
    q75: float
    examples: int

    def describe(self) -> str:
        return (
            f"median {self.median:+.0f} ms (IQR {self.q25:+.0f} to {self.q75:+.0f} ms, "
            f"{self.examples} examples)"
        )


def listening_summary(offsets: Mapping[int, int]) -> ListeningSummary:
    """Median and quartiles (the lower value at a tie) of ``{offset ms: examples}``."""
    if not offsets or sum(offsets.values()) <= 0:
        raise GradnapError("no listening offsets: the result was collected without the input layer")
    values = np.array(sorted(offsets), dtype=np.float64)
    counts = np.array([offsets[int(v)] for v in values], dtype=np.float64)
    cum = np.cumsum(counts) / counts.sum()

    def quantile(q: float) -> float:
        return float(values[int(np.searchsorted(cum, q))])

    return ListeningSummary(quantile(0.5), quantile(0.25), quantile(0.75), int(counts.sum()))
