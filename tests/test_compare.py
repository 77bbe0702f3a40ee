"""Comparing two results by label: gradnap.method.compare and ``gradnap compare``."""

import numpy as np
import pytest
import torch

from gradnap.cli import build_parser, main
from gradnap.defaults import COLLECT
from gradnap.errors import GradnapError
from gradnap.method.compare import compare_results
from gradnap.method.result import Result, merge_results
from gradnap.method.run import GradNAP
from helpers import LAYERS, FrameEngine, gradnap_of, parity, small_data, small_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel"),
    pytest.mark.usefixtures("one_thread"),
]


def utterance(utt, frame, cls):
    """A grouping function: the utterance (labels appear in the order of the data)."""
    return utt.id


GROUPINGS = ("grapheme", parity, utterance)


@pytest.fixture(scope="module")
def runs():
    """The same data collected whole and as two merged shards (other label order)."""
    torch.set_num_threads(1)
    model = small_model()
    eng = FrameEngine(model, LAYERS)
    whole = gradnap_of(model, eng, min_count=3, groupings=GROUPINGS).collect(
        small_data(), progress=False
    )
    halves = [
        gradnap_of(model, eng, min_count=3, groupings=GROUPINGS).collect(
            small_data(), shard=f"{i}/2", progress=False
        )
        for i in (1, 0)
    ]
    return whole, merge_results(halves)


def perturbed(r: Result, key: str, label: str, fraction: float) -> Result:
    """A copy of ``r`` with group ``label`` of array ``key`` raised by ``fraction`` of the
    array's largest absolute value at one element."""
    arrays = {k: v.copy() for k, v in r.arrays.items()}
    grouping = key.split("/")[1]
    i = r.labels(grouping).index(label)
    a = arrays[key]
    a[i].flat[3] += fraction * np.abs(a).max()
    return Result(r.meta, arrays)


def test_runs_split_differently_are_the_same_by_label(runs):
    whole, merged = runs
    assert whole.labels("utterance") != merged.labels("utterance")  # rows differ ...
    report = compare_results(whole, merged)
    assert report.within(1e-6) and not report.unmatched  # ... labels match
    assert report.worst is not None and report.worst.relative < 1e-6
    rows = report.per_layer()
    assert [(g, layer) for g, layer, _, _ in rows if g == "parity"] == [
        ("parity", layer) for layer in LAYERS
    ]
    assert all(prof is not None for g, _, _, prof in rows if g != "all")


def test_the_largest_difference_is_found_by_layer_grouping_and_label(runs):
    whole, merged = runs
    label = merged.labels("parity")[-1]
    other = perturbed(merged, "sums/parity/1/grad_sum", label, 0.01)
    report = compare_results(whole, other)
    worst = report.worst
    assert (worst.grouping, worst.layer, worst.label) == ("parity", "1", label)
    (sums,) = [d for d in report.differences if d.relative > 1e-6 and d.what != "gradnap"]
    assert (sums.grouping, sums.layer, sums.what, sums.label) == ("parity", "1", "grad_sum", label)
    assert sums.relative == pytest.approx(0.01, rel=1e-3)  # of the array's maximum
    assert not report.within(1e-3) and report.within(0.02)
    # the other layers and groupings are untouched; the GradNAP of that group moved
    for grouping, layer, sums, _ in report.per_layer():
        if (grouping, layer) != ("parity", "1"):
            assert sums.relative < 1e-6, (grouping, layer)
    prof = next(p for g, la, _, p in report.per_layer() if (g, la) == ("parity", "1"))
    assert prof is not None and prof.label == label and prof.relative > 1e-3
    assert "grad_sum '" + label in report.table()


def test_labels_only_one_result_has_are_reported(runs):
    whole, _ = runs
    model = small_model()
    fewer = gradnap_of(model, FrameEngine(model, LAYERS), min_count=3, groupings=GROUPINGS)
    report = compare_results(whole, fewer.collect(small_data(4), progress=False))
    only_a, only_b = report.unmatched["utterance"]
    assert only_a and not only_b
    assert not report.within(1.0)  # however loose the tolerance
    assert "labels only in A" in report.table()


def test_results_of_other_layers_cannot_be_compared(runs):
    whole, _ = runs
    model = small_model()
    other = GradNAP(model, ["input", "1"], engine=FrameEngine(model, ["input", "1"]), blank=4)
    other = other.collect(small_data(4), progress=False)
    with pytest.raises(GradnapError, match="different layers"):
        compare_results(whole, other)


def test_cli_exit_status_follows_the_tolerance(runs, tmp_path, capsys):
    whole, merged = runs
    a, b = whole.save(tmp_path / "a.npz"), merged.save(tmp_path / "b.npz")
    label = merged.labels("grapheme")[0]
    c = perturbed(merged, "sums/grapheme/input/act_sum", label, 0.01).save(tmp_path / "c.npz")
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "grapheme" in out and "same within --tol" in out
    assert main(["compare", str(a), str(c)]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT" in out and f"act_sum '{label}'" in out
    assert main(["compare", str(a), str(c), "--tol", "0.02"]) == 0
    assert main(["compare", str(a), str(tmp_path / "missing.npz")]) == 2
    help_text = build_parser()._subparsers._group_actions[0].choices["compare"].format_help()
    assert "--tol" in help_text and f"default: {COLLECT.compare_tol:g}" in help_text
