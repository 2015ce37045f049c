"""The segmentation step: a segmenter's soft masks turned into background-suppressed images.

A segmenter plugin (:class:`verikit.interfaces.Segmenter`) returns one soft mask per box in
image pixels; this module checks what came back (one clear error naming the plugin when it
breaks the contract) and blends each mask with a flat background colour, so that only the
object (the face, the product) reaches the embedder. Blending with the soft mask, rather than
thresholding it, keeps the segmenter's uncertainty at the border instead of a jagged edge.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import DataError
from ..structures import Detections, Masks
from .settings import BACKGROUNDS


def whole_image(image: Any) -> Detections:
    """The one "detection" of an image when no detector runs: the image itself."""
    w, h = image.size
    return Detections(np.array([[0.0, 0.0, float(w), float(h)]], np.float32), [1.0], image_size=(w, h))


def run_segmenter(segmenter: Any, name: str, images: Sequence[Any], detections: Sequence[Detections]) -> list[Masks]:
    """``segmenter.segment`` with its output checked against the contract."""
    if not images:
        return []
    masks = segmenter.segment(list(images), list(detections))
    if len(masks) != len(images):
        raise DataError(f"segmenter {name} returned {len(masks)} results for {len(images)} images")
    for image, dets, m in zip(images, detections, masks):
        if not isinstance(m, Masks):
            raise DataError(f"segmenter {name} returned {type(m).__name__}, not verikit.structures.Masks")
        w, h = image.size
        if len(m) != len(dets) or tuple(m.masks.shape[1:]) != (h, w):
            raise DataError(f"segmenter {name} returned masks of shape {tuple(m.masks.shape)} for "
                            f"{len(dets)} box(es) in a {w}x{h} image; expected ({len(dets)}, {h}, {w})")
    return masks


def suppress_background(image: Any, mask: np.ndarray, background: str) -> Any:
    """``image`` with each pixel blended towards the background colour by ``1 - mask``."""
    from PIL import Image

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    fill = np.asarray(BACKGROUNDS[background], dtype=np.float32)
    m = np.asarray(mask, dtype=np.float32)[..., None]
    out = pixels * m + fill * (1.0 - m)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")
