"""SpecAugment-style masking of training features (Park et al. 2019, without time warping).

Each utterance of a batch gets ``freq_masks`` bands of 0..``freq_mask_width`` mel bins
and ``time_masks`` spans of 0..``time_mask_width`` frames (at most
``time_mask_fraction`` of its length) set to zero, the mean of the z-normalised
features. Positions and widths come from a generator the training loop seeds with the
run seed and the step number, so a resumed run masks exactly like an uninterrupted one.
"""

from __future__ import annotations

import torch

from gradnap.defaults import TrainConfig

__all__ = ["spec_augment", "augments"]


def augments(cfg: TrainConfig) -> bool:
    """Whether ``cfg`` masks anything at all."""
    freq = cfg.freq_masks > 0 and cfg.freq_mask_width > 0
    time = cfg.time_masks > 0 and cfg.time_mask_width > 0 and cfg.time_mask_fraction > 0
    return freq or time


def _randint(high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[0, high]``."""
    return int(torch.randint(0, high + 1, (1,), generator=generator))


def spec_augment(
    features: torch.Tensor,  # (B, F, T)
    lengths: torch.Tensor,  # (B,) valid frames per utterance
    cfg: TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """A masked copy of ``features`` ``(B, F, T)``; padding beyond ``lengths`` is untouched."""
    out = features.clone()
    n_bins = features.shape[1]
    for b in range(features.shape[0]):
        n = int(lengths[b])
        for _ in range(cfg.freq_masks):
            width = _randint(min(cfg.freq_mask_width, n_bins), generator)
            start = _randint(n_bins - width, generator)
            out[b, start : start + width, :n] = 0.0
        max_width = min(cfg.time_mask_width, int(cfg.time_mask_fraction * n))
        for _ in range(cfg.time_masks):
            width = _randint(max_width, generator)
            start = _randint(n - width, generator)
            out[b, :, start : start + width] = 0.0
    return out
