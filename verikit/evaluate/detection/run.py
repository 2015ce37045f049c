"""Run a detector over a labelled image set and score it (``verikit benchmark detection``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...errors import DataError, ImageError
from .annotations import AnnotatedImage
from .metrics import DetectionMetrics, detection_metrics


@dataclass
class DetectionEvaluation:
    """Metrics of one detector on one annotation set, plus what it could not read and the time taken."""

    metrics: DetectionMetrics
    images: int
    seconds: float
    failures: list[tuple[Path, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.metrics.to_dict(), "images": self.images, "seconds": round(self.seconds, 4),
                "failures": [{"path": str(p), "reason": r} for p, r in self.failures]}


def evaluate_detector(detector: Any, items: Sequence[AnnotatedImage], *, iou_threshold: float = 0.5,
                      batch_size: int = 8, progress: Callable[[int], None] | None = None) -> DetectionEvaluation:
    """Detect on every annotated image (batched) and compute precision / recall / AP.

    An unreadable image is skipped and reported; its ground truth is left out of the figures.
    """
    from ...io import load_image

    if not 0.0 < iou_threshold <= 1.0:
        raise DataError(f"IoU threshold must be in (0, 1], got {iou_threshold}")
    pred_boxes, pred_scores, gts, ignores, failures = [], [], [], [], []
    seconds = 0.0
    for start in range(0, len(items), batch_size):
        batch, images = [], []
        for item in items[start:start + batch_size]:
            try:
                images.append(load_image(item.path))
                batch.append(item)
            except ImageError as exc:
                failures.append((item.path, str(exc)))
        t = time.perf_counter()
        results = detector.detect(images) if images else []
        seconds += time.perf_counter() - t
        for item, dets in zip(batch, results):
            pred_boxes.append(np.asarray(dets.boxes))
            pred_scores.append(np.asarray(dets.scores))
            gts.append(item.boxes)
            ignores.append(item.ignore)
        if progress is not None:
            progress(len(items[start:start + batch_size]))
    if not gts:
        raise DataError("no annotated image could be read" + (f": {failures[0][1]}" if failures else ""))
    metrics = detection_metrics(pred_boxes, pred_scores, gts, ignores, iou_threshold)
    return DetectionEvaluation(metrics, len(gts), seconds, failures)
