"""Draw detections onto a copy of an image (``verikit detect --out``)."""

from __future__ import annotations

from typing import Any

from ..structures import Detections


def annotate(image: Any, dets: Detections, colour: tuple[int, int, int] = (255, 40, 40)) -> Any:
    """A copy of ``image`` with each box, its score, and any landmarks drawn on it."""
    from PIL import ImageDraw

    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 200))
    for i in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.boxes[i])
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        draw.text((x1 + 2, max(0.0, y1 - 12)), f"{float(dets.scores[i]):.3g}", fill=colour)
        for name in dets.landmark_names:
            point = dets.landmark(i, name)
            if point is not None:
                r = 2 * width
                draw.ellipse((point[0] - r, point[1] - r, point[0] + r, point[1] + r), outline=(40, 255, 40),
                             width=width)
    return out
