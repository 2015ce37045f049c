"""Run a detector over a labelled image set and score it (``verikit benchmark detection``).

Boxes (dlib XML, VOC, CSV) are scored the PASCAL VOC way (:mod:`.metrics`); FDDB's ellipses the
FDDB way (:func:`.roc.fddb_roc` on region overlaps, :mod:`.regions`). Either way the result
carries the discrete ROC (true positives against false positives over the score threshold), the
recall at a false-positive count and the average precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import DataError, ImageError
from .annotations import AnnotatedImage
from .metrics import DetectionMetrics, detection_metrics, match_detections
from .roc import DiscreteROC, fddb_roc, ranked_roc

AT_FP = 1000  # FDDB's customary operating point: recall at 1,000 false positives over the set


@dataclass
class DetectionEvaluation:
    """Metrics of one detector on one annotation set, its ROC, what it could not read, the time taken."""

    metrics: DetectionMetrics
    images: int
    seconds: float
    failures: list[tuple[Path, str]] = field(default_factory=list)
    roc: DiscreteROC | None = None
    scoring: str = "box IoU (PASCAL VOC greedy matching)"
    at_fp: int = AT_FP

    @property
    def recall_at_fp(self) -> float:
        return self.roc.recall_at_fp(self.at_fp) if self.roc is not None else float("nan")

    @property
    def max_false_positives(self) -> int:
        """The false positives at the detector's lowest score: the ROC stops there."""
        return int(self.roc.false_positives[-1]) if self.roc is not None and len(self.roc.thresholds) else 0

    def to_dict(self) -> dict[str, Any]:
        out = {**self.metrics.to_dict(), "images": self.images, "seconds": round(self.seconds, 4),
               "failures": [{"path": str(p), "reason": r} for p, r in self.failures], "scoring": self.scoring}
        if self.roc is not None:
            out["recall_at_fp"] = {"false_positives": self.at_fp, "recall": round(self.recall_at_fp, 6),
                                   "curve_ends_at_fp": self.max_false_positives,
                                   "reached": self.max_false_positives >= self.at_fp}
            out["roc"] = self.roc.to_dict()
        return out


def _load_batches(items: Sequence[AnnotatedImage], batch_size: int, failures: list[tuple[Path, str]]):
    from ...io import load_image

    for start in range(0, len(items), batch_size):
        batch, images = [], []
        for item in items[start:start + batch_size]:
            try:
                images.append(load_image(item.path))
                batch.append(item)
            except ImageError as exc:
                failures.append((item.path, str(exc)))
        yield len(items[start:start + batch_size]), batch, images


def evaluate_detector(detector: Any, items: Sequence[AnnotatedImage], *, iou_threshold: float = 0.5,
                      batch_size: int = 8, progress: Callable[[int], None] | None = None,
                      at_fp: int = AT_FP) -> DetectionEvaluation:
    """Detect on every annotated image (batched) and score the detections.

    Items with ellipses (FDDB) are scored by FDDB's rule: region overlap strictly above
    ``iou_threshold``, one-to-one matching per threshold. Others: box IoU at least
    ``iou_threshold``, VOC matching. An unreadable image is skipped and reported; its ground
    truth is left out of the figures.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise DataError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
    ellipses = bool(items) and all(item.ellipses is not None for item in items)
    pred_boxes, pred_scores, gts, ignores, overlaps = [], [], [], [], []
    failures: list[tuple[Path, str]] = []
    seconds = 0.0
    for n, batch, images in _load_batches(items, batch_size, failures):
        t = time.perf_counter()
        results = detector.detect(images) if images else []
        seconds += time.perf_counter() - t
        for item, image, dets in zip(batch, images, results):
            pred_boxes.append(np.asarray(dets.boxes))
            pred_scores.append(np.asarray(dets.scores))
            gts.append(item.boxes)
            ignores.append(item.ignore)
            if ellipses:
                from .regions import ellipse_box_overlaps

                overlaps.append(ellipse_box_overlaps(item.ellipses, dets.boxes, image.size))
        if progress is not None:
            progress(n)
    if not gts:
        raise DataError("no annotated image could be read" + (f": {failures[0][1]}" if failures else ""))
    if ellipses:
        n_faces = int(sum(len(g) for g in gts))
        roc = fddb_roc(overlaps, pred_scores, n_faces, iou_threshold)
        tp = int(roc.true_positives[-1]) if len(roc.thresholds) else 0
        fp = int(roc.false_positives[-1]) if len(roc.thresholds) else 0
        metrics = DetectionMetrics(precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / n_faces if n_faces else float("nan"),
                                   average_precision=roc.average_precision(), true_positives=tp, false_positives=fp,
                                   ground_truth=n_faces, detections=tp + fp, iou_threshold=iou_threshold)
        scoring = (f"FDDB discrete score: ellipse-region overlap > {iou_threshold:g}, one-to-one (Hungarian) "
                   "matching at every score threshold")
        return DetectionEvaluation(metrics, len(gts), seconds, failures, roc, scoring, at_fp)
    metrics = detection_metrics(pred_boxes, pred_scores, gts, ignores, iou_threshold)
    scores, is_tp, n_gt = match_detections(pred_boxes, pred_scores, gts, ignores, iou_threshold)
    return DetectionEvaluation(metrics, len(gts), seconds, failures, ranked_roc(scores, is_tp, n_gt),
                               f"box IoU >= {iou_threshold:g}, PASCAL VOC greedy matching", at_fp)
