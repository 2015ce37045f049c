"""A complete, minimal verikit detector plugin: ``center[:FRACTION]``.

It "detects" one box in the middle of every image, covering FRACTION (default 0.6) of its width
and height. Useful as a template, and for images that are already roughly centred on a face.
"""

from __future__ import annotations

from typing import Sequence


class CenterDetector:
    """Implements verikit.interfaces.Detector: one required method, batch-first."""

    def __init__(self, fraction: float, score: float) -> None:
        self.fraction = fraction
        self.score = score

    def detect(self, images: Sequence) -> list:
        from verikit.plugin_api import Detections

        out = []
        for image in images:
            w, h = image.size
            bw, bh = w * self.fraction, h * self.fraction
            box = [(w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2]
            out.append(Detections([box], [self.score], image_size=(w, h)))
        return out


def create(fraction: str | None = None, *, score: float = 1.0) -> CenterDetector:
    """Entry-point factory. The spec argument arrives as a string (``center:0.5`` -> ``"0.5"``);
    options are keyword-only and JSON-serialisable (``--detector-option score=0.9``)."""
    from verikit.plugin_api import PluginError

    try:
        value = 0.6 if fraction is None else float(fraction)
    except ValueError:
        raise PluginError(f"center: fraction must be a number, got {fraction!r}") from None
    if not 0.0 < value <= 1.0:
        raise PluginError(f"center: fraction must be in (0, 1], got {value}")
    return CenterDetector(value, float(score))
