"""Contrast-normalised copies of a photo, for a detector to look at (``enhance`` option of the
face-api.js box detectors): dark or flat photos -- faces lit from one side, under-exposed
shots -- hold faces that a detector trained on ordinary photos scores low or misses.

Only the luminance is changed (the photo goes to YCbCr and back), so colour is kept as the
networks know it; the copy has the photo's size, so boxes found on it are boxes in the photo, and
verikit cuts its crops from the photo as given.

* ``equalize``: histogram equalisation of the luminance (Pillow's ``ImageOps.equalize``): the
  grey levels spread so that each is about equally common;
* ``clahe``: contrast-limited adaptive histogram equalisation of the luminance (OpenCV's
  ``createCLAHE``, clip limit 2, 8 x 8 tiles: the usual setting): equalised per tile, with the
  gain capped, so a bright background does not wash out a dark face.
"""

from __future__ import annotations

from typing import Any

ENHANCE_MODES = ("none", "equalize", "clahe")


def enhanced(image: Any, mode: str) -> Any:
    """``image`` (PIL) with its luminance contrast-normalised by ``mode`` (ENHANCE_MODES), as RGB;
    ``none``: the image itself."""
    from PIL import Image, ImageOps

    if mode == "none":
        return image
    if mode not in ENHANCE_MODES:
        raise ValueError(f"unknown enhance mode {mode!r} (one of {', '.join(ENHANCE_MODES)})")
    y, cb, cr = image.convert("YCbCr").split()
    if mode == "equalize":
        y = ImageOps.equalize(y)
    else:
        import cv2
        import numpy as np

        y = Image.fromarray(cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(np.asarray(y)))
    return Image.merge("YCbCr", (y, cb, cr)).convert("RGB")
