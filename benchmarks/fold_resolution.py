"""Cross-validated cluster score vs the time resolution of the per-fold sums.

Works on a result collected once with **full-resolution** per-fold sums (``fold_bins``
at least the widest window, so every bin is one column) and re-represents the per-fold
sums afterwards, in the analysis: each representation maps a layer's ``W`` window columns
to bins (a column may be dropped), the sums are pooled into them and the score table of
docs/method.md §6 is computed from the pooled sums (``cluster_score``,
``score_difference``). Representations (``--reps``):

- ``binsN``: :func:`gradnap.method.accumulators.fold_bins` ``(W, N)`` (``bins6`` is the
  format-3 default);
- ``full``: one bin per column;
- ``halfN``: full resolution for the central half of the window (offsets
  ``-W//4 .. W//4``), each side outside pooled into ``N`` bins (``half0``: dropped);
- ``stored``: the representation this gradnap stores (``fold_span`` of the defaults);
- ``<rep>@f16``: the same, with the per-fold *means* rounded to float16 (the counts
  exact), to measure the error of float16 storage.

Collect the study result (about 2 GB in memory, 0.9 GB on disk; 10-20 min on 2 busy
cores) and print the tables::

    PYTHONPATH=src .venv/bin/python benchmarks/fold_resolution.py collect /tmp/full.npz
    PYTHONPATH=src .venv/bin/python benchmarks/fold_resolution.py table /tmp/full.npz \\
        --reps bins6,bins12,bins24,full,half0,stored

``collect`` runs the demo's collection (corpus ``demo-s1000-n400``, the shipped model,
``K = 5``) with random-label groupings for chance seeds 0-3 (``chance_grapheme``,
``chance_grapheme_s1``, ...). ``table`` prints one JSON line per (representation, kind,
grouping, layer) and markdown tables; ``--kind activation`` for activation profiles,
``--groupings`` to choose groupings (default: the demo's four).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable

import numpy as np

from gradnap.analysis.crossval import cluster_score, fold_profiles_from_sums, score_difference
from gradnap.method.accumulators import fold_bins

#: Maps a window width to the bin of each column, ``-1`` = dropped.
Rep = Callable[[int], np.ndarray]
DEMO_GROUPINGS = ("grapheme", "phoneme", "chance_grapheme", "chance_phoneme")


def half(width: int, side_bins: int) -> np.ndarray:
    """Full resolution for offsets ``-W//4 .. W//4``, ``side_bins`` bins per side outside
    (0: dropped)."""
    off = np.arange(width) - width // 2
    q = width // 4
    inner = np.abs(off) <= q
    out = np.full(width, -1, dtype=np.int64)
    n_in = int(inner.sum())
    left, right = off < -q, off > q
    nb = side_bins
    if nb:
        lo = np.flatnonzero(left)
        if lo.size:
            out[lo] = np.arange(lo.size) * nb // lo.size
    out[inner] = (nb if left.any() and nb else 0) + np.arange(n_in)
    if nb:
        hi = np.flatnonzero(right)
        if hi.size:
            out[hi] = out[inner].max() + 1 + np.arange(hi.size) * nb // hi.size
    return out


def representation(name: str) -> Rep:
    if name == "full":
        return lambda w: np.arange(w, dtype=np.int64)
    if name.startswith("bins"):
        n = int(name[4:])
        return lambda w: fold_bins(w, n)
    if name.startswith("half"):
        n = int(name[4:])
        return lambda w: half(w, n)
    if name == "stored":
        from gradnap.method.accumulators import fold_columns

        return fold_columns
    raise SystemExit(f"unknown representation {name!r}")


def pool(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Sum the last axis of ``a`` into bins ``index`` (``-1`` dropped)."""
    keep = index >= 0
    m = np.zeros((index.size, int(index.max()) + 1))
    m[np.flatnonzero(keep), index[keep]] = 1.0
    return a @ m


def f16_means(act: np.ndarray, grad: np.ndarray, cnt: np.ndarray):
    """The sums as float16 means times the exact counts."""
    c = cnt[..., None, :].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = [
            np.where(c > 0, np.nan_to_num(s / c).astype(np.float16).astype(np.float64) * c, 0.0)
            for s in (act, grad)
        ]
    return out[0], out[1], cnt


def scores(result, rep_name: str, groupings, kind: str) -> dict:
    f16 = rep_name.endswith("@f16")
    rep = representation(rep_name.removesuffix("@f16"))
    out: dict = {}
    for layer in result.layers:
        w = result.layer_info(layer).width
        index = rep(w)
        for g in groupings:
            labels = result.labels(g)
            kept = set(result.groups(g))
            keep = sorted((i for i, lab in enumerate(labels) if lab in kept), key=lambda i: labels[i])
            act, grad, cnt = (
                pool(result.fold_sums(layer, g, f).astype(np.float64), index)
                for f in ("act_sum", "grad_sum", "count")
            )
            cnt = np.rint(cnt).astype(np.int64)
            if f16:
                act, grad, cnt = f16_means(act, grad, cnt)
            fp = fold_profiles_from_sums(labels, act, grad, cnt, keep, kind)
            out[g, layer] = cluster_score(fp)
    return out


def table(args) -> None:
    from gradnap.method.result import Result

    t = time.perf_counter()
    result = Result.load(args.result)
    groupings = args.groupings.split(",")
    print(f"# loaded in {time.perf_counter() - t:.0f} s; widths "
          + ", ".join(f"{la}={result.layer_info(la).width}" for la in result.layers),
          file=sys.stderr)
    for rep in args.reps.split(","):
        t = time.perf_counter()
        s = scores(result, rep, groupings, args.kind)
        for (g, layer), cs in s.items():
            print(json.dumps({"rep": rep, "kind": args.kind, "grouping": g, "layer": layer,
                              "score": cs.score, "se": cs.uncertainty,
                              "jackknife": list(cs.jackknife)}), flush=True)
        rows = [f"\n### {rep} ({args.kind}, {time.perf_counter() - t:.0f} s)\n",
                "| layer | " + " | ".join(groupings) + " | grapheme − phoneme |",
                "|---" * (len(groupings) + 2) + "|"]
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
        groups += [dataclasses.replace(g, name=f"{g.name}_s{s}")
                   for g in chance_groupings(corpus, seed=s)]
    nap = GradNAP(model, groupings=groups, min_count=DEMO.min_count, folds=DEMO.folds,
                  fold_bins=100_000)
    nap.model_source = DEMO.model
    nap.collect(corpus, progress=False).save(args.out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(required=True)
    c = sub.add_parser("collect")
    c.add_argument("out")
    c.set_defaults(func=collect)
    t = sub.add_parser("table")
    t.add_argument("result")
    t.add_argument("--reps", default="bins6,bins12,bins24,full,half0")
    t.add_argument("--kind", default="gradnap")
    t.add_argument("--groupings", default=",".join(DEMO_GROUPINGS))
    t.set_defaults(func=table)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
