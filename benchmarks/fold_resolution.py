"""Cross-validated cluster score vs the time resolution of the per-fold sums.

Works on a result collected once with **full-resolution** per-fold sums
(``fold_span=1``) and re-represents the per-fold sums afterwards, in the analysis: each
representation maps a layer's ``W`` window columns to bins (a column may be dropped,
:class:`gradnap.method.accumulators.FoldLayout`), the sums are pooled into them and the
score table of docs/method.md §6 is computed from the pooled sums (``cluster_score``,
``score_difference``). Representations (``--reps``):

- ``binsN``: ``N`` equal time bins centred on t* (``bins6`` is the format-3 layout);
- ``full``: one bin per column;
- ``spanF_N``: the central fraction ``F`` of the window at full resolution, the rest in
  the bins of ``binsN`` (``N = 0``: dropped); ``halfN`` = ``span0.5_N``;
- ``timeT``: ``+-T`` input frames at full resolution (``2 round(T / jump) + 1``
  columns of the layer), the rest dropped;
- ``stored``: the layout this gradnap stores (``fold_span``, ``fold_bins`` of the
  defaults);
- ``<rep>@f16``: the same through the result file's float16 codec (per-fold means
  rounded to float16, scaled per array), to measure its error.

Collect the study result (about 2 GB in memory, 0.5 GB on disk, 15 min on 2 busy cores;
the numbers in docs/analyses.md come from a float32 file of an earlier version, the
float16 codec changes them by less than 0.002) and print the tables::

    PYTHONPATH=src .venv/bin/python benchmarks/fold_resolution.py collect /tmp/full.npz
    PYTHONPATH=src .venv/bin/python benchmarks/fold_resolution.py table /tmp/full.npz \\
        --reps bins6,bins12,bins24,full,half0,stored

``collect`` runs the demo's collection (corpus ``demo-s1000-n400``, the shipped model,
``K = 5``) with random-label groupings for chance seeds 0-3 (``chance_grapheme``,
``chance_grapheme_s1``, ...); ``--stored`` keeps the per-fold sums in the default layout
(central 20 %, 150 MB, 10 min) instead of full resolution. ``table`` prints one JSON line per (representation, kind,
grouping, layer) and markdown tables; ``--kind activation`` for activation profiles,
``--mask`` where the GradNAP masks come from (``pair``, the default, docs/method.md §6;
``pair_shared``, ``crossfit``, ``crossfit_shared``; ``same_fold``, the earliest
definition), ``--groupings`` to choose groupings (default: the demo's four).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from gradnap.analysis.crossval import (
    MASKS,
    cluster_score,
    fold_profiles_from_sums,
    score_difference,
)
from gradnap.defaults import CROSSVAL_MASK
from gradnap.method.accumulators import FoldLayout, decode_fold_arrays, encode_fold_arrays

#: Maps a window width to the bin of each column, ``-1`` = dropped.
Rep = Callable[[int], np.ndarray]
DEMO_GROUPINGS = ("grapheme", "phoneme", "chance_grapheme", "chance_phoneme")


def representation(name: str) -> Rep:
    """The column map of a representation name (see the module doc)."""
    if name == "full":
        return FoldLayout(0, 1.0).columns
    if name == "stored":
        return FoldLayout().columns
    if name.startswith("bins"):
        return FoldLayout(int(name[4:]), 0.0).columns
    if name.startswith("half"):
        return FoldLayout(int(name[4:]), 0.5).columns
    if name.startswith("span"):
        f, n = name[4:].split("_")
        return FoldLayout(int(n), float(f)).columns
    raise SystemExit(f"unknown representation {name!r}")


def time_span(t: float, width: int, jump: float) -> np.ndarray:
    """``timeT``: ``2 round(T / jump) + 1`` columns (``+-T`` input frames) at full
    resolution, the rest dropped."""
    return FoldLayout(0, min(1.0, (2 * round(t / jump) + 1) / width)).columns(width)


def pool(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sum the last axis of ``a`` into bins ``index`` (``-1`` dropped)."""
    keep = index >= 0
    m = np.zeros((index.size, int(index.max()) + 1))
    m[np.flatnonzero(keep), index[keep]] = 1.0
    return a @ m


def f16_means(act: np.ndarray, grad: np.ndarray, cnt: np.ndarray):
    """The sums through the result file's float16 codec (:func:`encode_fold_arrays`)."""
    keys = {"sums/g/L/fold_act": act, "sums/g/L/fold_grad": grad, "sums/g/L/fold_count": cnt}
    back = decode_fold_arrays(encode_fold_arrays(keys))
    return back["sums/g/L/fold_act"], back["sums/g/L/fold_grad"], cnt


def scores(result, rep_name: str, groupings, kind: str, mask: str = CROSSVAL_MASK) -> dict:
    f16 = rep_name.endswith("@f16")
    base = rep_name.removesuffix("@f16")
    rep = None if base.startswith("time") else representation(base)
    out: dict = {}
    for layer in result.layers:
        w = result.layer_info(layer).width
        if rep is None:
            index = time_span(float(base[4:]), w, float(result.layer_info(layer).jump))
        else:
            index = rep(w)
        for g in groupings:
            labels = result.labels(g)
            kept = set(result.groups(g))
            keep = sorted(
                (i for i, lab in enumerate(labels) if lab in kept), key=lambda i: labels[i]
            )
            act, grad, cnt = (
                pool(result.fold_sums(layer, g, f).astype(np.float64), index)
                for f in ("act_sum", "grad_sum", "count")
            )
            cnt = np.rint(cnt).astype(np.int64)
            if f16:
                act, grad, cnt = f16_means(act, grad, cnt)
            fp = fold_profiles_from_sums(labels, act, grad, cnt, keep, kind, mask)
            out[g, layer] = cluster_score(fp)
    return out


def table(args) -> None:
    from gradnap.method.result import Result

    t = time.perf_counter()
    result = Result.load(args.result)
    groupings = args.groupings.split(",")
    print(
        f"# loaded in {time.perf_counter() - t:.0f} s; widths "
        + ", ".join(f"{la}={result.layer_info(la).width}" for la in result.layers),
        file=sys.stderr,
    )
    for rep in args.reps.split(","):
        t = time.perf_counter()
        s = scores(result, rep, groupings, args.kind, args.mask)
        for (g, layer), cs in s.items():
            print(
                json.dumps(
                    {
                        "rep": rep,
                        "kind": args.kind,
                        "mask": args.mask,
                        "grouping": g,
                        "layer": layer,
                        "score": cs.score,
                        "se": cs.uncertainty,
                        "jackknife": list(cs.jackknife),
                    }
                ),
                flush=True,
            )
        rows = [
            f"\n### {rep} ({args.kind}, mask {args.mask}, {time.perf_counter() - t:.0f} s)\n",
            "| layer | " + " | ".join(groupings) + " | grapheme − phoneme |",
            "|---" * (len(groupings) + 2) + "|",
        ]
        for layer in result.layers:
            cells = [f"{s[g, layer].score:+.3f} ± {s[g, layer].uncertainty:.3f}" for g in groupings]
            if "grapheme" in groupings and "phoneme" in groupings:
                d = score_difference(s["grapheme", layer], s["phoneme", layer])
                mark = "**" if abs(d.difference) > 2 * d.uncertainty else ""
                cells.append(f"{mark}{d.difference:+.3f} ± {d.uncertainty:.3f}{mark}")
            else:
                cells.append("")
            rows.append(f"| {layer} | " + " | ".join(cells) + " |")
        print("\n".join(rows), flush=True)


def collect(args) -> None:
    import logging

    from gradnap.asr.modelfile import load_model
    from gradnap.corpus import read_corpus
    from gradnap.defaults import CACHE_DIR, DEMO
    from gradnap.method.run import GradNAP
    from gradnap.report.demo import chance_groupings

    logging.basicConfig(level=logging.INFO)
    corpus = read_corpus(CACHE_DIR / "corpora" / f"demo-s{DEMO.seed}-n{DEMO.utterances}")
    model = load_model(DEMO.model)
    groups = ["grapheme", "phoneme", *chance_groupings(corpus, seed=DEMO.chance_seed)]
    for s in (1, 2, 3):
        groups += [
            dataclasses.replace(g, name=f"{g.name}_s{s}") for g in chance_groupings(corpus, seed=s)
        ]
    layout = {} if args.stored else {"fold_bins": 0, "fold_span": 1.0}
    nap = GradNAP(model, groupings=groups, min_count=DEMO.min_count, folds=DEMO.folds, **layout)
    nap.model_source = DEMO.model
    nap.collect(corpus, progress=False).save(args.out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(required=True)
    c = sub.add_parser("collect")
    c.add_argument("out")
    c.add_argument(
        "--stored", action="store_true", help="the stored per-fold layout, not full resolution"
    )
    c.set_defaults(func=collect)
    t = sub.add_parser("table")
    t.add_argument("result")
    t.add_argument("--reps", default="bins6,bins12,bins24,full,half0")
    t.add_argument("--kind", default="gradnap")
    t.add_argument("--mask", default=CROSSVAL_MASK, choices=MASKS)
    t.add_argument("--groupings", default=",".join(DEMO_GROUPINGS))
    t.set_defaults(func=table)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
