"""Uploaded image bytes become images through :func:`verikit.io.decode_image`: the same decoder,
checks and one-line errors as image files (corrupt, truncated, not an image, too many pixels),
with errors naming the upload as the client sent it, never a server path. Nothing touches disk.
"""

from __future__ import annotations

import os
from typing import Any


def upload_name(filename: str | None, index: int) -> str:
    """A label for an upload: its base name, or ``upload-<index>`` when it has none."""
    base = os.path.basename((filename or "").replace("\\", "/")).strip()
    return base or f"upload-{index}"


def decode_upload(data: bytes, name: str, max_pixels: int) -> Any:
    """The RGB image in ``data`` (PIL), or :class:`verikit.errors.ImageError` naming ``name``."""
    from ..io import decode_image

    return decode_image(data, name=name, max_pixels=max_pixels)
