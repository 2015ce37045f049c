"""Verification and identification metrics on similarity scores (pure numpy).

Conventions (shared by every function here):

* scores are **similarities**: higher means more alike;
* a comparison is a **match** when ``score >= threshold``;
* ``FMR(t)`` (used interchangeably with FAR) = fraction of impostor scores ``>= t``;
* ``FNMR(t)`` = fraction of genuine scores ``< t``; ``TMR(t)`` = ``TAR(t)`` = ``1 - FNMR(t)``.

Score arrays must be non-empty, 1-D and finite; anything else raises
:class:`verikit.errors.DataError`. The one exception is :data:`UNSCORED` (``-inf``), which the
evaluation summaries (:mod:`~verikit.evaluate.summary`, :mod:`~verikit.evaluate.bootstrap`) accept:
it stands for a comparison that was attempted but could not be scored (a failure to acquire,
ISO/IEC 19795-1) and is below every threshold, so it is never a match. ``float16``/``float32``/``float64`` inputs keep their dtype
(so thresholds computed from ``float32`` scores are exact ``float32`` values that compare the same
way whether the scores are later held as ``float32`` or ``float64``); other real dtypes are
converted to ``float64``. All comparisons against a threshold are carried out in ``float64``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence, Set, Sized
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from verikit.errors import DataError

__all__ = [
    "RocCurve",
    "OpenSetRates",
    "roc",
    "auc",
    "fmr_fnmr_at",
    "threshold_at_fmr",
    "tar_at_far",
    "eer",
    "det",
    "probit",
    "cmc",
    "rank1",
    "mean_average_precision",
    "open_set_rates",
    "dir_at_fpir",
    "wilson_interval",
    "clopper_pearson_interval",
    "min_supported_fmr",
    "UNSCORED",
]

#: The score of a comparison that could not be made (no face found in one of its images): lower
#: than every threshold, so a genuine one is a false non-match and an impostor one a correct
#: rejection. Only the summaries that say so accept it.
UNSCORED = -math.inf

_KEEP_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


# --------------------------------------------------------------------------- validation helpers


def _as_array(x: Any, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} must be an array of real numbers ({type(exc).__name__})") from None
    if a.dtype.kind not in "iuf":
        raise DataError(f"{name} must contain real numbers, got dtype {a.dtype}")
    if a.dtype not in _KEEP_DTYPES:
        a = a.astype(np.float64)
    return a


def _scores(x: Any, name: str, *, unscored: bool = False) -> np.ndarray:
    """Validate a 1-D, non-empty, finite array of real scores (``unscored``: ``-inf`` allowed too)."""
    a = _as_array(x, name)
    if a.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of scores, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{name} is empty")
    finite = np.isfinite(a)
    if not finite.all() and not (unscored and (finite | (a == UNSCORED)).all()):
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def _lowest_scored(*sorted_arrays: np.ndarray) -> float:
    """The lowest score that is not :data:`UNSCORED` in ascending arrays (DataError if there is none).

    A threshold at or below it accepts every scored comparison and no unscored one, so thresholds
    are raised to it: the counts stay the same and no threshold is ``-inf``."""
    lows = []
    for a in sorted_arrays:
        k = int(np.searchsorted(a, UNSCORED, side="right"))
        if k < a.size:
            lows.append(float(a[k]))
    if not lows:
        raise DataError("no comparison could be scored (every one involves a failure to acquire)")
    return min(lows)


def _matrix(x: Any, name: str) -> np.ndarray:
    """Validate a 2-D, non-empty, finite array of real scores."""
    a = _as_array(x, name)
    if a.ndim != 2:
        raise DataError(f"{name} must be a 2-D (n_probe, n_gallery) array, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def _real(x: Any, name: str, *, allow_inf: bool = False) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise DataError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if math.isnan(v) or (not allow_inf and math.isinf(v)):
        raise DataError(f"{name} must be a finite number, got {v}")
    return v


def _int(x: Any, name: str, minimum: int) -> int:
    if isinstance(x, (bool, np.bool_)):
        raise DataError(f"{name} must be an integer, got bool")
    try:
        v = operator.index(x)
    except TypeError:
        raise DataError(f"{name} must be an integer, got {type(x).__name__}") from None
    if v < minimum:
        raise DataError(f"{name} must be >= {minimum}, got {v}")
    return v


def _fraction(x: Any, name: str) -> float:
    v = _real(x, name)
    if not 0.0 < v <= 1.0:
        raise DataError(f"{name} must be in (0, 1], got {v}")
    return v


def _labels(labels: Any, name: str, n: int) -> list:
    ordered = isinstance(labels, Sized) and isinstance(labels, Iterable)
    if not ordered or isinstance(labels, (str, bytes, Mapping, Set)):
        raise DataError(f"{name} must be a sequence of labels, got {type(labels).__name__}")
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {labels.shape}")
    out = list(labels)
    if len(out) != n:
        raise DataError(f"{name} has {len(out)} labels but {n} were expected")
    for lab in out:
        try:
            hash(lab)
        except TypeError:
            raise DataError(f"{name} contains an unhashable label of type {type(lab).__name__}") from None
    return out


# --------------------------------------------------------------------------- ROC family


@dataclass(frozen=True, eq=False)
class RocCurve:
    """A ROC curve as three aligned, read-only 1-D arrays.

    ``thresholds`` is strictly descending: ``+inf`` first (nothing accepted, ``fmr = tmr = 0``),
    then every distinct observed score. ``fmr[j]`` / ``tmr[j]`` are the rates when accepting
    ``score >= thresholds[j]``; both are non-decreasing.

    >>> r = RocCurve(np.array([np.inf, 1.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    >>> r.fnmr.tolist()
    [1.0, 0.0]
    """

    thresholds: np.ndarray
    fmr: np.ndarray
    tmr: np.ndarray

    def __post_init__(self) -> None:
        arrays = []
        for name in ("thresholds", "fmr", "tmr"):
            a = np.array(getattr(self, name), dtype=np.float64)  # copy: the curve owns its data
            if a.ndim != 1 or a.size == 0:
                raise DataError(f"RocCurve.{name} must be a non-empty 1-D array, got shape {a.shape}")
            a.flags.writeable = False
            object.__setattr__(self, name, a)
            arrays.append(a)
        if not arrays[0].size == arrays[1].size == arrays[2].size:
            raise DataError("RocCurve arrays must have the same length")

    @classmethod
    def _trusted(cls, thresholds: np.ndarray, fmr: np.ndarray, tmr: np.ndarray) -> "RocCurve":
        """Wrap freshly computed float64 arrays without copying or re-checking them."""
        obj = object.__new__(cls)
        for name, a in (("thresholds", thresholds), ("fmr", fmr), ("tmr", tmr)):
            a.flags.writeable = False
            object.__setattr__(obj, name, a)
        return obj

    @property
    def fnmr(self) -> np.ndarray:
        """``1 - tmr`` (the fraction of genuine scores rejected at each threshold)."""
        return 1.0 - self.tmr

    def __len__(self) -> int:
        return int(self.thresholds.size)


def _roc_counts(g_sorted: np.ndarray, i_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ascending distinct observed scores and, at each, how many genuine/impostor are ``>=`` it.

    A linear merge of the two sorted classes: the smaller class's place in the larger one is one
    ``searchsorted`` (sorted queries, so cache-friendly), then a scatter builds the merged order
    and a cumulative count of genuine scores gives, at the first occurrence of each distinct
    value, how many of each class lie strictly below it. No comparison sort of the merged scores.
    """
    n_g, n_i = g_sorted.size, i_sorted.size
    small, large = (g_sorted, i_sorted) if n_g <= n_i else (i_sorted, g_sorted)
    n = n_g + n_i
    pos = np.searchsorted(large, small, side="right")
    pos += np.arange(small.size, dtype=pos.dtype)  # each earlier small score shifts it by one
    from_small = np.zeros(n, dtype=bool)
    from_small[pos] = True
    merged = np.empty(n, dtype=np.result_type(g_sorted.dtype, i_sorted.dtype))
    merged[pos] = small
    merged[~from_small] = large
    del pos
    first = np.empty(n, dtype=bool)  # first occurrence of each distinct value
    first[0] = True
    np.not_equal(merged[1:], merged[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    values = merged[starts]
    del merged, first
    count = np.empty(n + 1, dtype=np.int64 if n >= 2**31 else np.int32)
    count[0] = 0
    np.cumsum(from_small, out=count[1:])
    small_below = count[starts]  # small-class scores strictly below each value
    del count, from_small
    large_below = starts - small_below
    g_below, i_below = (small_below, large_below) if n_g <= n_i else (large_below, small_below)
    return values, n_g - g_below, n_i - i_below


def roc(genuine: Any, impostor: Any) -> RocCurve:
    """Exact ROC curve (FMR, TMR) at every distinct observed score.

    Each class is sorted separately (numpy's SIMD sort), then merged in linear time
    (:func:`_roc_counts`), so ties are exact (at threshold ``t`` every score ``>= t`` is accepted)
    and the values equal ``sklearn.metrics.roc_curve(..., drop_intermediate=False)`` point for
    point (thresholds, FPR, TPR), at a fraction of its time (benchmarks/bench_roc.py).

    >>> r = roc([0.9, 0.8, 0.5], [0.8, 0.3])
    >>> r.thresholds.tolist()
    [inf, 0.9, 0.8, 0.5, 0.3]
    >>> r.fmr.tolist()
    [0.0, 0.0, 0.5, 0.5, 1.0]
    >>> r.tmr.round(3).tolist()
    [0.0, 0.333, 0.667, 1.0, 1.0]
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    n_g, n_i = g.size, i.size
    values, acc_g, acc_i = _roc_counts(g, i)
    del g, i  # free the sorted copies before the outputs are allocated
    thresholds = _prepend_reversed(np.inf, values)
    fmr = _prepend_reversed(0.0, acc_i)
    fmr[1:] /= n_i
    tmr = _prepend_reversed(0.0, acc_g)
    tmr[1:] /= n_g
    return RocCurve._trusted(thresholds, fmr, tmr)


def _prepend_reversed(first: float, a: np.ndarray) -> np.ndarray:
    out = np.empty(a.size + 1, dtype=np.float64)
    out[0] = first
    out[1:] = a[::-1]
    return out


def auc(genuine: Any, impostor: Any) -> float:
    """Area under the ROC: P(genuine > impostor) + 0.5 * P(genuine == impostor).

    Computed exactly from counts (the Mann-Whitney statistic); equals
    ``sklearn.metrics.roc_auc_score``.

    >>> auc([0.9, 0.8, 0.5], [0.8, 0.3])
    0.75
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    below = int(np.searchsorted(i, g, side="left").sum(dtype=np.int64))
    below_or_equal = int(np.searchsorted(i, g, side="right").sum(dtype=np.int64))
    return (below + below_or_equal) / (2 * g.size * i.size)


def fmr_fnmr_at(genuine: Any, impostor: Any, threshold: float) -> tuple[float, float]:
    """``(FMR, FNMR)`` when accepting ``score >= threshold`` (``threshold`` may be +-inf).

    >>> fmr_fnmr_at([0.9, 0.8, 0.5], [0.8, 0.3], 0.8)
    (0.5, 0.3333333333333333)
    """
    g = _scores(genuine, "genuine")
    i = _scores(impostor, "impostor")
    t = np.float64(_real(threshold, "threshold", allow_inf=True))
    fmr = np.count_nonzero(i >= t) / i.size
    fnmr = np.count_nonzero(g < t) / g.size
    return float(fmr), float(fnmr)


def _max_accepted(n: int, target: float) -> int:
    """Largest ``k`` in ``[0, n]`` with ``k / n <= target`` (robust to ``target * n`` rounding)."""
    k = min(n, int(math.floor(target * n)))
    while k < n and (k + 1) / n <= target:
        k += 1
    while k > 0 and k / n > target:
        k -= 1
    return k


def _thresholds_at_fmrs(imp: np.ndarray, targets: Sequence[float]) -> np.ndarray:
    """Lowest threshold with FMR <= target, for each target; one ``np.partition`` for all."""
    n = imp.size
    ks = [_max_accepted(n, t) for t in targets]
    kth = sorted({n - k - 1 for k in ks if k < n})
    part = np.partition(imp, kth) if kth else imp
    kind = imp.dtype.type
    out = np.empty(len(ks), dtype=np.float64)
    for j, k in enumerate(ks):
        if k >= n:
            out[j] = float(imp.min())  # every impostor may be accepted
        else:
            # part[n-k-1] is the (k+1)-th largest score s; accepting >= nextafter(s) keeps at
            # most k impostors (only those strictly above s) and any lower threshold accepts s too.
            out[j] = float(np.nextafter(kind(part[n - k - 1]), kind(np.inf)))
    return out


def threshold_at_fmr(impostor: Any, target_fmr: float) -> float:
    """Lowest threshold ``t`` whose FMR (fraction of impostors ``>= t``) is ``<= target_fmr``.

    With ``n`` impostors at most ``k = floor(target_fmr * n)`` may be accepted. If ``k == n``
    the minimum impostor score is returned (all accepted). Otherwise ``t`` is the next float
    above ``s``, the (k+1)-th largest impostor score (found with ``np.partition``, no full
    sort): exactly the impostors strictly above ``s`` are accepted, so with ties at ``s`` the
    FMR can be below ``k / n``. ``t`` is in the scores' own float precision, so it is not an
    observed score. ``target_fmr`` must be in (0, 1].

    >>> threshold_at_fmr([0.1, 0.2, 0.3, 0.4], 0.5) > 0.2
    True
    >>> fmr_fnmr_at([0.5], [0.1, 0.2, 0.3, 0.4], threshold_at_fmr([0.1, 0.2, 0.3, 0.4], 0.5))
    (0.5, 0.0)
    """
    imp = _scores(impostor, "impostor")
    target = _fraction(target_fmr, "target_fmr")
    return float(_thresholds_at_fmrs(imp, [target])[0])


def tar_at_far(genuine: Any, impostor: Any, fars: Any) -> np.ndarray:
    """TAR (= TMR) at each target FAR, at the threshold :func:`threshold_at_fmr` picks.

    ``fars`` is a scalar or 1-D sequence of values in (0, 1]; the result has one TAR per FAR.

    >>> tar_at_far([0.9, 0.8, 0.5, 0.2], [0.1, 0.2, 0.3, 0.4], [0.25, 1.0]).tolist()
    [0.75, 1.0]
    """
    g = np.sort(_scores(genuine, "genuine"))
    imp = _scores(impostor, "impostor")
    targets = np.atleast_1d(_as_array(fars, "fars"))
    if targets.ndim != 1 or targets.size == 0:
        raise DataError(f"fars must be a scalar or a non-empty 1-D sequence, got shape {targets.shape}")
    values = [_fraction(float(f), "fars") for f in targets.astype(np.float64)]
    thresholds = _thresholds_at_fmrs(imp, values)
    accepted = g.size - np.searchsorted(g, thresholds, side="left")
    return accepted / g.size


def eer(genuine: Any, impostor: Any) -> tuple[float, float]:
    """Equal error rate and its threshold, at the nearest observed operating point.

    Definition ("nearest operating point"): among the observed thresholds of :func:`roc`
    (every distinct score; the ``+inf`` point is excluded) pick the one minimising
    ``|FMR - FNMR|``; ties go to the lower mean error, then to the higher threshold. Return
    ``((FMR + FNMR) / 2, threshold)`` there. No interpolation is done, so the value is an
    achievable operating point; with few scores it can differ from an interpolated EER by about
    one step of the curve. Perfectly separated classes give ``0.0`` and a threshold equal to the
    lowest genuine score (above every impostor); identical distributions give about ``0.5``.

    >>> eer([0.9, 0.8, 0.7], [0.1, 0.2, 0.3])
    (0.0, 0.7)
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    values, acc_g, acc_i = _roc_counts(g, i)
    n_g, n_i = g.size, i.size
    rej_g = n_g - acc_g
    # Exact integer comparisons: FMR - FNMR = (acc_i * n_g - rej_g * n_i) / (n_i * n_g).
    a = acc_i.astype(np.int64) * n_g
    b = rej_g.astype(np.int64) * n_i
    gap = np.abs(a - b)
    candidates = np.flatnonzero(gap == gap.min())
    total = (a + b)[candidates]
    best = candidates[np.flatnonzero(total == total.min())[-1]]  # ascending values: last = highest
    fmr = acc_i[best] / n_i
    fnmr = rej_g[best] / n_g
    return float((fmr + fnmr) / 2), float(values[best])


def det(genuine: Any, impostor: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(fmr, fnmr)`` at every ROC threshold (same order as :func:`roc`, ``+inf`` first).

    Plot ``probit(fmr)`` against ``probit(fnmr)`` for DET axes.

    >>> fmr, fnmr = det([0.9, 0.5], [0.5, 0.1])
    >>> fmr.tolist(), fnmr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [1.0, 0.5, 0.0, 0.0])
    """
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    _, acc_g, acc_i = _roc_counts(g, i)
    fmr = np.concatenate([[0.0], acc_i[::-1] / i.size])
    fnmr = np.concatenate([[1.0], (g.size - acc_g[::-1]) / g.size])
    return fmr, fnmr


def probit(p: Any, eps: float = 1e-9) -> Any:
    """Standard-normal quantile (``scipy.stats.norm.ppf``) of ``p`` clipped to ``[eps, 1 - eps]``.

    Used for DET axes, where 0 and 1 would map to -inf/+inf. A scalar gives a float, an array
    gives an array of the same shape.

    >>> round(probit(0.975), 4)
    1.96
    >>> probit(0.0) < -5.9
    True
    """
    a = _as_array(p, "p").astype(np.float64)
    if not np.isfinite(a).all() or ((a < 0) | (a > 1)).any():
        raise DataError("p must contain finite probabilities in [0, 1]")
    e = _real(eps, "eps")
    if not 0.0 < e < 0.5:
        raise DataError(f"eps must be in (0, 0.5), got {e}")
    from scipy.special import ndtri  # == scipy.stats.norm.ppf, lighter import

    out = ndtri(np.clip(a, e, 1.0 - e))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- identification


def _gallery_index(gallery_labels: list) -> tuple[dict, np.ndarray]:
    index: dict = {}
    codes = np.fromiter((index.setdefault(lab, len(index)) for lab in gallery_labels),
                        dtype=np.intp, count=len(gallery_labels))
    return index, codes


def _identity_scores(sim: np.ndarray, codes: np.ndarray, n_id: int) -> np.ndarray:
    """(n_probe, n_id) best template score per identity (column ``c`` = gallery code ``c``)."""
    if n_id == codes.size and (codes == np.arange(n_id)).all():
        return sim
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    return np.maximum.reduceat(sim[:, order], starts, axis=1)


def _prepare_identification(similarity: Any, probe_labels: Any, gallery_labels: Any
                            ) -> tuple[np.ndarray, list, dict, np.ndarray]:
    sim = _matrix(similarity, "similarity")
    probes = _labels(probe_labels, "probe_labels", sim.shape[0])
    gallery = _labels(gallery_labels, "gallery_labels", sim.shape[1])
    index, codes = _gallery_index(gallery)
    return _identity_scores(sim, codes, len(index)), probes, index, sim


def cmc(similarity: Any, probe_labels: Any, gallery_labels: Any, max_rank: int | None = None) -> np.ndarray:
    """Closed-set cumulative match characteristic.

    ``similarity`` is ``(n_probe, n_gallery_templates)``; gallery labels may repeat and an
    identity's score is the max over its templates. A probe's rank is the number of gallery
    identities scoring ``>=`` its true identity (ties count against it, so a tie for first is
    rank 2). ``cmc[r - 1]`` is the fraction of probes with rank ``<= r``, for ``r = 1 ..
    max_rank`` (default: number of gallery identities). Every probe identity must be in the
    gallery, otherwise :class:`DataError` (use :func:`open_set_rates` for open-set data).

    >>> sim = [[0.9, 0.1, 0.3], [0.2, 0.5, 0.6]]
    >>> cmc(sim, ["a", "b"], ["a", "b", "c"]).tolist()
    [0.5, 1.0, 1.0]
    """
    ids, probes, index, _ = _prepare_identification(similarity, probe_labels, gallery_labels)
    n_id = len(index)
    r_max = n_id if max_rank is None else _int(max_rank, "max_rank", 1)
    missing = [lab for lab in probes if lab not in index]
    if missing:
        raise DataError(f"{len(missing)} probe(s) have no identity in the gallery (e.g. {missing[0]!r}); "
                        "CMC is closed-set")
    true_codes = np.fromiter((index[lab] for lab in probes), dtype=np.intp, count=len(probes))
    true_scores = ids[np.arange(ids.shape[0]), true_codes]
    ranks = np.count_nonzero(ids >= true_scores[:, None], axis=1)
    hist = np.bincount(np.minimum(ranks, r_max + 1), minlength=r_max + 2)
    return np.cumsum(hist[1:r_max + 1]) / len(probes)


def mean_average_precision(similarity: Any, probe_labels: Any, gallery_labels: Any) -> float:
    """Retrieval mAP: each probe ranks every gallery template; its relevant ones share its label.

    Average precision is computed over distinct score thresholds, so tied templates enter
    together (the definition of ``sklearn.metrics.average_precision_score``). Probes with no
    relevant template are left out; if none has one, :class:`DataError`.

    >>> round(mean_average_precision([[0.9, 0.8, 0.1]], ["a"], ["a", "b", "a"]), 4)
    0.8333
    """
    sim = _matrix(similarity, "similarity")
    probes = _labels(probe_labels, "probe_labels", sim.shape[0])
    gallery = _labels(gallery_labels, "gallery_labels", sim.shape[1])
    gallery_arr = np.asarray(gallery, dtype=object)
    aps = []
    for row, label in zip(sim, probes):
        relevant = gallery_arr == label
        n_rel = int(relevant.sum())
        if n_rel == 0:
            continue
        order = np.argsort(-row, kind="stable")
        scores, hits = row[order], relevant[order]
        # Last position of each run of equal scores: the distinct thresholds.
        ends = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
        tp = np.cumsum(hits)[ends]
        precision = tp / (ends + 1)
        recall = tp / n_rel
        aps.append(float(np.sum(np.diff(np.r_[0.0, recall]) * precision)))
    if not aps:
        raise DataError("no probe has a relevant gallery template: mAP is undefined")
    return float(np.mean(aps))


def rank1(similarity: Any, probe_labels: Any, gallery_labels: Any) -> float:
    """Closed-set rank-1 identification rate (``cmc(...)[0]``; ties for first count as misses).

    >>> rank1([[0.9, 0.1], [0.2, 0.1]], ["a", "b"], ["a", "b"])
    0.5
    """
    return float(cmc(similarity, probe_labels, gallery_labels, max_rank=1)[0])


@dataclass(frozen=True)
class OpenSetRates:
    """Open-set identification rates at one threshold (rank 1).

    ``dir`` (detection and identification rate) and ``fnir = 1 - dir`` are over the
    ``n_mated`` probes, ``fpir`` over the ``n_non_mated`` probes; a rate whose population is
    empty is ``nan``.
    """

    threshold: float
    dir: float
    fpir: float
    fnir: float
    n_mated: int
    n_non_mated: int


def _open_set_parts(similarity: Any, probe_labels: Any, gallery_labels: Any
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mated probe: its true-identity score and whether that identity is alone at rank 1;
    per non-mated probe: its top gallery score. All scores as float64."""
    ids, probes, index, sim = _prepare_identification(similarity, probe_labels, gallery_labels)
    mated = np.fromiter((lab in index for lab in probes), dtype=bool, count=len(probes))
    rows = np.flatnonzero(mated)
    true_codes = np.fromiter((index[probes[r]] for r in rows), dtype=np.intp, count=rows.size)
    m_ids = ids[rows]
    true_scores = m_ids[np.arange(rows.size), true_codes].astype(np.float64)
    # Correct at rank 1 only when the true identity strictly beats every other identity.
    correct = np.count_nonzero(m_ids >= true_scores[:, None], axis=1) == 1
    non_mated_top = sim[~mated].max(axis=1).astype(np.float64) if (~mated).any() else np.empty(0)
    return true_scores, correct, non_mated_top


def _rates(true_scores: np.ndarray, correct: np.ndarray, non_mated_top: np.ndarray, t: float) -> OpenSetRates:
    t64 = np.float64(t)
    n_m, n_n = true_scores.size, non_mated_top.size
    dir_ = np.count_nonzero(correct & (true_scores >= t64)) / n_m if n_m else math.nan
    fpir = np.count_nonzero(non_mated_top >= t64) / n_n if n_n else math.nan
    return OpenSetRates(threshold=float(t), dir=float(dir_), fpir=float(fpir), fnir=float(1.0 - dir_),
                        n_mated=int(n_m), n_non_mated=int(n_n))


def open_set_rates(similarity: Any, probe_labels: Any, gallery_labels: Any, threshold: float) -> OpenSetRates:
    """Open-set identification rates (DIR, FPIR, FNIR) at ``threshold``, rank 1.

    Probes whose label is not in the gallery are non-mated. DIR = fraction of mated probes whose
    top gallery identity is their own (strictly above every other identity; identity score = max
    over its templates) with score ``>= threshold``; FNIR = 1 - DIR; FPIR = fraction of
    non-mated probes whose top score is ``>= threshold``.

    >>> sim = [[0.9, 0.1], [0.4, 0.3], [0.2, 0.7], [0.3, 0.2]]
    >>> r = open_set_rates(sim, ["a", "b", "x", "y"], ["a", "b"], 0.5)
    >>> r.dir, r.fpir, r.fnir
    (0.5, 0.5, 0.5)
    """
    t = _real(threshold, "threshold", allow_inf=True)
    true_scores, correct, non_mated_top = _open_set_parts(similarity, probe_labels, gallery_labels)
    return _rates(true_scores, correct, non_mated_top, t)


def dir_at_fpir(similarity: Any, probe_labels: Any, gallery_labels: Any, target_fpir: float) -> OpenSetRates:
    """Open-set rates at the lowest threshold whose FPIR is ``<= target_fpir``.

    The threshold is :func:`threshold_at_fmr` applied to the non-mated probes' top scores (same
    operating-point rule as verification). Needs at least one non-mated probe.

    >>> sim = [[0.9, 0.1], [0.4, 0.3], [0.2, 0.7], [0.3, 0.2]]
    >>> r = dir_at_fpir(sim, ["a", "b", "x", "y"], ["a", "b"], 0.5)
    >>> r.fpir, r.dir
    (0.5, 0.5)
    """
    target = _fraction(target_fpir, "target_fpir")
    true_scores, correct, non_mated_top = _open_set_parts(similarity, probe_labels, gallery_labels)
    if non_mated_top.size == 0:
        raise DataError("dir_at_fpir needs non-mated probes (probe labels absent from the gallery)")
    t = float(_thresholds_at_fmrs(non_mated_top, [target])[0])
    return _rates(true_scores, correct, non_mated_top, t)


# --------------------------------------------------------------------------- uncertainty


def _binomial_args(successes: Any, n: Any, confidence: Any) -> tuple[int, int, float]:
    n_ = _int(n, "n", 1)
    s = _int(successes, "successes", 0)
    if s > n_:
        raise DataError(f"successes ({s}) cannot exceed n ({n_})")
    c = _real(confidence, "confidence")
    if not 0.0 < c < 1.0:
        raise DataError(f"confidence must be in (0, 1), got {c}")
    return s, n_, c


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    >>> lo, hi = wilson_interval(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
    """
    s, n_, c = _binomial_args(successes, n, confidence)
    z = NormalDist().inv_cdf(0.5 + c / 2)
    p = s / n_
    z2n = z * z / n_
    denom = 1.0 + z2n
    centre = (p + z2n / 2) / denom
    half = z * math.sqrt(p * (1 - p) / n_ + z2n / (4 * n_)) / denom
    lo = 0.0 if s == 0 else max(0.0, centre - half)
    hi = 1.0 if s == n_ else min(1.0, centre + half)
    return lo, hi


def clopper_pearson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson ("exact", conservative) interval via ``scipy.stats.beta`` quantiles.

    >>> lo, hi = clopper_pearson_interval(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.3085)
    """
    s, n_, c = _binomial_args(successes, n, confidence)
    from scipy.stats import beta

    alpha = 1.0 - c
    lo = 0.0 if s == 0 else float(beta.ppf(alpha / 2, s, n_ - s + 1))
    hi = 1.0 if s == n_ else float(beta.ppf(1 - alpha / 2, s + 1, n_ - s))
    return lo, hi


def min_supported_fmr(n_impostor: int, rule_of: float = 30) -> float:
    """Smallest FMR that ``n_impostor`` impostor comparisons can support: ``rule_of / n_impostor``.

    Default: Doddington's **rule of 30** -- to be 90% confident that the true error rate is
    within +-30% of the observed one, at least 30 errors must be observed, so an FMR below
    ``30 / n`` is not measured reliably. ``rule_of=3`` gives the **rule of three** instead (with
    zero errors in ``n`` trials the 95% upper bound on the rate is about ``3 / n``): a much looser
    claim. A result ``>= 1`` means the set is too small to support any FMR below 1. Comparisons
    that share subjects are not independent, so both rules are optimistic.

    >>> min_supported_fmr(30_000)
    0.001
    >>> min_supported_fmr(3_000, rule_of=3)
    0.001
    """
    n_ = _int(n_impostor, "n_impostor", 1)
    r = _real(rule_of, "rule_of")
    if r <= 0:
        raise DataError(f"rule_of must be positive, got {r}")
    return r / n_
