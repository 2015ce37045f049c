"""Atomic file writes: a reader (or a crash) never sees half a file.

Every artifact verikit writes that someone may load later (model config and weights, calibration,
classifier, pair head, training config, logs, reports) goes through :func:`write_atomic`: the
bytes land in a hidden temporary file beside the target, which is then renamed over it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` via a temporary sibling and a rename; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    os.replace(tmp, path)
    return path
