"""The paper's report of a result: its figures, tables and provenance on one page.

The figure helpers (a result in, a figure out) are shared with ``gradnap plot``: they pick
the profiles from the result, run the analyses of :mod:`gradnap.analysis` that a figure
shows and hand both to :mod:`gradnap.figures`. :func:`build_report` lays them out with
the silhouette tables on a :class:`~gradnap.report.page.Report`.
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
from gradnap.method.result import INPUT, NO_NAPS
from gradnap.report.page import Report

log = logging.getLogger(__name__)

__all__ = [
    "action_figure",
    "build_report",
    "dendrogram_figure",
    "input_figure",
    "nap_figure",
    "result_silhouettes",
    "same_model",
]


# --------------------------------------------------------------------------------------
# Layers


def _default_layer(result) -> str | None:
    """The default hidden layer: "layer2" when the result has it, else the second hidden
    layer (the first if there is only one; ``None`` without hidden layers)."""
    hidden = [name for name in result.layers if name != INPUT]
    if not hidden:
        return None
    return "layer2" if "layer2" in hidden else hidden[min(1, len(hidden) - 1)]


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


def input_figure(result, groups, grouping: str):
    """Input-layer GradNAPs of ``groups`` beside their NAvAIs (paper Fig. 2)."""
    from gradnap.figures import plot_input_gradnaps

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
    Fig. 3); no optimal input without ``model``. Returns ``(figure, optimal input or
    None)``."""
    from gradnap.analysis import optimal_input_for_profile, responsiveness, top_neurons
    from gradnap.figures import plot_action_potentials

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
    return plot_dendrogram(clustering, percentile)


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


# --------------------------------------------------------------------------------------
# The report


def _pick_layers(result, config: ReportConfig) -> tuple[str | None, str | None]:
    """(action-potential layer, dendrogram layer) by the rules of :class:`ReportConfig`."""
    hidden = [name for name in result.layers if name != INPUT]
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


def _input_section(report: Report, result, config: ReportConfig, skipped: list[str]) -> None:
    """Input-layer GradNAPs beside NAvAI (paper Fig. 2)."""
    if INPUT not in result.layers or config.input_grouping not in result.groupings:
        return
    groups, missing = _kept(result, config.input_grouping, config.input_groups)
    skipped += [
        f"input GradNAP of {g}: fewer than {result.min_count} examples or absent" for g in missing
    ]
    if not groups:
        return
    report.heading("Input-layer GradNAPs")
    report.figure(
        "input_gradnaps",
        input_figure(result, groups, config.input_grouping),
        f"Input-layer GradNAPs (left) and NAvAIs (right) of {config.input_grouping}s "
        f"{', '.join(groups)}: mean aligned spectrogram minus the dataset mean, masked by "
        f"the normalised mean |gradient| (GradNAP) or unmasked (NAvAI); time relative to "
        f"the alignment centre. Examples: {_examples(result, config.input_grouping, groups)}.",
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
    counts = result.counts(config.action_grouping)
    for g in groups:
        fig, optimal = action_figure(result, layer, g, config.action_grouping, model)
        opt_text = ""
        if optimal is not None:
            opt_text = (
                f" Right: optimal input of those neurons ({optimal.config.steps} Adam steps, "
                f"loss {optimal.losses[0]:.3g} -> {optimal.losses[-1]:.3g})."
            )
        report.figure(
            f"action_potentials_{layer}_{g}",
            fig,
            f"GradNAP of {config.action_grouping} {g} in {layer} "
            f"({counts.get(g, 0)} examples): every neuron over window time, the "
            f"{OPTIMAL_INPUT.top_k} most responsive (|r_n|) coloured.{opt_text}",
        )


def _clustering_section(
    report: Report, result, config: ReportConfig, groupings, layer: str | None, out_dir: Path
):
    """Silhouettes per layer (paper Fig. 4, Table) and the dendrogram of ``layer``; returns
    the silhouette table."""
    from gradnap.figures import plot_dendrogram, plot_silhouettes

    table = result_silhouettes(result, groupings)
    report.heading("Clustering: silhouette scores per layer")
    n_groups = {g: len(result.groups(g)) for g in groupings}
    report.figure(
        "silhouettes",
        plot_silhouettes(table),
        f"Mean silhouette score over the dendrogram cuts at the {_percentiles()} percentiles "
        "of the pairwise Euclidean distances of the GradNAPs (complete linkage), per layer; "
        "dashed: the same groupings with random labels. This silhouette depends on the "
        "number and sizes of the groups, and random labels score high on it, so the dashed "
        "curves are no floor and groupings of different sizes do not compare directly "
        "(docs/method.md §6). Groups: " + ", ".join(f"{g} {n}" for g, n in n_groups.items()) + ".",
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
            plot_dendrogram(clustering, config.dendrogram_percentile, layer=layer),
            f"Complete-linkage dendrogram of the {len(clustering.groups)} "
            f"{config.dendrogram_grouping} GradNAPs in {layer}, coloured by the "
            f"clusters of the cut at the {config.dendrogram_percentile:g}th percentile.",
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
                f"one colour scale. Examples: "
                f"{_examples(result, config.input_grouping, groups)}.",
            )
        else:
            skipped.append(f"NAPs in {layer}: none of the input figure's groups")
    if not groupings:
        return
    nap_table = result_silhouettes(result, groupings, kind="nap")
    report.figure(
        "silhouettes_nap",
        plot_silhouettes(
            table,
            baseline=nap_table,
            show_cuts=False,
            title="Silhouette scores per layer: GradNAP vs NAP",
        ),
        "Mean silhouette score per layer of the GradNAPs (solid; dashed: random labels) "
        "and of the NAPs of the same groups (dotted; dash-dotted: random labels), "
        f"clustered the same way (complete linkage, cuts at the {_percentiles()} percentiles). "
        "The silhouette depends on group sizes: random labels are no floor here "
        "(docs/method.md §6).",
    )
    _add_silhouettes(
        report,
        nap_table,
        groupings,
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
    groupings = [g for g in config.cluster_groupings if g in result.groupings]
    # random-label groupings collected with folds keep per-fold sums only (no silhouette)
    groupings += [
        f"chance_{g}"
        for g in groupings
        if f"chance_{g}" in result.groupings and result.has_profiles(f"chance_{g}")
    ]
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
    report.pre(
        json.dumps(
            {
                k: v
                for k, v in meta.to_json().items()
                if k in ("gradnap_version", "created", "model", "corpus", "options")
            },
            indent=1,
            default=_json,
        )
    )
    figures = sum(item.kind == "figure" for item in report.items)
    log.info("report: %d figures in %.1f s", figures, time.perf_counter() - t0)
    return report.write(out_dir)


def _json(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return None
    return str(value)
