"""The paper's report of a result: its figures, tables and provenance on one page.

The figure helpers (a result in, a figure out) are shared with ``gradnap plot``: they pick
the profiles from the result, run the analyses of :mod:`gradnap.analysis` that a figure
shows and hand both to :mod:`gradnap.figures`. :func:`build_report` lays them out with
the silhouette tables on a :class:`~gradnap.report.page.Report`, led by the comparison
that can be trusted: the cross-validated cluster score of graphemes and phonemes per
layer (docs/method.md §6), with its uncertainty and the sentences it supports.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from gradnap.defaults import CLUSTER_PERCENTILES, OPTIMAL_INPUT, REPORT, ReportConfig
from gradnap.errors import GradnapError
from gradnap.fileio import atomic_write_text
from gradnap.method.groupings import is_random_label
from gradnap.method.result import INPUT, INPUT_VIEWS, NO_NAPS
from gradnap.method.spectrum import SPECTRUM_LAYER
from gradnap.report.page import Report

log = logging.getLogger(__name__)

__all__ = [
    "MIN_SCORE_FOLDS",
    "action_figure",
    "build_report",
    "cluster_score_findings",
    "dendrogram_figure",
    "input_figure",
    "nap_figure",
    "result_cluster_scores",
    "result_silhouettes",
    "same_model",
]

#: Folds the report's cluster score needs: 3 give a score, its jackknife needs 4.
MIN_SCORE_FOLDS = 4
#: How to get them, named in the report when a result has fewer.
FOLDS_COMMAND = "gradnap collect --folds 5"


# --------------------------------------------------------------------------------------
# Layers


def _default_layer(result) -> str | None:
    """The default hidden layer: "layer2" when the result has it, else the second hidden
    layer (the first if there is only one; ``None`` without hidden layers)."""
    hidden = _hidden(result)
    if not hidden:
        return None
    return "layer2" if "layer2" in hidden else hidden[min(1, len(hidden) - 1)]


def _hidden(result) -> list[str]:
    """The result's layers of the model (not the input, nor a waveform's spectrum)."""
    return [name for name in result.layers if name not in INPUT_VIEWS]


def same_model(result, model) -> bool:
    """Whether ``model`` has the weights ``result`` was collected on (``True`` when the
    result does not record them)."""
    from gradnap.method.collector import model_identity

    recorded = result.meta.model.weights_sha256
    return recorded is None or model_identity(model).weights_sha256 == recorded


def _check_layer(result, name: str | None) -> None:
    if name is not None and name not in result.layers:
        raise GradnapError(
            f"layer {name!r} is not in the result; its layers: {', '.join(result.layers)}"
        )


# --------------------------------------------------------------------------------------
# Figures of a result (shared with `gradnap plot`)


#: The panels of a waveform model's input figure: (title, profile kind, colour-bar label).
SPECTRUM_PANELS = (
    ("sensitivity", "sensitivity_db", "dB re dataset"),
    ("GradNAP", "gradnap", "dB × mask"),
    ("input power (NAvAI)", "navai", "dB re dataset"),
)


def input_figure(result, groups, grouping: str):
    """Input-layer GradNAPs of ``groups`` beside their NAvAIs (paper Fig. 2); for a
    waveform model, its input spectrum (docs/method.md §1.10): per group the sensitivity's
    spectral magnitude and the input's power against the dataset's, in dB, and the
    GradNAP between them, over frequency (Hz) and time (ms)."""
    from gradnap.figures import plot_input_gradnaps, plot_input_spectra

    if SPECTRUM_LAYER in result.layers:
        axes = result.axes(SPECTRUM_LAYER)
        return plot_input_spectra(
            {
                g: {
                    title: result.profile(SPECTRUM_LAYER, g, grouping, kind)
                    for title, kind, _ in SPECTRUM_PANELS
                }
                for g in groups
            },
            times_ms=axes.offsets_ms,
            freqs=axes.frequencies_hz,
            units={title: unit for title, _, unit in SPECTRUM_PANELS},
            title="Input spectrum (waveform model)",
        )
    axes = result.axes(INPUT)
    return plot_input_gradnaps(
        {g: result.profile(INPUT, g, grouping) for g in groups},
        {g: result.profile(INPUT, g, grouping, kind="navai") for g in groups},
        times_ms=axes.offsets_ms,
        freqs=axes.frequencies_hz,
    )


def action_figure(
    result, layer: str, group: str, grouping: str | None, model=None, k: int = OPTIMAL_INPUT.top_k
):
    """Action potentials of ``group`` in ``layer``, its ``k`` most responsive neurons
    (docs/method.md §1.6) coloured, beside the optimal input of those neurons (§1.7, paper
    Fig. 3); no optimal input without ``model``, nor for a model that has none (a
    waveform model; the reason is logged). Returns ``(figure, optimal input or None)``."""
    from gradnap.analysis import (
        optimal_input_for_profile,
        optimal_input_unsupported,
        responsiveness,
        top_neurons,
    )
    from gradnap.figures import plot_action_potentials

    reason = None if model is None else optimal_input_unsupported(model)
    if reason is not None:
        log.info("no optimal input: %s", reason)
        model = None
    profile = result.profile(layer, group, grouping)
    optimal = None if model is None else optimal_input_for_profile(model, layer, profile, k=k)
    fig = plot_action_potentials(
        profile,
        top=top_neurons(profile, k),
        r=responsiveness(profile),
        times_ms=result.axes(layer).offsets_ms,
        optimal=optimal,
        freqs=result.axes(INPUT).frequencies_hz if INPUT in result.layers else None,
        group=group,
        layer=layer,
    )
    return fig, optimal


def nap_figure(result, layer: str | None, groups, grouping: str):
    """NAPs (the baseline of docs/method.md §1.9) of ``groups`` of ``grouping`` in
    ``layer``, one heatmap ``(C, W)`` (neurons × rank) per group on one colour scale.
    ``layer=None``: the report's default ("layer2", else the second hidden layer). Raises
    :class:`GradnapError` when the result holds no NAPs."""
    from gradnap.figures import plot_naps

    if not result.has_naps:
        raise GradnapError(NO_NAPS)
    layer = _default_layer(result) if layer is None else layer
    if layer is None:
        raise GradnapError("the result has no hidden layer; name the layer of the NAPs")
    _check_layer(result, layer)
    return plot_naps(
        {g: result.profile(layer, g, grouping, kind="nap") for g in groups}, layer=layer
    )


def dendrogram_figure(
    result, layer: str, grouping: str, percentile: float = REPORT.dendrogram_percentile
):
    """Dendrogram of the GradNAPs of ``grouping`` in ``layer``, clustered
    (docs/method.md §1.8) and coloured by the cut at ``percentile``."""
    from gradnap.analysis import cluster_profiles
    from gradnap.figures import plot_dendrogram

    _check_layer(result, layer)
    clustering = cluster_profiles(result.profiles(layer, grouping), (percentile,), layer=layer)
    return plot_dendrogram(clustering, percentile, grouping=grouping)


def result_silhouettes(result, groupings, kind: str = "gradnap"):
    """:func:`gradnap.analysis.silhouette_table` of ``groupings`` over every layer
    (docs/method.md §1.8), on the profiles of ``kind`` (``"gradnap"``, or ``"nap"`` for the
    NAP baseline, §1.9; that raises :class:`GradnapError` when the result holds no
    NAPs)."""
    from gradnap.analysis.clustering import silhouette_table

    if kind == "nap" and not result.has_naps:
        raise GradnapError(NO_NAPS)
    return silhouette_table(
        {
            g: {layer: result.profiles(layer, g, kind=kind) for layer in result.layers}
            for g in groupings
        },
        kind=kind,
    )


def result_cluster_scores(result, groupings, kind: str = "gradnap"):
    """:func:`gradnap.analysis.crossval.cluster_score_table` of ``groupings`` over every
    layer (docs/method.md §6); raises :class:`GradnapError` when the result has fewer than
    :data:`MIN_SCORE_FOLDS` folds (no jackknife uncertainty)."""
    from gradnap.analysis.crossval import cluster_score_table

    if result.folds < MIN_SCORE_FOLDS:
        raise GradnapError(_no_folds(result))
    return cluster_score_table(result, groupings, kind=kind)


def _no_folds(result) -> str:
    return (
        f"the result has {result.folds} fold(s); the cross-validated cluster score with its "
        f"uncertainty needs at least {MIN_SCORE_FOLDS} (docs/method.md §6): collect with "
        f"`{FOLDS_COMMAND}` (the demo: `gradnap demo --folds 5`)"
    )


# --------------------------------------------------------------------------------------
# Findings of the cluster scores, in words


def _runs(names, order) -> str:
    """``names`` in the order of ``order``, runs of neighbours joined: "input–layer3,
    layer5"."""
    runs: list[list[int]] = []
    for i in sorted(order.index(n) for n in names):
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(order[r[0]] if len(r) == 1 else f"{order[r[0]]}–{order[r[-1]]}" for r in runs)


def _layers_phrase(names, order) -> str:
    return f"{len(names)} of {len(order)} layers ({_runs(names, order)})" if names else "none"


def _false_flag_rate(folds: int, sigmas: float) -> float:
    """Chance that a score of expectation 0 lies beyond ± ``sigmas`` jackknife SE if the SE
    were unbiased: Student's t with ``folds − 1`` degrees of freedom (an upper bound in
    practice: the delete-one-fold jackknife overestimates the variance on average)."""
    from scipy.stats import t

    return float(2 * t.sf(sigmas, folds - 1))


def _pm(value: float, se: float) -> str:
    """``+0.123 ± 0.045``; "undefined" for a non-finite value, "(no SE)" for a non-finite SE."""
    if not np.isfinite(value):
        return "undefined"
    return f"{value:+.3f} ± {se:.3f}" if np.isfinite(se) else f"{value:+.3f} (no SE)"


def cluster_score_findings(table, real, chance, sigmas: float) -> list[str]:
    """One sentence per grouping and one per pair of ``real`` groupings, from the numbers
    of a :class:`~gradnap.analysis.crossval.ClusterScoreTable`.

    A real grouping is *above chance* in a layer when its score exceeds ``sigmas``
    jackknife SE; a random-label grouping (``chance``) should lie within ± ``sigmas`` SE of
    0, and the sentence names the layers where it does not. Two real groupings differ
    clearly in a layer when their difference exceeds ``sigmas`` of its own jackknife SE
    (:func:`gradnap.analysis.crossval.score_difference`).
    """
    from gradnap.analysis.crossval import score_difference

    out = []
    n = f"{sigmas:g}"
    for g in real:
        per = table.scores[g]
        order = list(per)
        above = [la for la, s in per.items() if s.score > sigmas * s.uncertainty]
        below = [la for la, s in per.items() if s.score < -sigmas * s.uncertainty]
        no_se = [la for la, s in per.items() if not s.uncertainty == s.uncertainty]
        text = f"{g}: above chance (score > {n} SE) in {_layers_phrase(above, order)}"
        if below:
            text += f"; below 0 by more than {n} SE in {_runs(below, order)}"
        if no_se:
            text += f"; no uncertainty (undefined score or jackknife) in {_runs(no_se, order)}"
        out.append(text + ".")
    for g in chance:
        per = table.scores[g]
        order = list(per)
        off = [la for la, s in per.items() if not abs(s.score) <= sigmas * s.uncertainty]
        inside = len(order) - len(off)
        if not off:
            out.append(
                f"{g} (random labels): within ± {n} SE of 0 in all {len(order)} layers, as "
                "the score's zero requires."
            )
            continue
        values = ", ".join(
            f"{la} {_pm(per[la].score, per[la].uncertainty)}" for la in sorted(off, key=order.index)
        )
        out.append(
            f"{g} (random labels): within ± {n} SE of 0 in {inside} of {len(order)} layers; "
            f"not in {values}: there the error bar does not cover 0."
        )
    for i, a in enumerate(real):
        for b in real[i + 1 :]:
            layers = [la for la in table.scores[a] if la in table.scores[b]]
            diff = {la: score_difference(table.scores[a][la], table.scores[b][la]) for la in layers}
            higher_a = [la for la, d in diff.items() if d.difference > sigmas * d.uncertainty]
            higher_b = [la for la, d in diff.items() if d.difference < -sigmas * d.uncertainty]
            rest = [la for la in layers if la not in higher_a and la not in higher_b]
            parts = [
                f"{g} higher in {_runs(ls, layers)}"
                for g, ls in ((a, higher_a), (b, higher_b))
                if ls
            ]
            text = (
                f"{a} − {b} (difference beyond {n} SE of the difference, jackknifed over the "
                "same delete-one-fold replicates): "
            )
            text += "; ".join(parts) if parts else "no layer"
            if rest and parts:
                text += f"; no clear difference in {_runs(rest, layers)}"
            out.append(text + ".")
    return out


# --------------------------------------------------------------------------------------
# The report


def _pick_layers(result, config: ReportConfig) -> tuple[str | None, str | None]:
    """(action-potential layer, dendrogram layer) by the rules of :class:`ReportConfig`."""
    hidden = _hidden(result)
    action = config.action_layer
    if action is None:
        action = _default_layer(result)
    dendro = config.dendrogram_layer
    if dendro is None and hidden:
        dendro = hidden[-2] if len(hidden) >= 2 else hidden[-1]
    for name in (action, dendro):
        _check_layer(result, name)
    return action, dendro


def _kept(result, grouping: str, groups) -> tuple[list[str], list[str]]:
    """``groups`` the result kept for ``grouping`` and the others, in their order."""
    kept = set(result.groups(grouping))
    return [g for g in groups if g in kept], [g for g in groups if g not in kept]


def _examples(result, grouping: str, groups) -> str:
    counts = result.counts(grouping)
    return ", ".join(f"{g}: {counts.get(g, 0)}" for g in groups)


def _percentiles() -> str:
    """The dendrogram cuts the silhouettes average over, for captions ("75-95th")."""
    return f"{min(CLUSTER_PERCENTILES):g}-{max(CLUSTER_PERCENTILES):g}th"


def _silhouette_rows(table, groupings) -> tuple[list[str], list[list[object]]]:
    """Header and rows of a silhouette table: layer, then mean and defined cuts per grouping."""
    rows = []
    for layer in table.layers:
        row: list[object] = [layer]
        for g in groupings:
            c = table.clusterings[g].get(layer)
            row.append(None if c is None or c.n_defined == 0 else c.mean_silhouette)
            row.append(0 if c is None else c.n_defined)
        rows.append(row)
    header = ["layer"]
    for g in groupings:
        header += [g, "defined cuts"]
    return header, rows


def _add_silhouettes(report: Report, table, groupings, caption: str, path: Path) -> None:
    """The silhouette table on the page and, as JSON (:meth:`SilhouetteTable.to_dict`), in
    ``path``."""
    header, rows = _silhouette_rows(table, groupings)
    report.table(header, rows, caption)
    atomic_write_text(path, json.dumps(table.to_dict(), indent=1, default=_json))


def _score_section(
    report: Report, result, config: ReportConfig, real, chance, out_dir: Path
) -> None:
    """The report's lead: the cross-validated cluster score per layer of the ``real``
    groupings beside their random-label ``chance`` ones, with error bars, the sentences
    the numbers support, a table and ``cluster_scores.json``; one line when the result
    has too few folds."""
    from gradnap.analysis.crossval import score_difference
    from gradnap.figures import plot_cluster_scores

    groupings = [*real, *chance]
    report.heading("Graphemes vs phonemes: cross-validated cluster score")
    if result.folds < MIN_SCORE_FOLDS:
        report.text(f"Not computed: {_no_folds(result)}.")
        return
    table = result_cluster_scores(result, groupings)
    k, n = result.folds, config.score_sigmas
    rate = _false_flag_rate(k, n)
    report.text(
        "The comparison to trust first. Per layer, the groups' GradNAPs are clustered on "
        "some folds of the examples and the clusters scored on the other folds with "
        "cross-validated distances (docs/method.md §6), normalised by the distances the "
        "clustering saw. The score's expectation is 0 when the groups do not differ, "
        "whatever their number and sizes, so graphemes and phonemes compare directly and "
        "random labels (same label frequencies) check the zero. Error bars: ± "
        f"{n:g} delete-one-fold jackknife standard errors ({k} folds); a score counts as "
        f"above chance when it exceeds {n:g} SE. With {k} folds the SE rests on {k - 1} "
        f"degrees of freedom: were it unbiased, a score of expectation 0 would lie beyond "
        f"± {n:g} SE in about {100 * rate:.0f} % of layers (Student's t). The jackknife "
        "overestimates the variance on average, so fewer do: 5–11 % for ± 2 SE on random "
        'labels of the demo and on simulated noise (docs/analyses.md, "Jackknife '
        'coverage").'
    )
    counts = ", ".join(f"{g} {len(result.groups(g))}" for g in groupings)
    report.figure(
        "cluster_scores",
        plot_cluster_scores(table, sigmas=n, chance=chance),
        f"Cross-validated cluster score of the GradNAPs per layer, ± {n:g} jackknife SE "
        f"({k} folds, every split of them into a selection part and a scoring part; cuts "
        f"at the {_percentiles()} percentiles). Filled, solid: real labels; hollow, dashed: "
        "random labels of the same frequencies, expected at 0 (black line). Groups: "
        f"{counts}.",
    )
    for sentence in cluster_score_findings(table, real, chance, n):
        report.text(sentence)
    pairs = [(a, b) for i, a in enumerate(real) for b in real[i + 1 :]]
    header = ["layer"]
    for g in groupings:
        header += [f"{g} score ± SE", f"{g} signal share"]
    header += [f"{a} − {b} ± SE" for a, b in pairs]
    rows: list[list[object]] = []
    differences: dict[str, dict[str, dict[str, object]]] = {f"{a} - {b}": {} for a, b in pairs}
    for layer in result.layers:
        row: list[object] = [layer]
        for g in groupings:
            s = table.scores[g][layer]
            row += [_pm(s.score, s.uncertainty), table.signal_share[g][layer]]
        for a, b in pairs:
            d = score_difference(table.scores[a][layer], table.scores[b][layer])
            row.append(_pm(d.difference, d.uncertainty))
            differences[f"{a} - {b}"][layer] = {
                "difference": d.difference,
                "uncertainty": d.uncertainty,
                "clear": bool(abs(d.difference) > n * d.uncertainty),
            }
        rows.append(row)
    report.table(
        header,
        rows,
        f"Cluster score ± jackknife SE per layer ({k} folds); signal share: mean "
        "cross-validated over mean plain squared distance between the groups (about 0 when "
        "all distance is noise, 1 when none is).",
    )
    doc = table.to_json()
    for g, per in doc["groupings"].items():
        for layer, entry in per.items():
            s = table.scores[g][layer]
            entry["above_chance"] = bool(s.score > n * s.uncertainty)
    doc.update(
        measure="cross-validated cluster score (docs/method.md §6)",
        folds=k,
        sigmas=n,
        rule=(
            f"above_chance: score > {n:g} jackknife SE; clear difference: |a - b| > {n:g} "
            "jackknife SE of the difference (same delete-one-fold replicates)"
        ),
        real=list(real),
        chance=list(chance),
        differences=differences,
    )
    atomic_write_text(out_dir / "cluster_scores.json", json.dumps(_finite(doc), indent=1))


def _finite(value):
    """``value`` with every non-finite float replaced by ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _input_section(report: Report, result, config: ReportConfig, skipped: list[str]) -> None:
    """Input-layer GradNAPs beside NAvAI (paper Fig. 2)."""
    if INPUT not in result.layers or config.input_grouping not in result.groupings:
        return
    waveform = result.meta.options.features.get("input") == "waveform"
    if waveform and SPECTRUM_LAYER not in result.layers:  # collected before §1.10
        skipped.append(
            "input-layer GradNAPs: the model's input is the waveform, and this result has "
            f"no {SPECTRUM_LAYER} layer (collect its input again for the spectrum figure)"
        )
        return
    groups, missing = _kept(result, config.input_grouping, config.input_groups)
    skipped += [
        f"input GradNAP of {g}: fewer than {result.min_count} examples or absent" for g in missing
    ]
    if not groups:
        return
    if SPECTRUM_LAYER in result.layers:
        _spectrum_figure(report, result, config, groups)
        return
    report.heading("Input-layer GradNAPs")
    report.figure(
        "input_gradnaps",
        input_figure(result, groups, config.input_grouping),
        f"Input-layer GradNAPs (left) and NAvAIs (right) of {config.input_grouping}s "
        f"{', '.join(groups)}: mean aligned spectrogram minus the dataset mean, masked by "
        f"the normalised mean |gradient| (GradNAP) or unmasked (NAvAI); time relative to "
        f"the alignment centre. Examples: {_examples(result, config.input_grouping, groups)}. "
        "GradNAPs look speckled where NAvAIs are smooth because the mask is the mean "
        "|gradient| per mel bin and frame, which varies from one bin to the next; NAvAIs "
        "average spectrogram values, which neighbouring bins share. The lowest three mel "
        "bins (23–70 Hz) hold no speech of their own (at 16 kHz with a 512-point FFT they "
        "span the first two FFT bins, where spectral leakage of the whole spectrum lands), "
        "yet the model is about 4 times more sensitive there than elsewhere: values there "
        "follow the overall level of the sound (e.g. the closure and burst of /T/), not "
        "content at those frequencies (docs/analyses.md).",
    )


def _spectrum_figure(report: Report, result, config: ReportConfig, groups) -> None:
    """A waveform model's input figure (docs/method.md §1.10) with its caption."""
    axes = result.axes(SPECTRUM_LAYER)
    freqs, t = axes.frequencies_hz, axes.offsets_ms
    step = float(freqs[1] - freqs[0])  # = 1 / frame length
    report.heading("Input spectrum (waveform model)")
    report.figure(
        "input_spectrum",
        input_figure(result, groups, config.input_grouping),
        f"The input of a waveform model as short-time spectra of each example's "
        f"aligned input window ({1000.0 / step:g} ms Hann frames every "
        f"{float(t[1] - t[0]) if len(t) > 1 else 0.0:g} ms, the centre frame on the "
        f"alignment centre t*; frequency bins every {step:g} Hz up to {freqs[-1]:g} Hz; "
        f"{t[0]:g} to "
        f"{t[-1]:g} ms), for {config.input_grouping}s {', '.join(groups)}. Left: the "
        "group's mean spectral magnitude of the input sensitivity (the gradient of the "
        "predicted class's output with respect to the waveform) against the dataset's "
        "mean, in dB: "
        "where in time and frequency this group's predictions depend on the sound more "
        "(red) or less (blue) than the average example's. Right (NAvAI): the group's mean "
        "log power of the input itself minus the dataset mean, in dB. Middle: the GradNAP "
        "of the spectrum, the right panel masked by the normalised mean sensitivity "
        "magnitude (docs/method.md §1.10). Spectra do not depend on the phase, so they do not "
        "cancel in the mean as the waveform's signed values do. Examples: "
        f"{_examples(result, config.input_grouping, groups)}.",
    )


def listening_figure(result):
    """The listening offsets of ``result`` and their summary, as one figure."""
    from gradnap.analysis.listening import listening_summary
    from gradnap.figures.listening import plot_listening_offsets

    offsets = result.meta.listening_offsets
    summary = listening_summary(offsets)
    return summary, plot_listening_offsets(offsets, summary, title="Where the model listens")


def _listening_section(report: Report, result, skipped: list[str]) -> None:
    """The model's listening offset: where the input sensitivity peaks (docs/method.md §1.5)."""
    if not result.meta.listening_offsets:
        skipped.append("listening offsets: the result was collected without the input layer")
        return
    summary, fig = listening_figure(result)
    report.heading("Where the model listens")
    label_time = result.meta.options.label_time
    report.figure(
        "listening_offsets",
        fig,
        "Listening offset of every example: the input layer's alignment centre t* (where "
        "the summed |input sensitivity| peaks within the receptive field) minus the centre "
        f"of the output frame's receptive field; {summary.describe()}. A CTC model emits a "
        "letter at an offset from its acoustic evidence, so a phone read at the "
        "receptive-field centre is often not the one the model heard. Phoneme labels of "
        f"this result are read at: {label_time} (docs/method.md §1.5).",
    )


def _action_section(
    report: Report, result, config: ReportConfig, layer: str | None, model, skipped: list[str]
) -> None:
    """Action potentials with optimal inputs (paper Fig. 3)."""
    if layer is None or config.action_grouping not in result.groupings:
        return
    groups, missing = _kept(result, config.action_grouping, config.action_groups)
    skipped += [
        f"action potentials of {g}: fewer than {result.min_count} examples" for g in missing
    ]
    if groups:
        report.heading(f"Action potentials in {layer}")
    from gradnap.analysis import top_neurons

    counts = result.counts(config.action_grouping)
    tops = {
        g: set(top_neurons(result.profile(layer, g, config.action_grouping), OPTIMAL_INPUT.top_k))
        for g in groups
    }
    for g in groups:
        fig, optimal = action_figure(result, layer, g, config.action_grouping, model)
        opt_text = ""
        if optimal is not None:
            opt_text = (
                f" Right: one optimal input for those {len(optimal.neurons)} neurons together "
                f"(a single input pattern that drives all of them; {optimal.config.steps} Adam "
                f"steps, loss {optimal.losses[0]:.3g} -> {optimal.losses[-1]:.3g})."
            )
        shared = [
            f"{', '.join(str(n) for n in sorted(tops[g] & tops[h]))} with {h}"
            for h in groups
            if h != g and tops[g] & tops[h]
        ]
        if shared:
            opt_text += f" Neurons shared with the other groups shown: {'; '.join(shared)}."
        report.figure(
            f"action_potentials_{layer}_{g}",
            fig,
            f"GradNAP of {config.action_grouping} {g} in {layer} "
            f"({counts.get(g, 0)} examples): every neuron over window time, the "
            f"{OPTIMAL_INPUT.top_k} most responsive coloured; r in the legend is a neuron's "
            f"responsiveness (docs/method.md §1.6).{opt_text}",
        )


def _random_label_note(result, groupings, nap: bool = False) -> str:
    """What a silhouette caption says of random labels: their curves are drawn and no
    floor; or there are none because, collected with folds, they keep per-fold sums only;
    or nothing when the result has no random-label grouping."""
    if any(is_random_label(g) for g in groupings):
        style = "dashed (GradNAP) and dash-dotted (NAP)" if nap else "dashed"
        return (
            f"; {style}: the same groupings with random labels, which score high on this "
            "measure: no floor"
        )
    if any(is_random_label(g) for g in result.groupings):
        return (
            "; no random-label curves (collected with folds, random-label groupings keep "
            "per-fold sums only: they check the cluster score at the top)"
        )
    return ""


def _clustering_section(
    report: Report, result, config: ReportConfig, groupings, layer: str | None, out_dir: Path
):
    """Silhouettes per layer (paper Fig. 4, Table) and the dendrogram of ``layer``; returns
    the silhouette table."""
    from gradnap.figures import plot_dendrogram, plot_silhouettes

    table = result_silhouettes(result, groupings)
    report.heading("Clustering: silhouette scores per layer (the paper's measure)")
    n_groups = {g: len(result.groups(g)) for g in groupings}
    report.figure(
        "silhouettes",
        plot_silhouettes(table),
        f"Mean silhouette score over the dendrogram cuts at the {_percentiles()} percentiles "
        "of the pairwise Euclidean distances of the GradNAPs (complete linkage), per layer"
        f"{_random_label_note(result, groupings)}. This silhouette depends on the number and sizes "
        "of the groups, so groupings of different sizes do not compare directly on it "
        "(docs/method.md §6); the cluster score at the top of the report has a true zero. "
        "Groups: " + ", ".join(f"{g} {n}" for g, n in n_groups.items()) + ".",
    )
    _add_silhouettes(
        report,
        table,
        groupings,
        "Mean silhouette per layer (undefined: every cut gave 1 or n clusters)",
        out_dir / "silhouettes.json",
    )
    if layer is not None and config.dendrogram_grouping in groupings:
        clustering = table.clusterings[config.dendrogram_grouping][layer]
        report.heading(f"Dendrogram of {layer}")
        report.figure(
            f"dendrogram_{layer}",
            plot_dendrogram(
                clustering,
                config.dendrogram_percentile,
                layer=layer,
                grouping=config.dendrogram_grouping,
            ),
            f"Complete-linkage dendrogram of the {len(clustering.groups)} "
            f"{config.dendrogram_grouping} GradNAPs in {layer}, coloured by the "
            f"clusters of the cut at the {config.dendrogram_percentile:g}th percentile. "
            + (
                f"{layer} was chosen with --dendrogram-layer."
                if config.dendrogram_layer is not None
                else f"{layer} is the default: the last hidden layer, just below the output "
                "layer (--dendrogram-layer picks another)."
            ),
        )
    return table


def _nap_section(
    report: Report,
    result,
    config: ReportConfig,
    layer: str | None,
    groupings,
    table,
    out_dir: Path,
    skipped: list[str],
) -> None:
    """The NAP baseline (docs/method.md §1.9): heatmaps in ``layer`` and silhouettes beside
    the GradNAP ones (``table``); one line when the result holds no NAPs."""
    from gradnap.figures import plot_silhouettes

    report.heading("NAP baseline")
    if not result.has_naps:
        report.text(f"Not shown: {NO_NAPS}.")
        return
    report.text(
        "NAPs (neuron activation profiles, the authors' earlier method): per neuron, the "
        "activations in the aligned window sorted in descending order, averaged per group, "
        "minus the dataset mean of the sorted activations and divided by the neuron's "
        "standard deviation. Columns are ranks, not time, and no gradient is involved."
    )
    if layer is not None and config.input_grouping in result.groupings:
        groups, _ = _kept(result, config.input_grouping, config.input_groups)
        if groups:
            report.figure(
                f"naps_{layer}",
                nap_figure(result, layer, groups, config.input_grouping),
                f"NAPs of {config.input_grouping}s {', '.join(groups)} in {layer}: "
                "each neuron's sorted activations (rank 1 = largest) averaged over the "
                "group, minus the dataset mean, divided by the neuron's standard deviation; "
                "one colour scale for all panels, saturating at the 99th percentile of |NAP| "
                "(a few neurons would wash out a linear scale), and only the first ranks, "
                "up to the last one where a group's |NAP| reaches 5% of its largest value "
                "(later ranks are the zeros of inactive ReLUs, near 0 after the mean is "
                f"subtracted). Examples: "
                f"{_examples(result, config.input_grouping, groups)}.",
            )
        else:
            skipped.append(f"NAPs in {layer}: none of the input figure's groups")
    kept = [g for g in groupings if result.has_profiles(g, kind="nap")]
    if not kept:
        return
    dropped = [g for g in groupings if g not in kept]  # random labels keep no NAP sums
    note = _random_label_note(result, groupings, nap=not dropped)
    if dropped:
        note += f"; no NAP curve for {', '.join(dropped)} (random labels keep no NAP sums)"
    nap_table = result_silhouettes(result, kept, kind="nap")
    report.figure(
        "silhouettes_nap",
        plot_silhouettes(
            table,
            baseline=nap_table,
            show_cuts=False,
            title="Silhouette scores per layer: GradNAP vs NAP",
        ),
        "Mean silhouette score per layer of the GradNAPs (solid) and of the NAPs of the same "
        "groups (dotted), clustered the same way (complete linkage, cuts at the "
        f"{_percentiles()} percentiles){note}. The "
        "silhouette depends on group sizes (docs/method.md §6).",
    )
    _add_silhouettes(
        report,
        nap_table,
        kept,
        "NAP baseline: mean silhouette per layer (undefined: every cut gave 1 or n clusters)",
        out_dir / "silhouettes_nap.json",
    )


def build_report(
    result,
    out_dir: str | Path,
    *,
    model=None,
    config: ReportConfig = REPORT,
    title: str = "GradNAP report",
    notes: list[str] | None = None,
) -> Path:
    """Write the paper's figures and tables for ``result`` into ``out_dir``.

    The report leads with the cross-validated cluster score (docs/method.md §6) of
    ``config.cluster_groupings`` and their random-label ``chance_<grouping>`` per layer:
    a figure with ± ``config.score_sigmas`` jackknife SE, one sentence per grouping and
    per pair of groupings generated from the numbers, a table and ``cluster_scores.json``.
    A result with fewer than :data:`MIN_SCORE_FOLDS` folds gets one line saying how to
    collect them instead. Then the paper's figures and the silhouettes.
    ``result``: a :class:`~gradnap.method.result.Result` or the path of a result file.
    ``model``: the model the result was collected on, for the optimal inputs (without it,
    or with a model of other weights, the action-potential plots show no optimal input).
    Each section is logged as it starts (logger ``gradnap.report.paper``, INFO). Figures whose groups or layers the
    result lacks are skipped with a note in the report. When the result holds NAPs, a
    "NAP baseline" section shows the NAPs of the input figure's groups in
    ``config.nap_layer`` (default: the action-potential layer) and the NAP silhouettes
    beside the GradNAP ones (``silhouettes_nap.json``); without NAPs the section says so.
    Returns the path of index.html.
    """
    from gradnap.analysis import optimal_input_unsupported
    from gradnap.method.result import Result

    t0 = time.perf_counter()
    if not isinstance(result, Result):
        result = Result.load(result)
    out_dir = Path(out_dir)
    report = Report(title)
    meta = result.meta
    report.heading("Run")
    report.pre(result.summary())
    for line in notes or []:
        report.text(line)
    skipped: list[str] = []
    action_layer, dendro_layer = _pick_layers(result, config)
    nap_layer = action_layer if config.nap_layer is None else config.nap_layer
    _check_layer(result, nap_layer)
    if model is not None and not same_model(result, model):
        log.warning("report: not the model of the result (other weights): no optimal inputs")
        skipped.append("optimal inputs: the model given is not the one of the result")
        model = None
    reason = None if model is None else optimal_input_unsupported(model)
    if reason is not None:
        log.info("report: no optimal inputs: %s", reason)
        skipped.append(f"optimal inputs: {reason}")
        model = None

    real = [g for g in config.cluster_groupings if g in result.groupings]
    chance = [f"chance_{g}" for g in real if f"chance_{g}" in result.groupings]
    if real:
        log.info("report: cross-validated cluster scores of %s", ", ".join(real + chance))
        _score_section(report, result, config, real, chance, out_dir)
    log.info("report: input-layer GradNAPs and NAvAIs")
    _input_section(report, result, config, skipped)
    _listening_section(report, result, skipped)
    if action_layer is not None and config.action_grouping in result.groupings:
        log.info(
            "report: action potentials in %s%s",
            action_layer,
            " with optimal inputs" if model is not None else "",
        )
    _action_section(report, result, config, action_layer, model, skipped)
    # random-label groupings collected with folds keep per-fold sums only (no silhouette)
    groupings = real + [c for c in chance if result.has_profiles(c)]
    table = None
    if groupings:
        log.info("report: clustering and silhouettes of %s per layer", ", ".join(groupings))
        table = _clustering_section(report, result, config, groupings, dendro_layer, out_dir)
    log.info("report: NAP baseline")
    _nap_section(report, result, config, nap_layer, groupings, table, out_dir, skipped)
    if skipped:
        report.heading("Not shown")
        report.pre("\n".join(skipped))
    report.heading("Provenance")
    report.key_values(_provenance(meta.to_json()), columns=2)
    figures = sum(item.kind == "figure" for item in report.items)
    log.info("report: %d figures in %.1f s", figures, time.perf_counter() - t0)
    return report.write(out_dir)


def _provenance(meta: dict) -> list[tuple[str, object]]:
    """The run's provenance as ``(name, value)`` pairs: version, time, model, corpus and
    options, nested fields flattened to ``a.b`` names and lists joined."""
    out: list[tuple[str, object]] = []

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list | tuple):
            out.append((prefix, ", ".join(json.dumps(v, default=_json) for v in value)))
        else:
            out.append((prefix, value))

    for key in ("gradnap_version", "created", "model", "corpus", "options"):
        if key in meta:
            add(key, meta[key])
    return out


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
