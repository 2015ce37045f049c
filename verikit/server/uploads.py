"""Uploaded image bytes become images through :mod:`verikit.io`, with the same checks and one-line
errors as image files (corrupt, truncated, not an image, too many pixels).

``verikit.io.load_image`` reads paths, so the bytes are written to a private temporary file under
the upload's (sanitised) name, read back, and the temporary directory is removed; error messages
name the upload as the client sent it, never a server path.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ImageError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_name(filename: str | None, index: int) -> str:
    """A label for an upload: its base name, or ``upload-<index>`` when it has none."""
    base = os.path.basename((filename or "").replace("\\", "/")).strip()
    return base or f"upload-{index}"


def decode_upload(data: bytes, name: str, max_pixels: int) -> Any:
    """The RGB image in ``data`` (PIL), or :class:`ImageError` naming ``name``."""
    safe = _UNSAFE.sub("_", name).lstrip(".")[:100] or "upload"
    with tempfile.TemporaryDirectory(prefix="verikit-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        from ..io import load_image

        try:
            return load_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            raise ImageError(str(exc).replace(str(path), name)) from None
