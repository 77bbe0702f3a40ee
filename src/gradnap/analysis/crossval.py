"""Cross-validated distances and a cluster score whose chance value is 0 (docs/method.md §6).

Works on the per-fold sums of a result (format version 2, ``Result.fold_sums``):

- :func:`fold_profiles`: the per-fold pieces of every group's profile: the activation
  deviation ``Ā^i − M^i`` of fold ``i`` (``M^i`` the mean of fold ``i``) and, for
  GradNAPs, the per-fold sums the masks come from.
- :func:`crossval_distances`: ``d(a, b) = mean over fold pairs i≠j of
  (P_a^i − P_b^i)·(P_a^j − P_b^j) / D``, the plain squared distance of the total profiles
  and the signal share (mean cross-validated / mean plain distance). For GradNAPs the
  masks come from folds other than the pair ``(i, j)``, so the factors are independent
  and no fold's activations are correlated with their mask. By default
  (``mask="pair"``) both groups of a distance share **one pair mask**
  ``m_ab = (m_a + m_b) / 2`` (``m = |Ḡ| / max|Ḡ|``): ``P_a^i − P_b^i`` is
  ``(Ā_a^i − Ā_b^i) ⊙ m_ab^k`` and ``P_a^j − P_b^j`` the same with fold ``l``, ``i, j, k,
  l`` all different, averaged over ``(k, l)``; the expectation is 0 whenever the two
  activation means are equal, whatever the group sizes (a per-group mask's expectation
  depends on the group size). ``mask="crossfit"`` masks each group by its own mask of
  fold ``k`` (``l``): exactly 0 for random labels, but identical groups of different
  sizes sit apart; ``"pair_shared"``, ``"crossfit_shared"``: one mask pooled over the
  other folds for both factors (zero-safe, inflated by mask noise for groups that
  differ); ``"same_fold"``: each profile masked by its own fold (the earliest
  definition, biased for random groups of different sizes).
- :func:`cluster_score`: clusters chosen on some folds, scored with cross-validated
  distances of the other folds; uncertainty from a delete-one-fold jackknife.
- :func:`score_difference`: the difference of two scores, jackknifed over the same
  delete-one-fold replicates.
- :func:`cluster_score_table`: the score per grouping and layer (like ``silhouette_table``).
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from threadpoolctl import threadpool_limits

from gradnap.defaults import CLUSTER_PERCENTILES, CROSSVAL_MASK
from gradnap.errors import GradnapError

__all__ = [
    "ClusterScore",
    "CrossvalDistances",
    "ScoreDifference",
    "FoldProfiles",
    "cluster_score",
    "cluster_score_table",
    "crossval_distances",
    "fold_profiles",
    "pair_products",
    "score_difference",
]

log = logging.getLogger(__name__)
_F = TypeVar("_F", bound=Callable[..., Any])

#: Profile kinds with per-fold estimates (NAP sums are totals only).
FOLD_KINDS = ("gradnap", "activation", "gradient")
#: Where the mask of a per-fold GradNAP comes from (docs/method.md §6).
MASKS = ("pair", "pair_shared", "crossfit", "crossfit_shared", "same_fold")
#: Masks shared by the two groups a distance compares: ``(m_a + m_b) / 2``.
PAIR_MASKS = ("pair", "pair_shared")
NO_FOLDS = (
    "this result has no folds (format version 1, or collected with folds=1); cross-validated "
    "analyses need K >= 3 folds: collect again with gradnap >= 0.3 (folds=5 by default)"
)


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with BLAS limited to one thread: a multi-threaded BLAS call on the small
    matrices of :func:`_gram` costs 100x more on a busy machine (threads spinning) than
    numpy's own loop, a single-threaded one 5x less."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return cast(_F, run)


def _means(total: np.ndarray, count: np.ndarray, fill: Any) -> np.ndarray:
    cnt = count[..., None, :].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / cnt
    return np.where(cnt > 0, mean, fill)


def profiles_from_sums(
    act_sum: np.ndarray, grad_sum: np.ndarray, count: np.ndarray, kind: str = "gradnap"
) -> np.ndarray:
    """Profiles ``(G, C, W)`` of every group from sums ``(G, C, W)``, counts ``(G, W)``.

    ``M`` is the mean over all rows given (every group of the grouping); the GradNAP is
    ``(Ā − M) ⊙ |Ḡ| / max|Ḡ|`` per group (docs/method.md §1.4), ``"activation"`` is
    ``Ā − M`` and ``"gradient"`` is ``Ḡ``.
    """
    if kind not in FOLD_KINDS:
        raise GradnapError(f"kind {kind!r}: per-fold profiles exist for {', '.join(FOLD_KINDS)}")
    tot = count.sum(axis=0)
    mean = _means(act_sum.sum(axis=0), tot, 0.0)
    if kind == "gradient":
        return _means(grad_sum, count, 0.0)
    a = _means(act_sum, count, mean) - mean
    if kind == "activation":
        return a
    return a * _mask(grad_sum, count)


def _mask(grad_sum: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``|Ḡ| / max|Ḡ|`` per group ``(G, C, W)`` from sums ``(G, C, W)``, counts ``(G, W)``
    (0 for a group without sensitivity)."""
    g = np.abs(_means(grad_sum, count, 0.0))
    peak = g.reshape(g.shape[0], -1).max(axis=1) if g.size else np.zeros(g.shape[0])
    scale = np.where(peak > 0, 1.0 / np.where(peak > 0, peak, 1.0), 0.0)
    return g * scale[:, None, None]


@dataclass(frozen=True)
class FoldProfiles:
    """Per-fold profiles of the kept groups of one grouping in one layer."""

    groups: tuple[str, ...]
    #: ``(K, G, D)`` flattened profiles per fold, each from its own fold's sums alone (for
    #: GradNAPs with the mask of the same fold; the cross-validated measures of
    #: cross-fitted GradNAPs use :meth:`masked` instead).
    profiles: np.ndarray
    #: ``(K, G)`` the group has examples in the fold.
    present: np.ndarray
    #: ``(G, D)`` profiles of the totals (the usual profiles).
    total: np.ndarray
    #: ``(K, G_all, ...)`` the per-fold sums of all groups (for pooled selections).
    sums: tuple[np.ndarray, np.ndarray, np.ndarray]
    #: Indices of the kept groups among all groups.
    rows: np.ndarray
    kind: str = "gradnap"
    #: Where the GradNAP masks of a fold pair come from (:data:`MASKS`,
    #: :meth:`mask_folds`; other kinds have no mask).
    mask: str = CROSSVAL_MASK
    #: ``(K, G, D)`` activation deviations ``Ā^i − M^i`` per fold (cross-fitted GradNAPs;
    #: ``None`` otherwise).
    deviations: np.ndarray | None = None

    @property
    def folds(self) -> int:
        return int(self.profiles.shape[0])

    @property
    def crossfit(self) -> bool:
        """The masks of a fold pair's profiles come from other folds."""
        return self.deviations is not None

    @property
    def pair(self) -> bool:
        """Both groups of a distance are masked with one pair mask ``(m_a + m_b) / 2``."""
        return self.crossfit and self.mask in PAIR_MASKS

    def mask_folds(
        self, i: int, j: int, exclude: Iterable[int] = ()
    ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """The folds the masks of ``P^i`` and ``P^j`` of fold pair ``(i, j)`` come from, one
        ``(folds of P^i's mask, folds of P^j's mask)`` per term the pair's product averages
        (docs/method.md §6), among the folds other than ``i``, ``j`` and ``exclude`` (a
        jackknife's left-out fold): ``"pair"``, ``"crossfit"``: every ordered pair of two
        different single folds ``(k, l)`` (the shared pooled mask when fewer than 2 are
        left, K = 3); ``"pair_shared"``, ``"crossfit_shared"``: one mask pooled over all of
        them for both."""
        rest = tuple(f for f in range(self.folds) if f not in (i, j, *exclude))
        if self.mask in ("pair", "crossfit") and len(rest) >= 2:
            return [((k,), (m,)) for k, m in itertools.permutations(rest, 2)]
        return [(rest, rest)]

    def masked(
        self, fold: int, mask_folds: Sequence[int], masks: np.ndarray | None = None
    ) -> np.ndarray:
        """``(G, D)``: ``(Ā^fold − M^fold) ⊙ |Ḡ| / max|Ḡ|`` with ``Ḡ`` pooled over
        ``mask_folds`` (cross-fitted GradNAPs only; ``masks``: :meth:`masks` of
        ``mask_folds`` if already computed)."""
        if self.deviations is None:
            raise GradnapError(f"masked(): profiles of kind {self.kind!r}, mask {self.mask!r}")
        return self.deviations[fold] * (self.masks(mask_folds) if masks is None else masks)

    def masks(self, folds: Sequence[int]) -> np.ndarray:
        """``(G, D)``: every kept group's mask ``|Ḡ| / max|Ḡ|`` with ``Ḡ`` pooled over
        ``folds``."""
        _, grad, count = self.sums
        f = list(folds)
        m = _mask(grad[f].sum(axis=0), count[f].sum(axis=0))[self.rows]
        return m.reshape(len(self.rows), -1)

    def plain(self, folds: Sequence[int]) -> np.ndarray:
        """``(G, G)`` plain squared distances per element of the profiles pooled over
        ``folds``; with pair masks ``‖(Ā_a − Ā_b) ⊙ (m_a + m_b) / 2‖² / D``, all pooled."""
        if not self.pair:
            return _plain(self.pooled(folds))
        act, grad, count = (s[list(folds)].sum(axis=0) for s in self.sums)
        x = profiles_from_sums(act, grad, count, "activation")[self.rows]
        x = x.reshape(len(self.rows), -1)
        d = _pair_weighted(x, x, *_pair_weights([self.masks(folds)], shared=True))
        return np.maximum(d, 0.0) / max(x.shape[1], 1)

    def pooled(self, folds: Sequence[int]) -> np.ndarray:
        """``(G, D)`` profiles from the sums of ``folds`` added up."""
        act, grad, count = (s[list(folds)].sum(axis=0) for s in self.sums)
        return profiles_from_sums(act, grad, count, self.kind)[self.rows].reshape(
            len(self.rows), -1
        )


def fold_profiles_from_sums(
    groups: Sequence[str],
    act_sum: np.ndarray,
    grad_sum: np.ndarray,
    count: np.ndarray,
    keep: Sequence[int] | None = None,
    kind: str = "gradnap",
    mask: str = CROSSVAL_MASK,
) -> FoldProfiles:
    """:class:`FoldProfiles` from per-fold sums ``(G, K, C, W)``, counts ``(G, K, W)``;
    ``keep``: indices of the groups to keep (default all); ``mask``: where the GradNAP masks
    of a fold pair come from (docs/method.md §6): ``"pair"`` (default; one mask for both
    groups, the mean of theirs, from folds other than the pair, a different one for each
    side), ``"pair_shared"`` (the same pooled over the other folds for both sides),
    ``"crossfit"``, ``"crossfit_shared"`` (likewise, each group with its own mask) or
    ``"same_fold"`` (each profile's own fold)."""
    if mask not in MASKS:
        raise GradnapError(f"mask {mask!r}: choose one of {', '.join(MASKS)}")
    act = np.moveaxis(act_sum, 1, 0)
    grad = np.moveaxis(grad_sum, 1, 0)
    cnt = np.moveaxis(count, 1, 0)
    rows = np.arange(act.shape[1]) if keep is None else np.asarray(keep, dtype=np.int64)
    k = act.shape[0]
    per = np.stack([profiles_from_sums(act[f], grad[f], cnt[f], kind)[rows] for f in range(k)])
    present = cnt[:, rows].sum(axis=2) > 0
    total = profiles_from_sums(act.sum(0), grad.sum(0), cnt.sum(0), kind)[rows]
    dev = None
    if kind == "gradnap" and mask != "same_fold":
        dev = np.stack(
            [profiles_from_sums(act[f], grad[f], cnt[f], "activation")[rows] for f in range(k)]
        ).reshape(k, len(rows), -1)
    return FoldProfiles(
        tuple(groups[i] for i in rows),
        per.reshape(k, len(rows), -1),
        present,
        total.reshape(len(rows), -1),
        (act, grad, cnt),
        rows,
        kind,
        mask,
        dev,
    )


def fold_profiles(
    result: Any,
    layer: str,
    grouping: str,
    kind: str = "gradnap",
    min_count: int | None = None,
    mask: str = CROSSVAL_MASK,
) -> FoldProfiles:
    """Per-fold profiles of the groups of ``grouping`` with at least ``min_count`` examples
    (sorted labels) in ``layer`` of a :class:`~gradnap.method.result.Result`; ``mask`` as
    in :func:`fold_profiles_from_sums`."""
    if result.folds < 3:
        raise GradnapError(NO_FOLDS)
    labels = result.labels(grouping)
    kept = set(result.groups(grouping, min_count))
    keep = sorted((i for i, lab in enumerate(labels) if lab in kept), key=lambda i: labels[i])
    return fold_profiles_from_sums(
        labels,
        result.fold_sums(layer, grouping, "act_sum"),
        result.fold_sums(layer, grouping, "grad_sum"),
        result.fold_sums(layer, grouping, "count"),
        keep,
        kind,
        mask,
    )


@_one_blas_thread
def pair_products(fp: FoldProfiles, exclude: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """For every fold pair ``i < j``: ``(P_a^i − P_b^i)·(P_a^j − P_b^j) / D`` as
    ``(n_pairs, G, G)`` and whether both groups have data in both folds ``(n_pairs, G, G)``.
    Cross-fitted GradNAPs: the mean of the product over the mask folds of
    :meth:`FoldProfiles.mask_folds`; with pair masks both profiles of a pair ``(a, b)`` are
    masked by ``(m_a + m_b) / 2`` (:func:`_pair_weights`). Folds in ``exclude`` are
    treated as absent (pairs with them are not ``ok``, masks leave them out: a jackknife
    replicate)."""
    k, g, d = fp.profiles.shape
    out = tuple(exclude)
    vals = np.zeros((k * (k - 1) // 2, g, g))
    ok = np.zeros(vals.shape, dtype=bool)
    masked: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    masks: dict[tuple[int, ...], np.ndarray] = {}

    def mask(folds: tuple[int, ...]) -> np.ndarray:
        if folds not in masks:
            masks[folds] = fp.masks(folds)
        return masks[folds]

    def profile(f: int, mask_folds: tuple[int, ...]) -> np.ndarray:
        if (f, mask_folds) not in masked:
            masked[f, mask_folds] = fp.masked(f, mask_folds, mask(mask_folds))
        return masked[f, mask_folds]

    for n, (i, j) in enumerate(itertools.combinations(range(k), 2)):
        if i in out or j in out:
            continue
        dev = fp.deviations
        if fp.pair and dev is not None:
            terms = fp.mask_folds(i, j, out)
            shared = len(terms) == 1  # one pooled mask, else single folds k != l
            ms = [mask(terms[0][0])] if shared else [mask(f) for f in sorted({t[0] for t in terms})]
            vals[n] = _pair_weighted(dev[i], dev[j], *_pair_weights(ms, shared)) / max(d, 1)
        else:
            if fp.crossfit:
                terms = fp.mask_folds(i, j, out)
                c = np.mean([_gram(profile(i, mi), profile(j, mj)) for mi, mj in terms], axis=0)
            else:
                c = _gram(fp.profiles[i], fp.profiles[j])
            diag = np.diag(c)
            vals[n] = (diag[:, None] + diag[None, :] - c - c.T) / max(d, 1)
        p = fp.present[i] & fp.present[j]
        ok[n] = p[:, None] & p[None, :]
    return vals, ok


def _pair_index(k: int) -> dict[tuple[int, int], int]:
    return {p: n for n, p in enumerate(itertools.combinations(range(k), 2))}


def _cv(vals: np.ndarray, ok: np.ndarray, pairs: Sequence[int]) -> np.ndarray:
    v, w = vals[list(pairs)], ok[list(pairs)].astype(np.float64)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (v * w).sum(axis=0) / n, np.nan)


def _gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` for small ``(G, D)`` matrices (callers limit BLAS to one thread:
    :func:`_one_blas_thread`)."""
    return a @ b.T


def _pair_weights(
    masks: Sequence[np.ndarray], shared: bool
) -> tuple[np.ndarray, list[tuple[float, np.ndarray]]]:
    """The per-element weight ``w_ab`` of a fold pair's product with pair masks
    ``m_ab = (m_a + m_b) / 2``, written as ``e_a + e_b + Σ_t c_t h_t,a h_t,b`` (returns
    ``e`` ``(G, D)`` and the ``(c_t, h_t)``) so that :func:`_pair_weighted` needs Gram
    matrices only. ``shared``: one mask ``m`` (``masks[0]``) for both profiles,
    ``w = m_ab²``; otherwise single-fold masks ``m^k`` of ``r >= 2`` folds, ``P^i``
    masked by ``m_ab^k`` and ``P^j`` by ``m_ab^l``, averaged over the ``r (r − 1)`` ordered
    pairs ``k ≠ l``: ``w = ((s_a + s_b)² − Σ_k (m_a^k + m_b^k)²) / (4 r (r − 1))`` with
    ``s = Σ_k m^k``."""
    if shared:
        m = masks[0]
        return m * m / 4, [(0.5, m)]
    r = len(masks)
    n = 4.0 * r * (r - 1)
    s = np.sum(masks, axis=0)
    q = np.sum([m * m for m in masks], axis=0)
    return (s * s - q) / n, [(2.0 / n, s), *((-2.0 / n, m) for m in masks)]


def _pair_weighted(
    x: np.ndarray, y: np.ndarray, e: np.ndarray, cross: Sequence[tuple[float, np.ndarray]]
) -> np.ndarray:
    """``(G, G)``: ``Σ_d (x_a − x_b)_d (y_a − y_b)_d w_ab,d`` for ``x``, ``y`` ``(G, D)`` and
    ``w_ab = e_a + e_b + Σ_t c_t h_t,a h_t,b`` (:func:`_pair_weights`), from Gram matrices
    of element-wise products (``O(G² D)`` per term, no ``(G, G, D)`` array)."""
    xy = x * y
    t = (xy * e).sum(axis=1)[:, None] - _gram(x * e, y) - _gram(y * e, x) + _gram(e, xy)
    out = t + t.T
    if cross:
        c = np.concatenate([coef * h for coef, h in cross], axis=1)
        h = np.concatenate([h for _, h in cross], axis=1)
        a = _gram(np.tile(xy, len(cross)) * c, h)
        b = _gram(np.tile(x, len(cross)) * c, np.tile(y, len(cross)) * h)
        out += a + a.T - b - b.T
    np.fill_diagonal(out, 0.0)
    return out


def _plain(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(axis=1)
    return np.maximum(sq[:, None] + sq[None, :] - 2 * _gram(x, x), 0.0) / max(x.shape[1], 1)


def _upper(m: np.ndarray) -> np.ndarray:
    return m[np.triu_indices(m.shape[0], 1)]


@dataclass(frozen=True)
class CrossvalDistances:
    """Distances between the groups of one layer (``(G, G)``, diagonal 0)."""

    groups: tuple[str, ...]
    #: Cross-validated squared distance per element (unbiased; can be negative; ``NaN``
    #: for pairs that share no two folds with data).
    crossval: np.ndarray
    #: Plain squared distance per element of the total profiles (biased upwards by noise).
    plain: np.ndarray

    @property
    def signal_share(self) -> float:
        """Mean cross-validated over mean plain squared distance (pairs ``a < b``): about
        0 when all distance is noise, 1 when none is."""
        cv, pl = _upper(self.crossval), _upper(self.plain)
        ok = np.isfinite(cv)
        if not ok.any() or pl[ok].mean() <= 0:
            return float("nan")
        return float(cv[ok].mean() / pl[ok].mean())


@_one_blas_thread
def crossval_distances(
    fp: FoldProfiles, products: tuple[np.ndarray, np.ndarray] | None = None
) -> CrossvalDistances:
    """Cross-validated and plain squared distances of :class:`FoldProfiles`
    (``products``: :func:`pair_products` of ``fp`` if already computed)."""
    vals, ok = pair_products(fp) if products is None else products
    cv = _cv(vals, ok, range(len(vals)))
    np.fill_diagonal(cv, 0.0)
    return CrossvalDistances(fp.groups, cv, fp.plain(range(fp.folds)))


@dataclass(frozen=True)
class ClusterScore:
    """Cross-validated cluster score of one grouping in one layer (docs/method.md §6)."""

    #: Mean over fold splits of (mean between-cluster − mean within-cluster
    #: cross-validated distance) / mean plain squared distance of the selection part.
    score: float
    #: Delete-one-fold jackknife standard error of ``score`` (``NaN`` when ``K < 4``).
    uncertainty: float
    #: One value per split (``NaN`` where no cut gave 2..G-1 clusters).
    per_split: tuple[float, ...]
    #: The splits: (selection folds, scoring folds).
    splits: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    n_groups: int
    n_folds: int
    #: The jackknife replicates: the score recomputed without fold ``f``, one per fold
    #: (empty when ``K < 4``); differences of scores are jackknifed over them.
    jackknife: tuple[float, ...] = ()


def _splits(folds: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``folds`` into a selection part (>= 1 fold) and a scoring part
    (>= 2 folds)."""
    out = []
    for r in range(1, len(folds) - 1):
        for sel in itertools.combinations(folds, r):
            out.append((sel, tuple(f for f in folds if f not in sel)))
    return out


@dataclass
class _Selection:
    """The clusterings chosen on one selection part: the labels of each cut with
    2 .. G−1 clusters and the normaliser (mean plain squared distance)."""

    cuts: list[np.ndarray]
    norm: float


def _select(fp: FoldProfiles, sel: Sequence[int], percentiles: Sequence[float]) -> _Selection:
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(fp.groups)
    plain = _upper(fp.plain(sel))
    norm = float(plain.mean()) if plain.size else 0.0
    if n < 3 or norm <= 0:
        return _Selection([], float("nan"))
    dist = np.sqrt(plain)
    z = linkage(dist, method="complete")
    cuts = []
    for p in percentiles:
        labels = fcluster(z, t=float(np.percentile(dist, p)), criterion="distance")
        if 2 <= len(np.unique(labels)) < n:
            cuts.append(labels)
    return _Selection(cuts, norm)


def _split_value(
    selection: _Selection,
    vals: np.ndarray,
    ok: np.ndarray,
    index: Mapping[tuple[int, int], int],
    score: Sequence[int],
) -> float:
    if not np.isfinite(selection.norm):
        return float("nan")
    cv = _cv(vals, ok, [index[p] for p in itertools.combinations(sorted(score), 2)])
    iu = np.triu_indices(cv.shape[0], 1)
    cvu = cv[iu]
    fin = np.isfinite(cvu)
    out = []
    for labels in selection.cuts:
        same = (labels[:, None] == labels[None, :])[iu]
        within, between = cvu[same & fin], cvu[~same & fin]
        if within.size == 0 or between.size == 0:
            continue
        out.append((between.mean() - within.mean()) / selection.norm)
    return float(np.mean(out)) if out else float("nan")


@_one_blas_thread
def cluster_score(
    fp: FoldProfiles,
    percentiles: Sequence[float] = CLUSTER_PERCENTILES,
    products: tuple[np.ndarray, np.ndarray] | None = None,
) -> ClusterScore:
    """Cross-validated cluster score of :class:`FoldProfiles` (docs/method.md §6).

    For every split of the ``K`` folds into a selection part ``S`` (1 .. K−2 folds) and a
    scoring part ``T`` (the rest, >= 2 folds): complete linkage on the plain distances of
    the profiles pooled over ``S``, cut at the paper's percentiles; each cut with
    2 .. G−1 clusters is scored on ``T`` as (mean between-cluster − mean within-cluster
    cross-validated distance) divided by the mean plain squared distance on ``S``; the
    split's value is the mean over its cuts and the score the mean over splits. Given all
    folds but ``i`` and ``j`` (``S`` among them, so the clusters, the normaliser and the
    cross-fitted masks), the deviations of folds ``i`` and ``j`` are independent with
    expectation 0 under random labels, so the expectation is 0 when the groups do not
    differ, whatever their sizes (with pair masks also for real groups whose activation
    means are equal). The uncertainty is the delete-one-fold jackknife
    standard error (each replicate's masks pool only its ``K − 1`` folds). ``products``:
    :func:`pair_products` of ``fp`` if already computed.
    """
    k = fp.folds
    if k < 3:
        raise GradnapError(NO_FOLDS)
    index = _pair_index(k)
    chosen: dict[tuple[int, ...], _Selection] = {}  # the jackknife reuses selection parts

    def select(sel: tuple[int, ...]) -> _Selection:
        if sel not in chosen:
            chosen[sel] = _select(fp, sel, percentiles)
        return chosen[sel]

    products_of: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
    if products is not None:
        products_of[()] = products

    def mean_over(folds: Sequence[int]) -> tuple[float, list[float], list]:
        # the cross-fitted masks of a replicate pool only its folds; other products do
        # not depend on the folds left out
        left_out = tuple(f for f in range(k) if f not in folds) if fp.crossfit else ()
        if left_out not in products_of:
            products_of[left_out] = pair_products(fp, left_out)
        vals, ok = products_of[left_out]
        splits = _splits(folds)
        per = [_split_value(select(s), vals, ok, index, t) for s, t in splits]
        fin = [v for v in per if np.isfinite(v)]
        return (float(np.mean(fin)) if fin else float("nan")), per, splits

    score, per, splits = mean_over(range(k))
    jack: tuple[float, ...] = ()
    if k >= 4:
        jack = tuple(mean_over([f for f in range(k) if f != drop])[0] for drop in range(k))
    se = _jackknife_se(jack)
    return ClusterScore(score, se, tuple(per), tuple(splits), len(fp.groups), k, jack)


def _jackknife_se(replicates: Sequence[float]) -> float:
    """Jackknife standard error ``sqrt((K−1)/K · Σ (r_f − r̄)²)`` of ``K`` delete-one
    replicates; ``NaN`` for fewer than 2 or any non-finite one."""
    r = np.asarray(replicates, dtype=np.float64)
    if r.size < 2 or not np.isfinite(r).all():
        return float("nan")
    k = r.size
    return float(np.sqrt((k - 1) / k * ((r - r.mean()) ** 2).sum()))


@dataclass(frozen=True)
class ScoreDifference:
    """``a − b`` of two cluster scores with its jackknife standard error."""

    difference: float
    #: Jackknife SE of the difference over the same delete-one-fold replicates
    #: (``NaN`` when either score has none).
    uncertainty: float


def score_difference(a: ClusterScore, b: ClusterScore) -> ScoreDifference:
    """The difference ``a − b`` of two cluster scores of the same result (e.g. graphemes and
    phonemes in one layer), its uncertainty jackknifed directly: the replicates
    ``a_f − b_f`` leave out the same fold ``f`` of both, so the correlation of the two
    scores (computed on the same utterances) is taken into account instead of adding
    their variances as if they were independent."""
    if a.n_folds != b.n_folds:
        raise GradnapError(
            f"score_difference: scores of {a.n_folds} and {b.n_folds} folds are not from one result"
        )
    same = len(a.jackknife) == len(b.jackknife)
    jack = [x - y for x, y in zip(a.jackknife, b.jackknife, strict=True)] if same else []
    return ScoreDifference(a.score - b.score, _jackknife_se(jack))


@dataclass(frozen=True)
class ClusterScoreTable:
    """Cluster scores per grouping and layer: ``scores[grouping][layer]``."""

    scores: dict[str, dict[str, ClusterScore]]
    signal_share: dict[str, dict[str, float]]
    kind: str = "gradnap"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "groupings": {
                g: {
                    layer: {
                        "score": s.score,
                        "uncertainty": s.uncertainty,
                        "n_groups": s.n_groups,
                        "signal_share": self.signal_share[g][layer],
                        "jackknife": list(s.jackknife),
                    }
                    for layer, s in per.items()
                }
                for g, per in self.scores.items()
            },
        }


def cluster_score_table(
    result: Any,
    groupings: Iterable[str] | None = None,
    layers: Iterable[str] | None = None,
    kind: str = "gradnap",
    min_count: int | None = None,
    percentiles: Sequence[float] = CLUSTER_PERCENTILES,
    mask: str = CROSSVAL_MASK,
) -> ClusterScoreTable:
    """:func:`cluster_score` and the signal share per grouping and layer of a result
    (groups below ``min_count`` left out; ``mask`` as in :func:`fold_profiles_from_sums`)."""
    scores: dict[str, dict[str, ClusterScore]] = {}
    share: dict[str, dict[str, float]] = {}
    for g in groupings or result.groupings:
        scores[g], share[g] = {}, {}
        for layer in layers or result.layers:
            fp = fold_profiles(result, layer, g, kind, min_count, mask)
            products = pair_products(fp)
            scores[g][layer] = cluster_score(fp, percentiles, products)
            share[g][layer] = crossval_distances(fp, products).signal_share
            log.debug("%s %s: %s", g, layer, scores[g][layer].score)
    return ClusterScoreTable(scores, share, kind)
