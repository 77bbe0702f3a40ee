from dataclasses import replace

import torch

from gradnap.asr.augment import augments, spec_augment
from gradnap.defaults import TRAIN

CFG = replace(
    TRAIN, freq_masks=2, freq_mask_width=5, time_masks=3, time_mask_width=7, time_mask_fraction=0.2
)


def _batch():
    x = torch.randn(4, 20, 60) + 10.0  # (B, F, T), never 0 by chance
    lengths = torch.tensor([60, 41, 17, 3])
    return x, lengths


def test_masks_zero_bands_and_spans_within_bounds():
    x, lengths = _batch()
    y = spec_augment(x, lengths, CFG, torch.Generator().manual_seed(0))
    assert x.min() > 0  # the input is not modified
    for b, n in enumerate(lengths.tolist()):
        zero = y[b, :, :n] == 0
        changed = y[b] != x[b]
        assert torch.equal(changed[:, :n], zero)  # masked values are exactly 0
        assert not changed[:, n:].any()  # padding is untouched
        full_rows = zero.all(dim=1)  # frequency bands
        full_cols = zero.all(dim=0)  # time spans
        assert int(full_rows.sum()) <= CFG.freq_masks * CFG.freq_mask_width
        max_span = min(CFG.time_mask_width, int(CFG.time_mask_fraction * n))
        assert int(full_cols.sum()) <= CFG.time_masks * max_span
        # every zero lies in a masked band or a masked span
        assert torch.equal(zero, full_rows[:, None] | full_cols[None, :])


def test_some_masking_happens_and_is_reproducible():
    x, lengths = _batch()
    a = spec_augment(x, lengths, CFG, torch.Generator().manual_seed(3))
    b = spec_augment(x, lengths, CFG, torch.Generator().manual_seed(3))
    c = spec_augment(x, lengths, CFG, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a == 0).any()


def test_off():
    x, lengths = _batch()
    off = replace(CFG, freq_masks=0, time_masks=0)
    assert not augments(off)
    assert augments(CFG)
    assert augments(replace(CFG, freq_masks=0))
    assert not augments(replace(off, time_masks=1, time_mask_fraction=0.0))
    assert torch.equal(spec_augment(x, lengths, off, torch.Generator().manual_seed(0)), x)
