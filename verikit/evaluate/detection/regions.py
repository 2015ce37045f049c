"""Overlap of a detected box with an annotated ellipse, as FDDB's evaluation measures it.

FDDB (Jain & Learned-Miller 2010) scores a detection against a face by the ratio of the areas of
intersection and union of the two *regions*: the face's ellipse and the detection's rectangle,
both drawn into a mask of the image (so whatever lies outside the image does not count) and
counted in pixels. This module does the same on the pixel grid: a pixel belongs to a region when
its centre lies inside it. The ellipse is the exact one in the annotation (FDDB's drawing code
rounds the centre and truncates the radii to integers first; the difference is below a pixel at
the boundary).

An ellipse is ``(major_radius, minor_radius, angle, center_x, center_y)`` as FDDB writes it:
``angle`` in radians, the first radius along the direction (cos angle, sin angle) in image
coordinates (x right, y down).
"""

from __future__ import annotations

import math

import numpy as np


def ellipse_bounds(ellipse: np.ndarray) -> tuple[float, float, float, float]:
    """The axis-aligned bounding box (x1, y1, x2, y2) of one ellipse."""
    a, b, t, cx, cy = (float(v) for v in ellipse)
    hx = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hy = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    return cx - hx, cy - hy, cx + hx, cy + hy


def _pixel_range(lo: float, hi: float, n: int) -> tuple[int, int]:
    """The pixels [i0, i1) of a row or column whose centres i + 0.5 lie in [lo, hi), within [0, n)."""
    i0 = max(0, math.ceil(lo - 0.5))
    i1 = min(n, math.ceil(hi - 0.5))
    return i0, max(i0, i1)


def ellipse_mask(ellipse: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, int, int]:
    """The ellipse's pixels inside the image: (mask over its clipped bounding box, x0, y0)."""
    a, b, t, cx, cy = (float(v) for v in ellipse)
    w, h = image_size
    x1, y1, x2, y2 = ellipse_bounds(ellipse)
    i0, i1 = _pixel_range(x1, x2 + 1e-9, w)
    j0, j1 = _pixel_range(y1, y2 + 1e-9, h)
    xs = np.arange(i0, i1) + 0.5 - cx
    ys = np.arange(j0, j1) + 0.5 - cy
    c, s = math.cos(t), math.sin(t)
    u = xs[None, :] * c + ys[:, None] * s       # along the first radius
    v = -xs[None, :] * s + ys[:, None] * c      # along the second
    inside = (u / max(a, 1e-12)) ** 2 + (v / max(b, 1e-12)) ** 2 <= 1.0
    return inside, i0, j0


def ellipse_box_overlaps(ellipses: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(M, N) intersection over union of M ellipses (M, 5) with N boxes (N, 4: x1, y1, x2, y2),
    as regions of pixels inside a ``(width, height)`` image."""
    ellipses = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = image_size
    out = np.zeros((len(ellipses), len(boxes)))
    if not len(boxes):
        return out
    cols = [_pixel_range(b[0], b[2], w) for b in boxes]
    rows = [_pixel_range(b[1], b[3], h) for b in boxes]
    box_px = np.array([(c1 - c0) * (r1 - r0) for (c0, c1), (r0, r1) in zip(cols, rows)], dtype=np.float64)
    for m, ellipse in enumerate(ellipses):
        mask, x0, y0 = ellipse_mask(ellipse, image_size)
        area = float(mask.sum())
        # a summed-area table answers every box's intersection in O(1)
        sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1))
        sat[1:, 1:] = mask.cumsum(0).cumsum(1)
        for n, ((c0, c1), (r0, r1)) in enumerate(zip(cols, rows)):
            a0, a1 = np.clip([c0 - x0, c1 - x0], 0, mask.shape[1])
            b0, b1 = np.clip([r0 - y0, r1 - y0], 0, mask.shape[0])
            inter = sat[b1, a1] - sat[b0, a1] - sat[b1, a0] + sat[b0, a0] if a1 > a0 and b1 > b0 else 0.0
            union = area + box_px[n] - inter
            out[m, n] = inter / union if union > 0 else 0.0
    return out
