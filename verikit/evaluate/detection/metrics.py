"""Detection metrics at an IoU threshold: precision, recall and average precision (AP).

Pure functions on numpy arrays; no detector, no files. Matching follows PASCAL VOC: detections of
all images are ranked by score (ties broken by image, then box corners); each one, in that order, takes the
not-yet-matched ground-truth box of its own image with which it has the highest IoU, provided that
IoU is >= the threshold (true positive); otherwise it is a false positive. Ground truth marked
``ignore`` (VOC "difficult") counts neither way: a detection matched to it is dropped.
AP is the area under the precision envelope (VOC 2010+ "all points" interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), both x1, y1, x2, y2 -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass(frozen=True)
class DetectionMetrics:
    """Figures of one detector on one labelled set, at one IoU threshold."""

    precision: float
    recall: float
    average_precision: float
    true_positives: int
    false_positives: int
    ground_truth: int
    detections: int
    iou_threshold: float

    def to_dict(self) -> dict:
        return {"precision": round(self.precision, 6), "recall": round(self.recall, 6),
                "ap": round(self.average_precision, 6), "true_positives": self.true_positives,
                "false_positives": self.false_positives, "ground_truth": self.ground_truth,
                "detections": self.detections, "iou_threshold": self.iou_threshold}


def match_detections(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                     gt_boxes: Sequence[np.ndarray], gt_ignore: Sequence[np.ndarray] | None = None,
                     iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Rank and match detections over several images.

    Returns (scores, is_true_positive) of the kept detections in rank order, and the number of
    ground-truth boxes that count (not ignored).
    """
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise ValueError("one entry per image is needed in pred_boxes, pred_scores and gt_boxes")
    ignore = [np.zeros(len(np.asarray(g).reshape(-1, 4)), bool) for g in gt_boxes] if gt_ignore is None \
        else [np.asarray(i, dtype=bool) for i in gt_ignore]
    order: list[tuple[float, int, tuple[float, ...], int]] = []
    for img, (boxes, scores) in enumerate(zip(pred_boxes, pred_scores)):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        order.extend((-float(s), img, tuple(boxes[k]), k) for k, s in enumerate(np.asarray(scores).reshape(-1)))
    # Descending score; ties by image, then box corners: the result does not depend on the order a
    # detector happened to list its boxes in (OpenCV's is not stable across threads).
    order.sort()
    ious = [iou_matrix(p, g) for p, g in zip(pred_boxes, gt_boxes)]
    taken = [np.zeros(len(i), bool) for i in ignore]
    kept_scores, tp = [], []
    for neg_score, img, _, k in order:
        row = ious[img][k] if ious[img].shape[1] else np.zeros(0)
        candidates = np.where(~taken[img] & (row >= iou_threshold))[0] if row.size else np.zeros(0, int)
        if candidates.size:
            best = int(candidates[np.argmax(row[candidates])])
            taken[img][best] = True
            if ignore[img][best]:
                continue  # matched something we do not score: neither TP nor FP
            kept_scores.append(-neg_score)
            tp.append(True)
        else:
            kept_scores.append(-neg_score)
            tp.append(False)
    n_gt = int(sum(int((~i).sum()) for i in ignore))
    return np.asarray(kept_scores, dtype=np.float64), np.asarray(tp, dtype=bool), n_gt


def average_precision(is_tp: np.ndarray, n_gt: int) -> float:
    """Area under the precision envelope for ranked true/false positives (VOC all-points)."""
    from .roc import ap_from_counts

    is_tp = np.asarray(is_tp, dtype=bool)
    return ap_from_counts(np.cumsum(is_tp), np.cumsum(~is_tp), n_gt)


def detection_metrics(pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      gt_boxes: Sequence[np.ndarray], gt_ignore: Sequence[np.ndarray] | None = None,
                      iou_threshold: float = 0.5) -> DetectionMetrics:
    """Precision and recall of all detections, and AP, at ``iou_threshold``."""
    _, is_tp, n_gt = match_detections(pred_boxes, pred_scores, gt_boxes, gt_ignore, iou_threshold)
    tp, fp = int(is_tp.sum()), int((~is_tp).sum())
    return DetectionMetrics(precision=tp / (tp + fp) if tp + fp else 0.0, recall=tp / n_gt if n_gt else float("nan"),
                            average_precision=average_precision(is_tp, n_gt), true_positives=tp,
                            false_positives=fp, ground_truth=n_gt, detections=tp + fp, iou_threshold=iou_threshold)
