"""Group-size bias of cross-validated GradNAP distances, per mask (docs/method.md §6).

Synthetic per-fold sums of groups of the sizes ``SIZES`` of tests/test_crossval.py (4 ..
3000 examples), ``K = 5`` folds (examples assigned by ``fold_of`` as in a collection),
profiles of ``C x W`` values. Per example the activation is ``N(±1, 1)`` (group ``i``:
``+1`` for odd ``i``, ``−1`` for even ``i``: two clusters of groups whose members have
**identical** true activation means, different from the dataset mean) and the
sensitivity ``N(g_i, σ²)``:

- ``within``: mean cross-validated distance between groups of the same cluster (true
  activation and gradient identical, sizes different): 0 for an unbiased distance;
- ``between``: mean distance between groups of different clusters (the signal);
- ``ratio``: within / between;
- ``gradient only``: the same two clusters of activations, but among the ``+1`` groups
  the true gradient ``g_i`` is 3 instead of 1 in half of the elements for every second
  one: the mean distance between ``+1`` groups of different gradients, what a distance
  makes of groups that differ in their gradient alone (pair masks: 0 by definition);
- ``null score``: the cluster score of noise groups (all activations ``N(0, 1)``), mean
  over the seeds ± its standard error, and the mean jackknife SE.

Every value is the mean over ``--seeds`` draws ± the standard error of that mean::

    PYTHONPATH=src .venv/bin/python benchmarks/size_bias.py --seeds 32

``--result PATH`` instead scores a result file per mask (``--masks``): the cluster score ±
jackknife SE per layer of every grouping, grapheme − phoneme, and over all random-label
groupings (``chance…``) × layers their mean, RMS, median SE and how many lie beyond
2 SE (the demo with four chance seeds: ``benchmarks/fold_resolution.py collect --stored``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from gradnap.analysis.crossval import (
    MASKS,
    cluster_score,
    cluster_score_table,
    crossval_distances,
    fold_profiles_from_sums,
    score_difference,
)
from gradnap.method.accumulators import fold_of

SIZES = [4, 7, 12, 30, 60, 150, 400, 1000, 3000, 5, 9, 20, 80, 250, 2000]
K, C, W = 5, 8, 3


def sums(rng, act_mean, grad_mean, grad_noise: float):
    """Per-fold sums ``(G, K, C, W)``, counts ``(G, K, W)`` of groups of ``SIZES``;
    ``act_mean``, ``grad_mean``: ``(G, C, W)`` true means."""
    g = len(SIZES)
    act = np.zeros((g, K, C, W))
    grad = np.zeros((g, K, C, W))
    cnt = np.zeros((g, K, W), dtype=np.int64)
    for i, n in enumerate(SIZES):
        folds = np.array([fold_of(f"g{i}-u{j}", K) for j in range(n)])
        x = act_mean[i] + rng.standard_normal((n, C, W))
        s = grad_mean[i] + grad_noise * rng.standard_normal((n, C, W))
        for f in range(K):
            act[i, f] = x[folds == f].sum(0)
            grad[i, f] = s[folds == f].sum(0)
            cnt[i, f] = (folds == f).sum()
    return act, grad, cnt


def _ms(values) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    return [float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))]


def on_result(path: str, masks: list[str]) -> dict:
    """Score tables of a result file per mask (see the module doc)."""
    from gradnap.method.result import Result

    result = Result.load(path)
    chance = [g for g in result.groupings if g.startswith("chance")]
    out: dict = {}
    for mask in masks:
        t = time.perf_counter()
        table = cluster_score_table(result, result.groupings, mask=mask)
        took = time.perf_counter() - t
        scores = {
            g: {la: (s.score, s.uncertainty) for la, s in per.items()}
            for g, per in table.scores.items()
        }
        print(f"\n### mask {mask} ({took:.1f} s)\n")
        print("| layer | " + " | ".join(result.groupings) + " | grapheme − phoneme |")
        print("|---" * (len(result.groupings) + 2) + "|")
        for layer in result.layers:
            cells = [f"{v:+.3f} ± {se:.3f}" for v, se in (scores[g][layer] for g in scores)]
            if {"grapheme", "phoneme"} <= set(scores):
                d = score_difference(
                    table.scores["grapheme"][layer], table.scores["phoneme"][layer]
                )
                cells.append(f"{d.difference:+.3f} ± {d.uncertainty:.3f}")
            print(f"| {layer} | " + " | ".join(cells) + " |")
        v = np.array([scores[g][la] for g in chance for la in result.layers])
        if v.size:
            print(
                f"random labels ({len(v)} scores): mean {v[:, 0].mean():+.3f}, RMS "
                f"{np.sqrt((v[:, 0] ** 2).mean()):.3f}, median SE {np.median(v[:, 1]):.3f}, "
                f"beyond 2 SE {(np.abs(v[:, 0]) > 2 * v[:, 1]).sum()}"
            )
        out[mask] = {"seconds": took, "scores": scores}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--grad-noise", default="0.5,1,2", help="sensitivity noise σ, comma-separated")
    p.add_argument("--masks", default=",".join(MASKS))
    p.add_argument("--json", help="write the numbers here")
    p.add_argument("--result", help="score this result file instead (see the module doc)")
    args = p.parse_args()
    masks = args.masks.split(",")
    if args.result:
        out = on_result(args.result, masks)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)
        return
    g = len(SIZES)
    labels = [f"g{i:02d}" for i in range(g)]
    odd = np.arange(g) % 2
    same = np.equal.outer(odd, odd) & ~np.eye(g, dtype=bool)
    other = ~np.equal.outer(odd, odd)
    clusters = np.where(odd, 1.0, -1.0)[:, None, None] * np.ones((g, C, W))
    ones = np.ones((g, C, W))
    gradient = ones.copy()
    gradient[1::4, : C // 2] = 3.0  # groups 1, 5, 9, 13 of the +1 cluster (odd groups)
    steep = np.arange(g) % 4 == 1
    grad_pairs = np.outer(odd, odd).astype(bool) & np.not_equal.outer(steep, steep)
    out: dict = {}
    print(
        f"{'σ':>4} {'mask':16} {'within':>17} {'between':>17} {'ratio':>7} "
        f"{'gradient only':>17} {'null score':>17} {'jk SE':>6}"
    )
    for sn in (float(v) for v in args.grad_noise.split(",")):
        got: dict[str, dict[str, list[float]]] = {
            m: {"within": [], "between": [], "gradient_only": [], "score": [], "se": []}
            for m in masks
        }
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            two = sums(rng, clusters, ones, sn)
            grad_only = sums(rng, clusters, gradient, sn)
            null = sums(rng, np.zeros((g, C, W)), ones, sn)
            for m in masks:
                cv = crossval_distances(fold_profiles_from_sums(labels, *two, mask=m)).crossval
                got[m]["within"].append(np.nanmean(cv[same]))
                got[m]["between"].append(np.nanmean(cv[other]))
                cv = crossval_distances(
                    fold_profiles_from_sums(labels, *grad_only, mask=m)
                ).crossval
                got[m]["gradient_only"].append(np.nanmean(cv[grad_pairs]))
                s = cluster_score(fold_profiles_from_sums(labels, *null, mask=m))
                got[m]["score"].append(s.score)
                got[m]["se"].append(s.uncertainty)
        out[str(sn)] = {}
        for m, v in got.items():
            row = {k: _ms(x) for k, x in v.items()}
            row["ratio"] = row["within"][0] / row["between"][0]
            out[str(sn)][m] = row

            def pm(k, row=row):
                return f"{row[k][0]:+.4f} ± {row[k][1]:.4f}"

            print(
                f"{sn:4g} {m:16} {pm('within'):>17} {pm('between'):>17} {row['ratio']:7.3f} "
                f"{pm('gradient_only'):>17} {pm('score'):>17} {row['se'][0]:6.3f}"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
