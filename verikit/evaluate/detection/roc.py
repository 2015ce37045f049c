"""The discrete detection ROC: true positives against the total count of false positives, as the
detector's score threshold falls, with recall at a false-positive count and average precision.

Two ways to get one:

* :func:`fddb_roc` -- FDDB's own protocol (Jain & Learned-Miller 2010, the ``evaluate`` program):
  for every image and every distinct score ``s`` of its detections, the detections scoring
  ``>= s`` are matched one-to-one with the faces by the Hungarian algorithm, maximising the
  summed overlap; a matched pair whose overlap is ``> 0.5`` is a true positive, every other
  detection above the threshold a false positive. The curve's point at a threshold adds up, over
  images, each image's result at its own smallest score above that threshold.
* :func:`ranked_roc` -- from detections already ranked and marked true or false (the VOC-style
  greedy matching of :mod:`verikit.evaluate.detection.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class DiscreteROC:
    """One point per distinct score threshold, highest threshold first."""

    thresholds: np.ndarray       # (K,) descending
    true_positives: np.ndarray   # (K,) int
    false_positives: np.ndarray  # (K,) int
    n_faces: int

    @property
    def recall(self) -> np.ndarray:
        return self.true_positives / self.n_faces if self.n_faces else np.full(len(self.thresholds), np.nan)

    def recall_at_fp(self, fp: int) -> float:
        """The best recall with at most ``fp`` false positives (0.0 when even the first point has more)."""
        ok = self.false_positives <= fp
        return float(self.recall[ok].max()) if ok.any() else 0.0

    def average_precision(self) -> float:
        return ap_from_counts(self.true_positives, self.false_positives, self.n_faces)

    def corners(self) -> np.ndarray:
        """Indices of the points where the true positives rise, and the last point: the recall at
        any number of false positives reads the same from them as from every point (a detector
        scoring every box differently has as many points as boxes; this keeps at most faces + 2)."""
        if not len(self.thresholds):
            return np.zeros(0, dtype=np.int64)
        rise = np.r_[True, self.true_positives[1:] != self.true_positives[:-1]]
        rise[-1] = True
        return np.flatnonzero(rise)

    def at_fp(self, fps: "Sequence[int]") -> list[float]:
        """The recall at each of several false-positive counts."""
        return [self.recall_at_fp(int(f)) for f in fps]

    def to_dict(self) -> dict:
        """The curve's corners (:meth:`corners`), with the number of points it has in all."""
        keep = self.corners()
        return {"thresholds": [round(float(t), 6) for t in self.thresholds[keep]],
                "true_positives": [int(v) for v in self.true_positives[keep]],
                "false_positives": [int(v) for v in self.false_positives[keep]], "faces": self.n_faces,
                "points": int(len(self.thresholds))}


def ap_from_counts(tps: np.ndarray, fps: np.ndarray, n_gt: int) -> float:
    """Area under the precision envelope of a curve of cumulative true / false positives
    (PASCAL VOC 2010+ "all points"); NaN without ground truth, 0 without detections."""
    if n_gt == 0:
        return float("nan")
    tps, fps = np.asarray(tps, dtype=np.float64), np.asarray(fps, dtype=np.float64)
    if tps.size == 0:
        return 0.0
    recall = tps / n_gt
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=(tps + fps) > 0)
    r = np.concatenate([[0.0], recall, [recall[-1]]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: best precision at this recall or beyond
    steps = np.where(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def ranked_roc(scores: np.ndarray, is_tp: np.ndarray, n_gt: int) -> DiscreteROC:
    """The ROC of detections ranked best first (``scores`` descending) and marked true or false."""
    scores, is_tp = np.asarray(scores, dtype=np.float64), np.asarray(is_tp, dtype=bool)
    tps, fps = np.cumsum(is_tp), np.cumsum(~is_tp)
    last = np.r_[scores[1:] != scores[:-1], True] if scores.size else np.zeros(0, bool)  # one point per score
    return DiscreteROC(scores[last], tps[last], fps[last], int(n_gt))


def _matched(overlaps: np.ndarray, keep: np.ndarray, min_overlap: float) -> int:
    """True positives among the kept detections: one-to-one matching maximising summed overlap."""
    from scipy.optimize import linear_sum_assignment

    sub = overlaps[:, keep]
    if not sub.size:
        return 0
    rows, cols = linear_sum_assignment(sub, maximize=True)
    return int((sub[rows, cols] > min_overlap).sum())


def fddb_roc(overlaps: Sequence[np.ndarray], scores: Sequence[np.ndarray], n_faces: int,
             min_overlap: float = 0.5) -> DiscreteROC:
    """FDDB's discrete ROC from each image's (faces x detections) ``overlaps`` and detection
    ``scores``; a matched pair counts when its overlap is strictly above ``min_overlap``."""
    events: dict[float, list[int]] = {}  # threshold -> [change in TP, change in detections]
    for ov, sc in zip(overlaps, scores):
        sc = np.asarray(sc, dtype=np.float64).reshape(-1)
        if not sc.size:
            continue  # no detection: the image adds its faces, nothing else
        ov = np.asarray(ov, dtype=np.float64).reshape(-1, sc.size)
        # a detection touching no face is a false positive at every threshold: only the others
        # can change the matching
        touching = (ov > 0).any(0) if ov.shape[0] else np.zeros(sc.size, bool)
        previous = 0
        for s in np.unique(sc)[::-1]:  # falling threshold
            keep = sc >= s
            tp = _matched(ov, keep & touching, min_overlap) if (touching & (sc == s)).any() else previous
            entry = events.setdefault(float(s), [0, 0])
            entry[0] += tp - previous
            entry[1] += int((sc == s).sum())
            previous = tp
    thresholds = np.array(sorted(events, reverse=True), dtype=np.float64)
    d_tp = np.array([events[t][0] for t in thresholds], dtype=np.int64)
    d_det = np.array([events[t][1] for t in thresholds], dtype=np.int64)
    tps, dets = np.cumsum(d_tp), np.cumsum(d_det)
    return DiscreteROC(thresholds, tps, dets - tps, int(n_faces))
