"""Face alignment on 68 landmarks: the similarity transform that carries a detector's iBUG-68
points onto dlib's mean face, and the square "face chip" it cuts.

A detector that finds the 68 points of the iBUG 300-W layout names them :data:`IBUG68_NAMES`
in its :class:`~verikit.structures.Detections`; :class:`~verikit.pipeline.detection.FaceCropper`
then aligns with :func:`face_chip` instead of only levelling the eyes. The template is dlib's
``get_face_chip_details`` mean face (points 17-67: brows, nose, eyes, mouth; the jaw line is
left out because it moves with pose), so a chip cut with margin 0.25 is the chip dlib's face
descriptor was trained on. The transform is the least-squares similarity (rotation, uniform
scale, translation; Umeyama without reflection), as dlib's ``find_similarity_transform``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

IBUG68_NAMES = tuple(f"ibug68_{i:02d}" for i in range(68))
TEMPLATE_FIRST = 17  # the template covers points 17..67

# dlib's mean face (dlib/image_transforms/interpolation.h), points 17..67, in [0, 1] of the face box.
MEAN_FACE_X = (0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991,
               0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373,
               0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132,
               0.858516, 0.79751, 0.719335, 0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268,
               0.726104, 0.642159, 0.556721, 0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127,
               0.552157, 0.689874, 0.553364, 0.490127, 0.42689)
MEAN_FACE_Y = (0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482,
               0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106,
               0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733,
               0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405, 0.727388, 0.742578,
               0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792,
               0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182)
MIN_CHIP = 16


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix ``[[a, -b, tx], [b, a, ty]]`` minimising sum ||A src_i - dst_i||^2."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    norm = float((s ** 2).sum())
    if norm <= 0:
        raise ValueError("similarity_transform needs at least two distinct source points")
    a = float((s * d).sum()) / norm
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (md - rot @ ms)[:, None]])


def ibug68_points(dets: Any, i: int) -> np.ndarray | None:
    """Detection ``i``'s 68 points as a (68, 2) array, or None unless all 68 were found."""
    names = tuple(dets.landmark_names)
    if dets.landmarks is None or not set(IBUG68_NAMES) <= set(names):
        return None
    pts = np.asarray(dets.landmarks[i])[[names.index(n) for n in IBUG68_NAMES]]
    return pts.astype(np.float64) if np.isfinite(pts).all() else None


def face_chip(image: Any, points: np.ndarray, margin: float) -> Any:
    """The square chip in which ``points`` (68, 2) sit on the mean face, ``margin`` x its size
    around it on every side, at the image's own resolution (no upsampling of a small face)."""
    from PIL import Image

    template = np.stack([MEAN_FACE_X, MEAN_FACE_Y], 1)  # unit face box coordinates
    to_image = similarity_transform(template, points[TEMPLATE_FIRST:])  # unit face -> image pixels
    face_px = float(np.hypot(*to_image[:, 0]))  # pixels per unit of the face box
    side = max(MIN_CHIP, round(face_px * (1.0 + 2.0 * margin)))
    # chip (u, v) -> unit face ((u, v) * scale - margin) -> image: one affine map, in continuous
    # coordinates (pixel i spans [i, i + 1]) on both sides, as PIL's transform samples
    scale = (1.0 + 2.0 * margin) / side
    lin = to_image[:, :2] * scale
    offset = to_image[:, 2] - to_image[:, :2] @ np.array([margin, margin])
    coeffs = (lin[0, 0], lin[0, 1], offset[0], lin[1, 0], lin[1, 1], offset[1])
    return image.transform((side, side), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
