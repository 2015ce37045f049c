"""Streaming (histogram) ROC for score sets that do not fit in memory, with stated error bounds.

Scores are counted into ``bins`` equal-width bins over ``[lo, hi]`` (cosine similarities: the
default ``[-1, 1]``), chunk by chunk; memory is ``16 * bins`` bytes whatever the number of scores.
Thresholds can then only sit on bin edges, and every rate is reported with the interval the
exact value is guaranteed to lie in:

* **TAR at FAR**: the threshold is the lowest edge ``e_j`` whose FMR is ``<= far`` (so the
  FMR there is exact and within target). The exact threshold of
  :func:`~verikit.evaluate.metrics.threshold_at_fmr` lies in ``(e_{j-1}, e_j]``, hence
  ``TAR(e_j) <= TAR_exact <= TAR(e_{j-1})``: the error is at most the genuine fraction in the
  one bin below the edge (``tar_high - tar_low``).
* **EER**: between the two edges where ``FMR - FNMR`` changes sign, so the exact EER lies in
  ``[(FMR(e_{j+1}) + FNMR(e_j)) / 2, (FMR(e_j) + FNMR(e_{j+1})) / 2]``.

With 2^20 bins over [-1, 1] a bin is 1.9e-6 wide: finer than float32 resolution near 1 is not,
so bounds are usually tight; they are computed from the data, not assumed. (Bin indices are
computed in float64; a score within rounding of an edge may land in the neighbouring bin.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from verikit.errors import DataError

from .metrics import _fraction, _max_accepted, _scores

__all__ = ["HistogramRoc", "BoundedRate"]


@dataclass(frozen=True)
class BoundedRate:
    """A rate at a bin-edge threshold and the interval ``[low, high]`` the exact rate lies in."""

    threshold: float
    value: float
    low: float
    high: float


class HistogramRoc:
    """Accumulate genuine / impostor counts per bin; query TAR at FAR and EER with bounds.

    >>> h = HistogramRoc(bins=8, lo=0.0, hi=1.0)
    >>> h.update(genuine=[0.9, 0.8, 0.7, 0.35], impostor=[0.1, 0.2, 0.3, 0.4])
    >>> r = h.tar_at_far([0.25])[0]
    >>> r.threshold, r.value, r.low, r.high
    (0.375, 0.75, 0.75, 1.0)
    """

    def __init__(self, bins: int = 1 << 20, lo: float = -1.0, hi: float = 1.0) -> None:
        if bins < 1 or not hi > lo:
            raise DataError(f"need bins >= 1 and hi > lo, got bins={bins}, lo={lo}, hi={hi}")
        self.bins, self.lo, self.hi = int(bins), float(lo), float(hi)
        self.edges = np.linspace(self.lo, self.hi, self.bins + 1)
        self.genuine = np.zeros(self.bins, np.int64)
        self.impostor = np.zeros(self.bins, np.int64)

    def _bin(self, x: Any, name: str) -> np.ndarray:
        s = _scores(x, name)
        lo_v, hi_v = float(s.min()), float(s.max())
        if lo_v < self.lo or hi_v > self.hi:
            raise DataError(f"{name} has scores outside [{self.lo}, {self.hi}] (min {lo_v}, max {hi_v}); "
                            "widen lo/hi")
        idx = ((s.astype(np.float64) - self.lo) * (self.bins / (self.hi - self.lo))).astype(np.int64)
        np.minimum(idx, self.bins - 1, out=idx)
        return np.bincount(idx, minlength=self.bins)

    def update(self, genuine: Any = None, impostor: Any = None) -> None:
        """Add a chunk of genuine and/or impostor scores."""
        if genuine is not None and np.size(genuine):
            self.genuine += self._bin(genuine, "genuine")
        if impostor is not None and np.size(impostor):
            self.impostor += self._bin(impostor, "impostor")

    def _tails(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Counts ``>= edges[j]`` for j = 0..bins (last: 0)."""
        g = np.r_[np.cumsum(self.genuine[::-1])[::-1], 0]
        i = np.r_[np.cumsum(self.impostor[::-1])[::-1], 0]
        if g[0] == 0 or i[0] == 0:
            raise DataError("need at least one genuine and one impostor score")
        return g, i, int(g[0]), int(i[0])

    def tar_at_far(self, fars: Sequence[float]) -> list[BoundedRate]:
        """TAR at the lowest bin edge whose FMR is ``<= far``, with the exact TAR's bounds."""
        g, i, n_g, n_i = self._tails()
        out = []
        for far in fars:
            allowed = _max_accepted(n_i, _fraction(far, "fars"))
            j = int(np.searchsorted(-i, -allowed, side="left"))  # first edge with i[j] <= allowed
            high = g[j - 1] if j > 0 else g[j]
            out.append(BoundedRate(float(self.edges[j]), float(g[j] / n_g), float(g[j] / n_g), float(high / n_g)))
        return out

    def eer(self) -> BoundedRate:
        """EER at the edge nearest the crossing, with the interval the exact EER lies in."""
        g, i, n_g, n_i = self._tails()
        fmr, fnmr = i / n_i, (n_g - g) / n_g  # the same arithmetic as metrics.eer
        j = int(np.searchsorted(-(fmr - fnmr), 0.0, side="right")) - 1  # last edge with fmr >= fnmr
        j = min(max(j, 0), self.bins - 1)
        low = (fmr[j + 1] + fnmr[j]) / 2
        high = (fmr[j] + fnmr[j + 1]) / 2
        best = j if abs(fmr[j] - fnmr[j]) <= abs(fmr[j + 1] - fnmr[j + 1]) else j + 1
        return BoundedRate(float(self.edges[best]), float((fmr[best] + fnmr[best]) / 2), float(low), float(high))
