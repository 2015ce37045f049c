"""Test oracles: TensorFlow's ops and face-api.js's post-processing, written as plain loops over
numpy arrays in TensorFlow's layouts (HWC images, HWIO filters), straight from their definitions,
sharing no code with the PyTorch modules they check."""

from __future__ import annotations

import math

import numpy as np


def tf_conv_by_hand(x_hwc: np.ndarray, w_hwio: np.ndarray, stride: int, depthwise: bool = False,
                    padding: str = "same") -> np.ndarray:
    """TensorFlow's conv2d / depthwise_conv2d (padding 'same' or 'valid'), by loops over the output."""
    h, w, _ = x_hwc.shape
    k = w_hwio.shape[0]
    if padding == "same":
        oh, ow = -(-h // stride), -(-w // stride)
        top = max((oh - 1) * stride + k - h, 0) // 2
        left = max((ow - 1) * stride + k - w, 0) // 2
    else:
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        top = left = 0
    padded = np.zeros((h + 2 * k, w + 2 * k, x_hwc.shape[2]))
    padded[top:top + h, left:left + w] = x_hwc
    out = []
    for i in range(oh):
        for j in range(ow):
            patch = padded[i * stride:i * stride + k, j * stride:j * stride + k]  # (k, k, C)
            out.append((patch * w_hwio[..., 0]).sum((0, 1)) if depthwise else np.einsum("abc,abco->o", patch, w_hwio))
    return np.array(out).reshape(oh, ow, -1)


def tf_max_pool_same(x_hwc: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's 2x2 max pool, padding 'same': windows hanging off the edge see only real pixels."""
    h, w, _ = x_hwc.shape
    oh, ow = -(-h // stride), -(-w // stride)
    top = max((oh - 1) * stride + 2 - h, 0) // 2
    left = max((ow - 1) * stride + 2 - w, 0) // 2
    out = np.zeros((oh, ow, x_hwc.shape[2]))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride - top, j * stride - left
            window = x_hwc[max(r0, 0):r0 + 2, max(c0, 0):c0 + 2]
            out[i, j] = window.reshape(-1, x_hwc.shape[2]).max(0)
    return out


def tf_resize_bilinear_legacy(x_hwc: np.ndarray, size: int) -> np.ndarray:
    """tfjs's resizeBilinear(x, [size, size], alignCorners=false, halfPixelCenters=false), per pixel."""
    h, w, c = x_hwc.shape
    out = np.zeros((size, size, c))
    for r in range(size):
        src_r = r * (h / size)
        top, bottom = math.floor(src_r), min(h - 1, math.ceil(src_r))
        fr = src_r - top
        for q in range(size):
            src_c = q * (w / size)
            left, right = math.floor(src_c), min(w - 1, math.ceil(src_c))
            fc = src_c - left
            top_v = x_hwc[top, left] + (x_hwc[top, right] - x_hwc[top, left]) * fc
            bottom_v = x_hwc[bottom, left] + (x_hwc[bottom, right] - x_hwc[bottom, left]) * fc
            out[r, q] = top_v + (bottom_v - top_v) * fr
    return out


def ssd_decode_by_hand(encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """face-api.js's decodeBoxesLayer, one anchor at a time: [ymin, xmin, ymax, xmax] out."""
    out = np.zeros_like(encodings, dtype=np.float64)
    for i, ((ty, tx, th, tw), (y0, x0, y1, x1)) in enumerate(zip(encodings, anchors)):
        size_y, size_x = y1 - y0, x1 - x0
        cy, cx = y0 + size_y / 2, x0 + size_x / 2
        half_h, half_w = math.exp(th / 5) * size_y / 2, math.exp(tw / 5) * size_x / 2
        ccy, ccx = ty / 10 * size_y + cy, tx / 10 * size_x + cx
        out[i] = [ccy - half_h, ccx - half_w, ccy + half_h, ccx + half_w]
    return out


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def tiny_extract_boxes_by_hand(out_hwc: np.ndarray, anchors, threshold: float) -> list[tuple[list[float], float]]:
    """face-api.js's TinyYolov2Base.extractBoxes for a square input (no correction factor):
    (box x1, y1, x2, y2 as fractions, score) for every cell and anchor scoring above ``threshold``."""
    n = out_hwc.shape[0]
    cells = out_hwc.reshape(n, n, len(anchors), 5)
    found = []
    for row in range(n):
        for col in range(n):
            for a, (aw, ah) in enumerate(anchors):
                tx, ty, tw, th, to = cells[row, col, a]
                score = sigmoid(to)
                if score > threshold:
                    cx, cy = (col + sigmoid(tx)) / n, (row + sigmoid(ty)) / n
                    w, h = math.exp(tw) * aw / n, math.exp(th) * ah / n
                    found.append(([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score))
    return found


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    if area(a) <= 0 or area(b) <= 0:
        return 0.0
    return inter / (area(a) + area(b) - inter)


def faceapi_ssd_nms(boxes, scores, max_output: int, iou_threshold: float, score_threshold: float) -> list[int]:
    """face-api.js's ssdMobilenetv1/nonMaxSuppression.ts (boxes x1, y1, x2, y2)."""
    candidates = sorted(((s, i) for i, s in enumerate(scores) if s > score_threshold), key=lambda c: -c[0])
    selected: list[int] = []
    for score, i in candidates:
        if len(selected) >= min(max_output, len(boxes)):
            break
        if all(_iou(boxes[i], boxes[j]) <= iou_threshold for j in selected):
            selected.append(i)
    return selected


def faceapi_nms(boxes, scores, iou_threshold: float) -> list[int]:
    """face-api.js's ops/nonMaxSuppression.ts (Tiny-YOLO's): pop the best, drop what overlaps it."""
    order = [i for _, i in sorted((s, i) for i, s in enumerate(scores))]  # ascending, pop from the end
    pick = []
    while order:
        best = order.pop()
        pick.append(best)
        order = [i for i in order if _iou(boxes[best], boxes[i]) <= iou_threshold]
    return pick
