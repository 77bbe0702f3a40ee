"""Coverage of the cluster score's delete-one-fold jackknife SE (docs/method.md §6).

Synthetic per-fold sums of ``G`` groups with skewed sizes (like graphemes: a few large
groups, many small ones), ``K = 5`` folds, profiles of ``C x W`` values; examples are
i.i.d. Gaussian, activations ``N(mu_g, 1)``, sensitivities ``N(1, 0.3)``:

- ``null``: every group has the same mean: the score's expectation is 0;
- ``planted``: the groups fall into two clusters whose means differ by ``--effect``.

For each of ``--seeds`` draws: score and jackknife SE (``cluster_score``). Reports per
scenario and kind the fraction of draws with ``|score − target| > q · SE`` for ``q = 2``
(the old rule) and ``q = t_{0.975, K−1}`` (2.776 for ``K = 5``), where the target is 0
under the null and the mean score over all draws when planted (the score's expectation,
estimated); and the fraction with ``score > q · SE`` (called "above chance").
Nominal rates for a t with ``K − 1 = 4`` d.o.f.: 11.6% beyond 2, 5% beyond 2.776::

    PYTHONPATH=src .venv/bin/python benchmarks/jackknife_coverage.py --seeds 200

``--kinds`` the profile kinds (default ``activation,gradnap``), ``--mask`` the GradNAP
masks (docs/method.md §6; default ``pair``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats

from gradnap.analysis.crossval import MASKS, cluster_score, fold_profiles_from_sums
from gradnap.defaults import CROSSVAL_MASK


def sums(rng, sizes, k, c, w, offsets):
    """Per-fold sums ``(G, K, C, W)`` and counts ``(G, K, W)`` of Gaussian examples."""
    g = len(sizes)
    act = np.zeros((g, k, c, w))
    grad = np.zeros((g, k, c, w))
    count = np.zeros((g, k, w), dtype=np.int64)
    for i, n in enumerate(sizes):
        per = rng.multinomial(n, np.full(k, 1.0 / k))
        for f, m in enumerate(per):
            act[i, f] = m * offsets[i] + np.sqrt(m) * rng.standard_normal((c, w))
            grad[i, f] = m * 1.0 + 0.3 * np.sqrt(m) * rng.standard_normal((c, w))
            count[i, f] = m
    return act, grad, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=200)
    p.add_argument("--groups", type=int, default=24)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--effect", type=float, default=0.15)
    p.add_argument("--kinds", default="activation,gradnap")
    p.add_argument("--mask", default=CROSSVAL_MASK, choices=MASKS, help="GradNAP masks")
    args = p.parse_args()
    k = args.folds
    q_t = float(stats.t.ppf(0.975, k - 1))
    # skewed sizes: 20 .. 3000 examples, log-uniform
    sizes = np.rint(np.geomspace(20, 3000, args.groups)).astype(int)
    labels = [f"g{i:02d}" for i in range(args.groups)]
    rows = []
    for scenario in ("null", "planted"):
        for kind in args.kinds.split(","):
            vals = []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                off = np.zeros((args.groups, args.channels, args.width))
                if scenario == "planted":
                    pattern = np.random.default_rng(10_000).standard_normal(off.shape[1:])
                    off[::2] += args.effect * pattern  # two clusters: even and odd groups
                fp = fold_profiles_from_sums(
                    labels,
                    *sums(rng, sizes, k, args.channels, args.width, off),
                    kind=kind,
                    mask=args.mask,
                )
                s = cluster_score(fp)
                vals.append((s.score, s.uncertainty))
            v = np.array(vals)
            score, se = v[:, 0], v[:, 1]
            target = 0.0 if scenario == "null" else float(score.mean())
            row = {
                "scenario": scenario,
                "kind": kind,
                "mask": args.mask if kind == "gradnap" else None,
                "seeds": args.seeds,
                "mean_score": float(score.mean()),
                "sd_score": float(score.std(ddof=1)),
                "mean_se": float(se.mean()),
                "rms_se": float(np.sqrt((se**2).mean())),
                "miss_2se": float((np.abs(score - target) > 2 * se).mean()),
                "miss_t": float((np.abs(score - target) > q_t * se).mean()),
                "above_2se": float((score > 2 * se).mean()),
                "above_t": float((score > q_t * se).mean()),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\nnominal (t, {k - 1} d.o.f.): beyond 2 SE "
        f"{2 * stats.t.sf(2, k - 1):.3f}, beyond {q_t:.3f} SE 0.050"
    )
    print(
        "| scenario | kind | mean score | sd of score | rms SE | beyond 2 SE | beyond t·SE | above 2 SE | above t·SE |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['kind']} | {r['mean_score']:+.3f} | {r['sd_score']:.3f} | "
            f"{r['rms_se']:.3f} | {r['miss_2se']:.1%} | {r['miss_t']:.1%} | "
            f"{r['above_2se']:.1%} | {r['above_t']:.1%} |"
        )


if __name__ == "__main__":
    main()
