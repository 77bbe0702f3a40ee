"""``gradnap plot KIND RESULT --out FILE``: single figures from a result file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradnap.cli.common import RESULT_MODEL_HELP, result_model
from gradnap.defaults import REPORT


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw one figure from a result file (input, action, naps, silhouettes, dendrogram)",
        description="Draw one of the paper's figures from a result file into a PNG (or PDF, SVG).",
    )
    sub = p.add_subparsers(dest="plot_kind", metavar="KIND", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("result", type=Path, help="result file written by 'gradnap collect'")
        q.add_argument("--out", type=Path, required=True, help="image file to write")

    def groups(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--groups",
            default=",".join(REPORT.input_groups),
            metavar="G,G,...",
            help="comma-separated groups",
        )
        q.add_argument("--grouping", default=REPORT.input_grouping, help="grouping of --groups")

    q = sub.add_parser(
        "input",
        help="input-layer GradNAPs beside NAvAIs (a waveform model: its input spectrum, Hz x ms)",
    )
    common(q)
    groups(q)
    q.set_defaults(func=_input)

    q = sub.add_parser("action", help="action potentials of a layer beside the optimal input")
    common(q)
    q.add_argument("--group", required=True, help="the group (label), e.g. AE")
    q.add_argument(
        "--grouping",
        default=None,
        help="grouping of --group (default: the one grouping that has the group, real "
        "groupings before random-label ones)",
    )
    q.add_argument("--layer", required=True, help="a layer of the result (named_modules() name)")
    q.add_argument("--model", default=None, help=RESULT_MODEL_HELP)
    q.set_defaults(func=_action)

    q = sub.add_parser("naps", help="NAP heatmaps (baseline) of a few groups of one layer")
    common(q)
    groups(q)
    q.add_argument(
        "--layer",
        default=None,
        help="a layer of the result (default: as the report's action potentials)",
    )
    q.set_defaults(func=_naps)

    q = sub.add_parser("silhouettes", help="silhouette scores per layer for several groupings")
    common(q)
    q.add_argument(
        "--groupings",
        default=None,
        metavar="G,G,...",
        help="comma-separated groupings (default: every grouping except 'all')",
    )
    q.add_argument(
        "--naps",
        action="store_true",
        help="also draw the silhouettes of the NAP baseline (dotted) and print their table",
    )
    q.set_defaults(func=_silhouettes)

    q = sub.add_parser("dendrogram", help="dendrogram of one layer, coloured by a cut")
    common(q)
    q.add_argument("--layer", required=True, help="a layer of the result (named_modules() name)")
    q.add_argument(
        "--grouping",
        default=REPORT.dendrogram_grouping,
        help="grouping whose profiles are clustered",
    )
    q.add_argument(
        "--percentile",
        type=float,
        default=REPORT.dendrogram_percentile,
        help="colour by the cut at this percentile of the pairwise distances (docs/method.md §1.8)",
    )
    q.set_defaults(func=_dendrogram)


def _split(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _save(fig, path: Path) -> int:
    from gradnap.figures import save_figure

    save_figure(fig, path)
    print(f"figure: {path}")
    return 0


def _input(args: argparse.Namespace) -> int:
    from gradnap.method.result import Result
    from gradnap.report.paper import input_figure

    return _save(
        input_figure(Result.load(args.result), _split(args.groups), args.grouping), args.out
    )


def _action(args: argparse.Namespace) -> int:
    from gradnap.method.result import Result
    from gradnap.report.paper import action_figure

    result = Result.load(args.result)
    model = result_model(result, args.model, args.result)
    fig, _ = action_figure(result, args.layer, args.group, args.grouping, model)
    return _save(fig, args.out)


def _naps(args: argparse.Namespace) -> int:
    from gradnap.method.result import Result
    from gradnap.report.paper import nap_figure

    fig = nap_figure(Result.load(args.result), args.layer, _split(args.groups), args.grouping)
    return _save(fig, args.out)


def _silhouettes(args: argparse.Namespace) -> int:
    from gradnap.figures import plot_silhouettes
    from gradnap.method.groupings import ALL
    from gradnap.method.result import Result
    from gradnap.report.paper import result_silhouettes

    result = Result.load(args.result)
    names = _split(args.groupings) if args.groupings else [g for g in result.groupings if g != ALL]
    baseline = result_silhouettes(result, names, kind="nap") if args.naps else None
    table = result_silhouettes(result, names)
    print(table.to_markdown())
    if baseline is not None:
        print("\nNAP baseline:")
        print(baseline.to_markdown())
    return _save(plot_silhouettes(table, baseline=baseline), args.out)


def _dendrogram(args: argparse.Namespace) -> int:
    from gradnap.method.result import Result
    from gradnap.report.paper import dendrogram_figure

    fig = dendrogram_figure(Result.load(args.result), args.layer, args.grouping, args.percentile)
    return _save(fig, args.out)
