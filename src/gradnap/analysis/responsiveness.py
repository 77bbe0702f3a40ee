"""Responsiveness of the neurons of a profile, and the most responsive ones (docs/method.md §1.6).

A profile is an array ``(C, W)`` (neurons × window positions).
"""

from __future__ import annotations

import numpy as np

from gradnap.defaults import OPTIMAL_INPUT
from gradnap.errors import GradnapError

__all__ = ["responsiveness", "top_neurons"]


def _as_profile(profile, name: str = "profile") -> np.ndarray:
    arr = np.asarray(profile, dtype=np.float64)
    if arr.ndim != 2:
        raise GradnapError(f"{name}: expected a 2-D profile (neurons, positions), got {arr.shape}")
    return arr


def responsiveness(profile) -> np.ndarray:
    """Responsiveness of each neuron (paper Eq. 1).

    ``profile``: GradNAP ``(C, W)``. Returns ``(C,)`` with
    ``r_n = sign(sum_i P[n, i]) * sum_i |P[n, i]|``. Non-finite entries (positions without
    data) count as 0.
    """
    p = np.nan_to_num(_as_profile(profile), nan=0.0, posinf=0.0, neginf=0.0)  # (C, W)
    return np.sign(p.sum(axis=1)) * np.abs(p).sum(axis=1)


def top_neurons(profile, k: int = OPTIMAL_INPUT.top_k) -> np.ndarray:
    """Indices ``(min(k, C),)`` of the ``k`` most responsive neurons by ``|r_n|``.

    Most responsive first; ties go to the lower index.
    """
    if k < 1:
        raise GradnapError(f"top_neurons: k must be >= 1, got {k}")
    r = responsiveness(profile)  # (C,)
    order = np.argsort(-np.abs(r), kind="stable")
    return order[:k].astype(np.int64)
