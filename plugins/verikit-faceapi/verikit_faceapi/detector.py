"""The ``faceapi`` detector's landmark stage: face boxes from a box detector (face-api.js's SSD by
default, :mod:`verikit_faceapi.face_detector`; or any verikit detector), and face-api.js's
68-landmark network run on each box. The boxes and scores are the box detector's, unchanged: this
stage only adds landmarks.

Its :class:`~verikit.structures.Detections` carry the 68 iBUG points
(:data:`verikit.pipeline.alignment.IBUG68_NAMES`) and the two eye centres (``left_eye``,
``right_eye``, as seen in the image), so verikit cuts dlib-style face chips from them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from PIL import ImageOps

from verikit.plugin_api import Detections, IBUG68_NAMES

from .nets import LANDMARK_SIZE, MEAN_RGB

LANDMARK_NAMES = (*IBUG68_NAMES, "left_eye", "right_eye")
# iBUG 36-41 outline the subject's right eye, which is on the image's left.
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)


def square_input(image: Any, box: Sequence[float]) -> tuple[torch.Tensor, float, float, float]:
    """face-api.js's preparation of one face: the box cut out, zero-padded to a centred square,
    resized to 112 px, mean-subtracted and / 255. Returns (tensor, square side, left, top), the
    last three in image pixels, to map the network's fractions back."""
    from PIL import Image

    x1, y1, x2, y2 = (round(float(v)) for v in box)
    crop = image.convert("RGB").crop((x1, y1, x2, y2))
    side = max(crop.size)
    square = Image.new("RGB", (side, side))
    dx, dy = (side - crop.width) // 2, (side - crop.height) // 2
    square.paste(crop, (dx, dy))
    x = torch.from_numpy(np.asarray(square.resize((LANDMARK_SIZE, LANDMARK_SIZE), Image.Resampling.BILINEAR),
                                    np.float32))
    x = (x.permute(2, 0, 1) - torch.tensor(MEAN_RGB)[:, None, None]) / 255.0
    return x, float(side), float(x1 - dx), float(y1 - dy)


class FaceApiLandmarkDetector:
    """Boxes from ``box_detector`` (None: the whole image is the face), passed through unchanged,
    with 68 landmarks per box.
    With ``equalize`` the landmark network sees a histogram-equalised copy of each image (dark
    or low-contrast photos); the boxes, and the crops verikit cuts, come from the image as given."""

    def __init__(self, net: torch.nn.Module, box_detector: Any, margin: float, equalize: bool = False,
                 batch_size: int = 32) -> None:
        self.net = net.eval()
        self.box_detector = box_detector
        self.margin = margin
        self.equalize = equalize
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return (f"FaceApiLandmarkDetector(boxes={self.box_detector!r}, margin={self.margin}, "
                f"equalize={self.equalize})")

    def _boxes(self, images: Sequence[Any]) -> list[Detections]:
        if self.box_detector is None:
            return [Detections([[0, 0, *im.size]], [1.0], image_size=im.size) for im in images]
        return list(self.box_detector.detect(list(images)))

    @torch.inference_mode()
    def detect(self, images: Sequence[Any]) -> list[Detections]:
        from verikit.plugin_api import expand_box

        if not images:
            return []
        found = self._boxes(images)
        seen = [ImageOps.equalize(im.convert("RGB")) for im in images] if self.equalize else images
        jobs = [(k, i) for k, dets in enumerate(found) for i in range(len(dets))]
        inputs = [square_input(seen[k], expand_box(found[k].boxes[i], self.margin, images[k].size))
                  for k, i in jobs]
        points: list[np.ndarray] = []
        for start in range(0, len(inputs), self.batch_size):
            chunk = inputs[start:start + self.batch_size]
            frac = self.net(torch.stack([x for x, *_ in chunk])).numpy()
            points += [f * side + np.array([left, top]) for f, (_, side, left, top) in zip(frac, chunk)]
        out = []
        for k, (image, dets) in enumerate(zip(images, found)):
            pts = [p for (kk, _), p in zip(jobs, points) if kk == k]
            marks = np.stack([np.vstack([p, p[LEFT_EYE].mean(0), p[RIGHT_EYE].mean(0)]) for p in pts]) \
                if pts else np.zeros((0, len(LANDMARK_NAMES), 2), np.float32)
            out.append(Detections(dets.boxes, dets.scores, landmarks=marks, landmark_names=LANDMARK_NAMES,
                                  image_size=image.size))
        return out
