"""The verification summary of large score sets: EER, TAR at several FARs, AUC and a thinned
exact ROC, from one sort of each class and nothing of size ``n`` besides.

:func:`~verikit.evaluate.metrics.roc` materialises every distinct operating point (three
``float64`` arrays as long as the scores) and merges the classes; a report needs only a few
operating points and a curve of a few hundred points. Here each class is sorted once (a copy,
sorted in place) and everything else is a binary search on the sorted arrays:

* TAR at FAR: the threshold is an order statistic of the sorted impostors (the rule of
  :func:`~verikit.evaluate.metrics.threshold_at_fmr`), its TAR one ``searchsorted``;
* EER: ``FMR - FNMR`` strictly decreases from one distinct observed score to the next, so the
  nearest operating point is found by bisection (O(log^2 n)), with
  :func:`~verikit.evaluate.metrics.eer`'s tie rules;
* AUC: the Mann-Whitney count (``searchsorted`` of the genuine scores into the impostors);
* the curve: exact points at FMRs spaced evenly on a log axis.

Values equal the reference functions exactly (tests check it); peak extra memory is one copy of
the scores plus ``8 * n_genuine`` bytes for the AUC count.

Comparisons that could not be scored (:data:`~verikit.evaluate.metrics.UNSCORED`, ``-inf``: a
failure to acquire) stay in the counts and are never accepted: no threshold is below the lowest
real score, so the ROC ends at the rates reached by accepting every scored comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from verikit.errors import DataError

from .metrics import UNSCORED, _fraction, _lowest_scored, _max_accepted, _scores

__all__ = ["RocSummary", "roc_summary"]


@dataclass(frozen=True)
class RocSummary:
    """EER (value, threshold), TAR at each FAR (with its threshold), AUC and a thinned ROC."""

    eer: float
    eer_threshold: float
    fars: tuple[float, ...]
    thresholds: tuple[float, ...]
    tars: tuple[float, ...]
    auc: float
    curve_fmr: np.ndarray
    curve_tmr: np.ndarray
    curve_thresholds: np.ndarray
    n_genuine: int
    n_impostor: int


class _Sorted:
    """Both classes sorted ascending, with O(log n) counts at any threshold."""

    def __init__(self, genuine: np.ndarray, impostor: np.ndarray) -> None:
        # One common dtype, so a probe value never makes searchsorted convert (copy) a whole array.
        dtype = genuine.dtype if genuine.dtype == impostor.dtype else np.dtype(np.float64)
        self.g = np.array(genuine, dtype=dtype, copy=True)
        self.g.sort()
        self.i = np.array(impostor, dtype=dtype, copy=True)
        self.i.sort()
        self.dtype = dtype
        self.n_g, self.n_i = self.g.size, self.i.size
        self.floor = _lowest_scored(self.g, self.i)  # thresholds never go below it (see the module docstring)

    def accepted(self, t: Any) -> tuple[Any, Any]:
        """Genuine and impostor counts ``>= t`` (``t``: scalar or array of values exact in the scores' dtype)."""
        tt = np.asarray(t, self.dtype)
        return (self.n_g - np.searchsorted(self.g, tt, side="left"),
                self.n_i - np.searchsorted(self.i, tt, side="left"))

    def gap(self, v: float) -> int:
        """``(FMR - FNMR) * n_g * n_i`` at threshold ``v``, exactly (a strictly decreasing step function)."""
        acc_g, acc_i = self.accepted(v)
        return int(acc_i) * self.n_g - (self.n_g - int(acc_g)) * self.n_i

    def threshold_at(self, far: float) -> float:
        k = _max_accepted(self.n_i, far)
        if k >= self.n_i:
            return max(float(self.i[0]), self.floor)
        kind = self.i.dtype.type
        return max(float(np.nextafter(kind(self.i[self.n_i - k - 1]), kind(np.inf))), self.floor)


def _last_nonnegative(s: _Sorted, arr: np.ndarray) -> int:
    """Index of the largest value in ascending ``arr`` whose gap is ``>= 0`` (-1 if none)."""
    lo, hi = 0, arr.size  # gap(arr[lo-1]) >= 0 invariant; answer in [lo-1, hi-1]
    while lo < hi:
        mid = (lo + hi) // 2
        if s.gap(arr[mid]) >= 0:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


def _eer(s: _Sorted) -> tuple[float, float]:
    # The candidates are the two distinct observed values on either side of the sign change.
    cands = []
    for arr in (s.g, s.i):
        k = _last_nonnegative(s, arr)
        if k >= 0:
            cands.append(arr[k])
        if k + 1 < arr.size:
            cands.append(arr[k + 1])
    # Accepting the unscored too is no operating point: the lowest threshold is the lowest real score.
    cands = [v for v in cands if v != UNSCORED] or [s.dtype.type(s.floor)]
    lo_side = max((v for v in cands if s.gap(v) >= 0), default=None)
    hi_side = min((v for v in cands if s.gap(v) < 0), default=None)
    best = None
    for v in (lo_side, hi_side):  # ascending: later wins ties (the higher threshold)
        if v is None:
            continue
        acc_g, acc_i = s.accepted(v)
        a, b = int(acc_i) * s.n_g, (s.n_g - int(acc_g)) * s.n_i
        key = (abs(a - b), a + b)
        if best is None or key <= best[0]:
            best = (key, v, int(acc_i) / s.n_i, (s.n_g - int(acc_g)) / s.n_g)
    _, v, fmr, fnmr = best
    return float((fmr + fnmr) / 2), float(v)


def _auc(s: _Sorted) -> float:
    below = int(np.searchsorted(s.i, s.g, side="left").sum(dtype=np.int64))
    below_or_equal = int(np.searchsorted(s.i, s.g, side="right").sum(dtype=np.int64))
    return (below + below_or_equal) / (2 * s.n_g * s.n_i)


def _curve(s: _Sorted, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fmrs = np.geomspace(1.0 / s.n_i, 1.0, points)
    thresholds = np.unique([s.threshold_at(min(1.0, f)) for f in fmrs])[::-1]
    thresholds = np.r_[np.inf, thresholds, s.floor]
    thresholds = np.unique(thresholds)[::-1]
    acc_g, acc_i = s.accepted(thresholds)
    return acc_i / s.n_i, acc_g / s.n_g, thresholds


def roc_summary(genuine: Any, impostor: Any, fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), *,
                points: int = 400) -> RocSummary:
    """EER, TAR at ``fars``, AUC and a ``points``-point exact ROC, sorting each class once.

    >>> r = roc_summary([0.9, 0.8, 0.7, 0.35], [0.1, 0.2, 0.3, 0.4], fars=[0.25, 1.0])
    >>> r.eer, r.eer_threshold, r.tars, r.auc
    (0.25, 0.4, (1.0, 1.0), 0.9375)
    """
    g, i = _scores(genuine, "genuine", unscored=True), _scores(impostor, "impostor", unscored=True)
    targets = [_fraction(f, "fars") for f in fars]
    if not targets:
        raise DataError("fars must not be empty")
    s = _Sorted(g, i)
    thresholds = [s.threshold_at(f) for f in targets]
    acc_g, _ = s.accepted(np.array(thresholds))
    eer_value, eer_t = _eer(s)
    fmr, tmr, ct = _curve(s, points)
    return RocSummary(eer_value, eer_t, tuple(targets), tuple(thresholds), tuple((acc_g / s.n_g).tolist()),
                      _auc(s), fmr, tmr, ct, s.n_g, s.n_i)
