"""The verification summary of large score sets: EER, TAR at several FARs, AUC and a thinned
exact ROC, in a few linear passes over the scores and without sorting them.

:func:`~verikit.evaluate.metrics.roc` materialises every distinct operating point (it sorts
both classes); a report needs only a few operating points and a curve of a few hundred points.
Here the scores are bucketed instead (:class:`_Binned`): a monotone map sends every score to one
of ``2**21`` equal-width bins over the observed range, so a score in a lower bin is always
smaller than one in a higher bin, and per-bin counts answer every question up to the bins it
falls in. Only the scores in the few bins where an exact answer is needed are extracted and
sorted (a small fraction of them):

* TAR at FAR: the threshold is an order statistic of the impostors (the rule of
  :func:`~verikit.evaluate.metrics.threshold_at_fmr`): the cumulative histogram names its bin,
  the extracted scores of that bin give its value;
* EER: ``FMR - FNMR`` strictly decreases from one distinct observed score to the next, so the
  histogram names the bin where it changes sign, and the distinct scores there (and the first
  one after) are the candidates, with :func:`~verikit.evaluate.metrics.eer`'s tie rules;
* AUC: the Mann-Whitney count: pairs in different bins from the histograms, pairs that share a
  bin from the extracted scores of the bins holding both classes;
* the curve: exact points at FMRs spaced evenly on a log axis.

Values equal the reference functions exactly (tests check it against scikit-learn and
:mod:`~verikit.evaluate.metrics` on random, tied and real scores). Work is a handful of linear
passes in chunks (bounded temporaries); peak extra memory is the two histograms (32 MB) plus
the extracted scores. ``benchmarks/bench_roc.py`` measures it against scikit-learn.

Comparisons that could not be scored (:data:`~verikit.evaluate.metrics.UNSCORED`, ``-inf``: a
failure to acquire) stay in the counts and are never accepted: no threshold is below the lowest
real score, so the ROC ends at the rates reached by accepting every scored comparison. They are
binned as the float just below that score (one value below every real one, tied with each other,
as ``-inf`` is), which keeps every count above exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from verikit.errors import DataError

from .metrics import UNSCORED, _fraction, _max_accepted, _scores

__all__ = ["RocSummary", "roc_summary"]

BINS = 1 << 20       # histogram resolution: 1 M bins (8 MB, cache-friendly) keep the extracted share small
CHUNK = 1 << 18      # scores per binning step (at least twice the histogram): bounds the temporaries


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


class _Class:
    """One class of scores: its histogram and, after :meth:`extract`, its scores in the wanted bins."""

    def __init__(self, scores: np.ndarray, binner: "_Binned") -> None:
        self.scores, self.n = scores, scores.size
        self.hist = np.zeros(binner.nb, dtype=np.int64)
        for b in binner.chunks(scores):
            self.hist += np.bincount(b, minlength=binner.nb)
        self.upto = np.cumsum(self.hist)  # scores in this bin or lower ones
        self.kept = scores[:0]
        self.kept_bins = np.zeros(0, dtype=np.intp)

    def below(self, b: Any) -> Any:
        """Scores in bins lower than ``b``."""
        return self.upto[b] - self.hist[b]

    def extract(self, binner: "_Binned", want: np.ndarray) -> None:
        # Bins are recomputed rather than stored: a second cheap pass instead of 8 bytes a score.
        start, parts = 0, []
        for b in binner.chunks(self.scores):
            parts.append(self.scores[start:start + b.size][want.take(b)])
            start += b.size
        self.kept = np.sort(np.concatenate(parts)) if parts else self.scores[:0]
        self.kept_bins = binner.bin(self.kept)  # non-decreasing, since the map is monotone

    def at_least(self, t: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """How many scores are ``>= t`` (each ``t`` in its bin ``bins``, which must be extracted)."""
        return (self.n - self.upto[bins] + np.searchsorted(self.kept_bins, bins, side="right")
                - np.searchsorted(self.kept, t, side="left"))


class _Binned:
    """Both classes bucketed by one monotone map; exact counts at thresholds in extracted bins."""

    def __init__(self, genuine: np.ndarray, impostor: np.ndarray, nb: int | None = None) -> None:
        # One common dtype, so a threshold compares and bins the same way in both classes.
        self.dtype = genuine.dtype if genuine.dtype == impostor.dtype else np.dtype(np.float64)
        g = np.asarray(genuine, dtype=self.dtype)
        i = np.asarray(impostor, dtype=self.dtype)
        kind = self.dtype.type
        # One pass per class in the usual case (no UNSCORED): its minimum is its lowest real score.
        mins = [float(a.min()) for a in (g, i)]
        unscored = [m == UNSCORED for m in mins]
        lows = [float(a.min(initial=np.inf, where=a != UNSCORED)) if u else m for a, m, u in zip((g, i), mins, unscored)]
        if min(lows) == np.inf:
            raise DataError("no comparison could be scored (every one involves a failure to acquire)")
        #: the lowest real score: thresholds never go below it (see the module docstring)
        self.floor = min(lows)
        stand_in = np.nextafter(kind(self.floor), kind(-np.inf))
        g, i = (np.where(a == UNSCORED, stand_in, a) if u else a for a, u in zip((g, i), unscored))
        # Bins are computed in float32 whatever the scores' dtype: rounding a float64 to float32 is
        # monotone too, so the order of bins still follows the order of scores (equal float32 values
        # just share a bin), at half the memory traffic. float64 arithmetic only when float32 cannot
        # tell the scores apart well (a range overflowing it, or tiny next to the scores' magnitude).
        self.lo = min(stand_in if u else kind(m) for m, u in zip(mins, unscored))  # the minima above: no new pass
        hi = max(g.max(), i.max())
        span = float(hi) - float(self.lo)
        magnitude = max(abs(float(self.lo)), abs(float(hi)))
        fits = np.isfinite(np.float32(span)) and (span == 0 or span > magnitude * 2.0**-16)
        self.work = np.dtype(np.float32) if fits else np.dtype(np.float64)
        # About one bin per eight scores, at most BINS: few scores share a bin, histograms stay small.
        self.nb = nb or int(min(BINS, max(16, 1 << max(0, (g.size + i.size).bit_length() - 3))))
        nb = self.nb
        # (nb - 1) / span: the highest score lands at most a rounding above nb - 1, so observed
        # scores need no clipping (bin_data); other values (thresholds) are clipped (bin).
        self.scale = self.work.type((nb - 1) / span if span > 0 else 0.0)
        self.lo = self.work.type(self.lo)
        self.g, self.i = _Class(g, self), _Class(i, self)
        self.n_g, self.n_i = self.g.n, self.i.n
        self.want = np.zeros(nb, dtype=bool)

    def chunks(self, scores: np.ndarray) -> Iterator[np.ndarray]:
        """:meth:`bin` of observed scores (x >= lo, (x - lo) * scale < nb: no clipping), chunk by
        chunk: temporaries stay bounded, and each chunk is at least twice the histogram, so
        zeroing one histogram per chunk costs little."""
        step = max(CHUNK, 2 * self.nb)
        for start in range(0, scores.size, step):
            v = np.subtract(scores[start:start + step], self.lo, dtype=self.work)
            v *= self.scale
            yield v.astype(np.intp)  # truncation toward zero: the floor of a non-negative value

    def bin(self, x: np.ndarray) -> np.ndarray:
        """Bin of each value: floor((x - lo) * scale), clipped to the last bin. Rounding is
        monotone and lo is the minimum, so x <= y implies bin(x) <= bin(y)."""
        v = np.subtract(np.asarray(x, dtype=self.work), self.lo)
        v *= self.scale
        np.clip(v, 0, self.nb - 1, out=v)
        return v.astype(np.intp)

    def extract(self) -> None:
        self.g.extract(self, self.want)
        self.i.extract(self, self.want)

    def accepted(self, t: Any) -> tuple[np.ndarray, np.ndarray]:
        """Genuine and impostor counts ``>= t`` (values exact in the scores' dtype), exactly.

        A threshold whose bin was not extracted (possible only when bins are narrower than the
        gap between a score and the next float) is counted by a full pass instead.
        """
        tt = np.atleast_1d(np.asarray(t, dtype=self.dtype))
        bins = self.bin(np.where(np.isfinite(tt), tt, self.lo))  # +-inf: counted below
        acc_g, acc_i = self.g.at_least(tt, bins), self.i.at_least(tt, bins)
        for k in np.flatnonzero(~self.want[bins] & np.isfinite(tt)):
            acc_g[k] = np.count_nonzero(self.g.scores >= tt[k])
            acc_i[k] = np.count_nonzero(self.i.scores >= tt[k])
        infinite = ~np.isfinite(tt)  # +inf accepts nothing, -inf everything
        acc_g[infinite] = np.where(tt[infinite] > 0, 0, self.n_g)
        acc_i[infinite] = np.where(tt[infinite] > 0, 0, self.n_i)
        return acc_g, acc_i

    # -- order statistics of the impostors (threshold at a target FAR) -----------------------------
    def _ranks(self, fars: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """For each FAR: the ascending rank of the impostor just below its threshold (-1 when every
        impostor may be accepted) and that rank's bin."""
        ranks = np.array([self.n_i - _max_accepted(self.n_i, f) - 1 for f in fars], dtype=np.int64)
        return ranks, np.searchsorted(self.i.upto, np.maximum(ranks, 0), side="right")

    def plan_thresholds(self, fars: Sequence[float]) -> None:
        ranks, bins = self._ranks(fars)
        bins = bins[ranks >= 0]
        self.want[bins] = True
        self.want[np.minimum(bins + 1, self.nb - 1)] = True  # the next float up may fall in the next bin

    def thresholds_at(self, fars: Sequence[float]) -> np.ndarray:
        """The rule of :func:`~verikit.evaluate.metrics.threshold_at_fmr` at each FAR."""
        ranks, bins = self._ranks(fars)
        at = np.searchsorted(self.i.kept_bins, bins, side="left") + np.maximum(ranks, 0) - self.i.below(bins)
        kind = self.dtype.type
        scores = self.i.kept[np.minimum(at, max(self.i.kept.size - 1, 0))] if self.i.kept.size else \
            np.zeros(len(ranks), self.dtype)
        out = np.nextafter(scores.astype(self.dtype), kind(np.inf)).astype(np.float64)
        if (ranks < 0).any():  # every impostor accepted: the lowest impostor score
            out[ranks < 0] = float(self.i.scores.min())
        return np.maximum(out, self.floor)  # an unscored impostor's stand-in is never a threshold

    # -- EER ---------------------------------------------------------------------------------------
    def plan_eer(self) -> None:
        """Mark the last non-empty bin whose lowest score has FMR - FNMR >= 0, and the next one.

        At the lowest score of bin ``b`` (when it is not empty) the accepted counts are those of
        bins ``>= b``; an empty bin takes the counts of the next non-empty one. The gap is thus
        non-increasing over bins and the last bin with gap >= 0 is a non-empty one: bisection.
        """
        def gap(b: int) -> int:
            acc_g, acc_i = self.n_g - int(self.g.below(b)), self.n_i - int(self.i.below(b))
            return acc_i * self.n_g - (self.n_g - acc_g) * self.n_i

        lo, hi = 0, self.nb  # gap(0) > 0 (everything accepted); find the last b with gap(b) >= 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if gap(mid) >= 0 else (lo, mid)
        occupied_upto = self.g.upto[lo] + self.i.upto[lo]
        nxt = lo + 1 + int(np.searchsorted(self.g.upto[lo + 1:] + self.i.upto[lo + 1:], occupied_upto,
                                           side="right"))
        self._eer_bins = np.array([lo, nxt] if nxt < self.nb else [lo], dtype=np.intp)
        self.want[self._eer_bins] = True

    def eer(self) -> tuple[float, float]:
        in_bins = [c.kept[(c.kept_bins >= self._eer_bins[0]) & (c.kept_bins <= self._eer_bins[-1])]
                   for c in (self.g, self.i)]
        values = np.unique(np.concatenate(in_bins))
        # Accepting the unscored too is no operating point: the lowest threshold is the lowest real score.
        values = values[values >= self.floor]
        if not values.size:
            values = np.array([self.floor], dtype=self.dtype)
        acc_g, acc_i = self.accepted(values)
        a = acc_i.astype(np.int64) * self.n_g
        b = (self.n_g - acc_g).astype(np.int64) * self.n_i
        gap = a - b  # strictly decreasing over the distinct values
        nonneg = np.flatnonzero(gap >= 0)
        if not nonneg.size:  # FMR < FNMR already at the lowest real score
            sides = [0]
        else:
            sides = [nonneg[-1]] + ([nonneg[-1] + 1] if nonneg[-1] + 1 < values.size else [])
        best = None
        for j in sides:  # ascending: the later (higher threshold) wins ties, as metrics.eer does
            key = (abs(int(a[j]) - int(b[j])), int(a[j]) + int(b[j]))
            if best is None or key <= best[0]:
                best = (key, j)
        j = best[1]
        fmr, fnmr = acc_i[j] / self.n_i, (self.n_g - acc_g[j]) / self.n_g
        return float((fmr + fnmr) / 2), float(values[j])

    # -- AUC ---------------------------------------------------------------------------------------
    def plan_auc(self) -> None:
        self.want |= (self.g.hist > 0) & (self.i.hist > 0)  # bins holding both classes

    def auc(self) -> float:
        """(P(g > i) + P(g == i) / 2): the Mann-Whitney count, exactly, in integers."""
        # pairs in different bins (int64: the count reaches n_g * n_i)
        twice = 2 * int(np.dot(self.g.hist, self.i.upto - self.i.hist))
        g, gb = self.g.kept, self.g.kept_bins
        lower = np.searchsorted(self.i.kept, g, side="left")
        upper = np.searchsorted(self.i.kept, g, side="right")
        start = np.searchsorted(self.i.kept_bins, gb, side="left")
        twice += 2 * int((lower - start).sum(dtype=np.int64)) + int((upper - lower).sum(dtype=np.int64))
        return twice / (2 * self.n_g * self.n_i)

    # -- the thinned curve -------------------------------------------------------------------------
    def curve_fmrs(self, points: int) -> np.ndarray:
        return np.minimum(np.geomspace(1.0 / self.n_i, 1.0, points), 1.0)

    def plan_curve(self, points: int) -> None:
        self.plan_thresholds(self.curve_fmrs(points))
        lowest = min(int(np.searchsorted(self.g.upto, 0, side="right")),
                     int(np.searchsorted(self.i.upto, 0, side="right")))
        self.want[lowest] = True  # the lowest score: the curve's last point
        self.want[self.bin(np.array([self.floor]))] = True  # the lowest real score, when unscored ones lie below

    def curve(self, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        thresholds = self.thresholds_at(self.curve_fmrs(points))
        thresholds = np.unique(np.r_[np.inf, thresholds, self.floor])[::-1]
        acc_g, acc_i = self.accepted(thresholds)
        return acc_i / self.n_i, acc_g / self.n_g, thresholds


def roc_summary(genuine: Any, impostor: Any, fars: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), *,
                points: int = 400) -> RocSummary:
    """EER, TAR at ``fars``, AUC and a ``points``-point exact ROC, without sorting the scores.

    >>> r = roc_summary([0.9, 0.8, 0.7, 0.35], [0.1, 0.2, 0.3, 0.4], fars=[0.25, 1.0])
    >>> r.eer, r.eer_threshold, r.tars, r.auc
    (0.25, 0.4, (1.0, 1.0), 0.9375)
    """
    g, i = _scores(genuine, "genuine", unscored=True), _scores(impostor, "impostor", unscored=True)
    targets = [_fraction(f, "fars") for f in fars]
    if not targets:
        raise DataError("fars must not be empty")
    s = _Binned(g, i)
    s.plan_thresholds(targets)
    s.plan_eer()
    s.plan_auc()
    s.plan_curve(points)
    s.extract()  # one pass: the scores of every bin an exact answer needs
    thresholds = s.thresholds_at(targets).tolist()
    acc_g, _ = s.accepted(np.array(thresholds))
    eer_value, eer_t = s.eer()
    fmr, tmr, ct = s.curve(points)
    return RocSummary(eer_value, eer_t, tuple(targets), tuple(thresholds), tuple((acc_g / s.n_g).tolist()),
                      s.auc(), fmr, tmr, ct, s.n_g, s.n_i)
