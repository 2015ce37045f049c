"""The Haar-cascade detector: RGB PIL images in, :class:`verikit.structures.Detections` out.

Boxes are exactly what ``cv2.CascadeClassifier.detectMultiScale`` returns for the grey image with
the same parameters (we call ``detectMultiScale2``, the same search, to also get each box's
neighbour count, which serves as its score). Eyes, when asked for, are searched inside the upper
part of each face with ``haarcascade_eye``: the best candidate in each half of the face becomes
the ``left_eye`` / ``right_eye`` landmark (as seen in the image); a face without both gets NaN.

An image where nothing is found is searched once more inside a replicated border (``border``, a
fraction of its longer side): a face that fills the frame, as in a photo that is already a face
crop, leaves the cascade's sliding window no room at the edges (on ORL's 400 face photos: 52
missed without the border, none with 20%). Images where the first search finds a face keep
exactly OpenCV's boxes.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from verikit.plugin_api import Detections, PluginError

from . import CASCADES

EYE_NAMES = ("left_eye", "right_eye")
_EYE_CASCADE = "haarcascade_eye.xml"
_MAX_EYE_TILT_DEG = 35.0  # a steeper "eye line" is a mis-detection, not a tilted face


def _load_cascade(filename: str) -> "cv2.CascadeClassifier":
    path = os.path.join(cv2.data.haarcascades, filename)
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise PluginError(f"cannot load Haar cascade '{path}' (opencv-python-headless 4.x ships it; 5.x does not)")
    return classifier


def to_grey(image: Image.Image) -> np.ndarray:
    """RGB PIL image -> uint8 grey array, with OpenCV's own colour weights."""
    arr = np.asarray(image.convert("RGB"))
    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)


class HaarDetector:
    """``haar:<cascade>``; see :func:`verikit_haar.create` for the options."""

    def __init__(self, cascade: str, *, scale_factor: float, min_neighbors: int, min_size: tuple[int, int] | None,
                 max_size: tuple[int, int] | None, eyes: bool, equalize: bool, border: float) -> None:
        self.cascade = cascade
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_size = max_size
        self.eyes = eyes
        self.equalize = equalize
        self.border = border
        self._faces = _load_cascade(CASCADES[cascade])
        self._eyes = _load_cascade(_EYE_CASCADE) if eyes else None

    def __repr__(self) -> str:
        return (f"HaarDetector({self.cascade!r}, scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
                f"min_size={self.min_size}, max_size={self.max_size}, eyes={self.eyes}, equalize={self.equalize}, "
                f"border={self.border})")

    def detect(self, images: Sequence[Image.Image]) -> list[Detections]:
        return [self._detect_one(im) for im in images]

    def detect_grey(self, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw boxes (N, 4) as x, y, w, h int32 and neighbour counts (N,) for a grey uint8 image."""
        if self.equalize:
            grey = cv2.equalizeHist(grey)
        kwargs = {"scaleFactor": self.scale_factor, "minNeighbors": self.min_neighbors}
        if self.min_size:
            kwargs["minSize"] = self.min_size
        if self.max_size:
            kwargs["maxSize"] = self.max_size
        boxes, neighbours = self._faces.detectMultiScale2(grey, **kwargs)
        boxes = np.asarray(boxes, dtype=np.int32).reshape(-1, 4)
        neighbours = np.asarray(neighbours, dtype=np.float32).reshape(-1)
        # OpenCV's output order depends on its thread scheduling; list by score, then position.
        order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 0], boxes[:, 1], -neighbours))
        return boxes[order], neighbours[order]

    def _detect_one(self, image: Image.Image) -> Detections:
        grey = to_grey(image)
        xywh, neighbours = self.detect_grey(grey)
        pad = 0
        if not len(xywh) and self.border > 0:
            pad = max(1, round(self.border * max(grey.shape)))
            grey = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            xywh, neighbours = self.detect_grey(grey)
        w_img, h_img = image.size
        if not len(xywh):
            return Detections.empty(image_size=(w_img, h_img))
        boxes = xywh.astype(np.float32)
        boxes[:, :2] -= pad             # back to the image's own coordinates
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        np.clip(boxes, 0, [w_img, h_img, w_img, h_img], out=boxes)
        if self._eyes is None:
            return Detections(boxes, neighbours, image_size=(w_img, h_img))
        eyes = np.stack([self._find_eyes(grey, box) for box in xywh]) - pad  # NaN (not found) stays NaN
        return Detections(boxes, neighbours, landmarks=eyes, landmark_names=EYE_NAMES, image_size=(w_img, h_img))

    def _find_eyes(self, grey: np.ndarray, face: np.ndarray) -> np.ndarray:
        """(2, 2) centres of the left and right eye in image pixels; NaN rows when not both found."""
        x, y, w, h = (int(v) for v in face)
        roi = grey[y:y + int(h * 0.6), x:x + w]  # eyes sit in the upper part of a face
        missing = np.full((2, 2), np.nan, dtype=np.float32)
        side = max(1, w // 10)
        if roi.size == 0:
            return missing
        found, counts = self._eyes.detectMultiScale2(roi, scaleFactor=1.1, minNeighbors=3, minSize=(side, side),
                                                     maxSize=(w // 2 + 1, w // 2 + 1))
        found = np.asarray(found).reshape(-1, 4)
        counts = np.asarray(counts).reshape(-1)
        best: list[tuple[float, float] | None] = [None, None]
        best_count = [-1.0, -1.0]
        for (ex, ey, ew, eh), c in zip(found, counts):
            cx, cy = x + ex + ew / 2.0, y + ey + eh / 2.0
            half = 0 if cx < x + w / 2.0 else 1
            if c > best_count[half]:
                best[half], best_count[half] = (cx, cy), float(c)
        if best[0] is None or best[1] is None:
            return missing
        (lx, ly), (rx, ry) = best
        if abs(math.degrees(math.atan2(ry - ly, rx - lx))) > _MAX_EYE_TILT_DEG:
            return missing
        return np.array([[lx, ly], [rx, ry]], dtype=np.float32)
