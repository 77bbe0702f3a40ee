"""Profile formulas on accumulated sums: GradNAP, NAvAI, NAP, means and relative magnitudes
(docs/method.md §1.4, §1.9, §1.10).

Plain numpy on arrays from :mod:`gradnap.method.accumulators`.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "mean_profile",
    "dataset_mean",
    "gradnap_profile",
    "navai_profile",
    "nap_profile",
    "neuron_std",
    "relative_magnitude_db",
]

log = logging.getLogger(__name__)


def _per_position_mean(
    total: np.ndarray, count: np.ndarray, fill: np.ndarray | float
) -> np.ndarray:
    """``total`` ``(..., C, W)`` / ``count`` ``(..., W)``; ``fill`` where the count is 0."""
    cnt = count[..., None, :].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / cnt
    return np.where(cnt > 0, mean, fill)


def mean_profile(act_sum: np.ndarray, count: np.ndarray, fill=0.0) -> np.ndarray:
    """Per-position mean ``(C, W)`` of one group's sums (``fill`` where no data)."""
    return _per_position_mean(act_sum, count, fill)


def dataset_mean(act_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``M_l`` ``(C, W)``: mean over all examples of all groups, from per-group sums
    ``(G, C, W)`` and counts ``(G, W)`` (0 where no example has data)."""
    return _per_position_mean(act_sum.sum(axis=0), count.sum(axis=0), 0.0)


def gradnap_profile(
    act_sum: np.ndarray, grad_sum: np.ndarray, count: np.ndarray, mean: np.ndarray
) -> np.ndarray:
    """``GradNAP = (Ā - M) ⊙ |Ḡ| / max|Ḡ|`` ``(C, W)`` of one group (docs/method.md §1.4).

    ``act_sum``, ``grad_sum``: ``(C, W)``; ``count``: ``(W,)``; ``mean``: ``M`` ``(C, W)``.
    Where the group has no data, ``Ā = M`` and ``Ḡ = 0``; an all-zero ``Ḡ`` gives an
    all-zero profile (no division by zero).
    """
    a = _per_position_mean(act_sum, count, mean)
    g = np.abs(_per_position_mean(grad_sum, count, 0.0))
    peak = g.max() if g.size else 0.0
    mask = g / peak if peak > 0 else np.zeros_like(g)
    return (a - mean) * mask


def navai_profile(act_sum: np.ndarray, count: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """NAvAI ``(F, W)``: the group's mean aligned input window minus the dataset mean
    (input aligned at ``argmax_t sum_f |S_0[f, t]|``; no gradient mask)."""
    return _per_position_mean(act_sum, count, mean) - mean


def neuron_std(act_sum: np.ndarray, act_sqsum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-neuron standard deviation ``(C,)`` of the activations at all valid positions of
    all aligned windows, from summed ``act_sum`` ``(C, W)``, ``act_sqsum`` ``(C,)`` and
    ``count`` ``(W,)``."""
    n = float(count.sum())
    if n <= 0:
        return np.zeros(act_sum.shape[0])
    mu = act_sum.sum(axis=1) / n
    return np.sqrt(np.maximum(act_sqsum / n - mu * mu, 0.0))


def nap_profile(
    sorted_sum: np.ndarray,
    sorted_count: np.ndarray,
    sorted_mean: np.ndarray,
    std: np.ndarray,
) -> np.ndarray:
    """NAP ``(C, W)`` of one group: mean sorted activations minus the dataset mean of the
    sorted activations, divided per neuron by the neuron's standard deviation ``std``
    ``(C,)`` (neurons with ``std == 0`` give 0)."""
    a = _per_position_mean(sorted_sum, sorted_count, sorted_mean)
    scale = np.where(std > 0, std, np.inf)[:, None]
    return (a - sorted_mean) / scale


def relative_magnitude_db(
    magnitude_sum: np.ndarray, count: np.ndarray, total_sum: np.ndarray, total_count: np.ndarray
) -> np.ndarray:
    """A group's mean spectral magnitude against the dataset's, in dB: ``(F, T)``
    (docs/method.md §1.10).

    ``magnitude_sum`` ``(F, T)`` and ``count`` ``(T,)``: the group's sums; ``total_sum``,
    ``total_count``: those of every group of the grouping. ``20·log10(Ḡ_g / Ḡ)`` per bin
    and frame, 0 where the group (or the dataset) has no data or no magnitude there."""
    count = np.asarray(count, dtype=np.float64)
    total_count = np.asarray(total_count, dtype=np.float64)
    group = np.asarray(magnitude_sum, dtype=np.float64) / np.maximum(count, 1.0)
    total = np.asarray(total_sum, dtype=np.float64) / np.maximum(total_count, 1.0)
    ok = ((count > 0) & (total_count > 0))[None, :] & (group > 0) & (total > 0)
    out = np.zeros_like(group)
    np.divide(group, total, out=out, where=ok)
    np.log10(out, out=out, where=ok)
    return 20.0 * out
