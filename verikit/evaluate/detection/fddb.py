"""FDDB's ellipse lists -> annotated images whose faces are ellipses.

FDDB (Face Detection Data Set and Benchmark, Jain & Learned-Miller 2010) ships, per fold,
``FDDB-fold-NN-ellipseList.txt``: for each image its name (relative to ``originalPics``, without
``.jpg``), its number of faces, then one line per face ``major_radius minor_radius angle center_x
center_y 1`` (angle in radians). :func:`read_fddb` reads one such file, or every one in a folder
(the ``FDDB-folds`` folder, folds in name order).

Image names resolve against ``images_root`` when given, else the first of ``../originalPics``,
``..`` and the folder itself (relative to the lists' folder) that holds the first image: FDDB's
own layout needs no option. Each face keeps its ellipse (``AnnotatedImage.ellipses``), which is
what FDDB scores against; ``boxes`` are the ellipses' axis-aligned bounding boxes, unclipped (the
conversion a box-only consumer such as ``verikit detect train`` would get).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import DataError
from .annotations import AnnotatedImage
from .regions import ellipse_bounds

PATTERN = "*ellipseList*.txt"


def is_fddb(path: Path) -> bool:
    """An FDDB ellipse list (by name or, for a .txt file, by its first lines) or a folder of them."""
    if path.is_dir():
        return any(path.glob(PATTERN))
    if not (path.is_file() and path.suffix.lower() == ".txt"):
        return False
    if path.name.endswith("ellipseList.txt"):
        return True
    try:
        with open(path, encoding="utf-8") as f:
            head = [f.readline().strip() for _ in range(3)]
    except (OSError, UnicodeDecodeError):
        return False
    return head[1].isdigit() and len(head[2].split()) in (5, 6) and all(_is_number(v) for v in head[2].split())


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _images_root(lists_dir: Path, first: str, images_root: Path | None) -> Path:
    if images_root is not None:
        return images_root
    candidates = [lists_dir.parent / "originalPics", lists_dir.parent, lists_dir]
    for root in candidates:
        if _image_path(root, first).is_file():
            return root
    return candidates[0]


def _image_path(root: Path, name: str) -> Path:
    return root / (name if Path(name).suffix else f"{name}.jpg")


def _parse(path: Path) -> list[tuple[str, np.ndarray]]:
    try:
        lines = [(k, line.strip()) for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read FDDB ellipse list '{path}': {exc}") from exc
    lines = [(k, text) for k, text in lines if text]
    out, i = [], 0
    while i < len(lines):
        _, name = lines[i]
        if i + 1 >= len(lines):
            raise DataError(f"FDDB ellipse list '{path}' line {lines[i][0]}: image '{name}' has no face count")
        k, count = lines[i + 1]
        if not count.isdigit():
            raise DataError(f"FDDB ellipse list '{path}' line {k}: expected the number of faces of '{name}', got {count!r}")
        n = int(count)
        rows = lines[i + 2:i + 2 + n]
        if len(rows) < n:
            raise DataError(f"FDDB ellipse list '{path}': image '{name}' lists {n} faces but the file ends after {len(rows)}")
        ellipses = []
        for k, text in rows:
            fields = text.split()
            try:
                values = [float(v) for v in fields]
            except ValueError:
                values = []
            if len(values) not in (5, 6) or not all(math.isfinite(v) for v in values) or min(values[:2]) <= 0:
                raise DataError(f"FDDB ellipse list '{path}' line {k}: expected 'major_radius minor_radius angle "
                                f"center_x center_y [1]' with positive radii, got {text!r}")
            ellipses.append(values[:5])
        out.append((name, np.array(ellipses, dtype=np.float64).reshape(-1, 5)))
        i += 2 + n
    if not out:
        raise DataError(f"FDDB ellipse list '{path}' lists no images")
    return out


def read_fddb(path: str | Path, images_root: str | Path | None = None) -> list[AnnotatedImage]:
    """Every image of an FDDB ellipse list, or of every list in a folder, with its ellipses."""
    path = Path(path)
    files = sorted(path.glob(PATTERN)) if path.is_dir() else [path]
    if not files:
        raise DataError(f"no FDDB *ellipseList*.txt files in folder '{path}'")
    parsed = [(f, _parse(f)) for f in files]
    root = _images_root(files[0].parent, parsed[0][1][0][0], Path(images_root) if images_root is not None else None)
    items, seen = [], set()
    for f, entries in parsed:
        for name, ellipses in entries:
            if name in seen:
                raise DataError(f"FDDB ellipse list '{f}': image '{name}' is listed twice")
            seen.add(name)
            boxes = np.array([ellipse_bounds(e) for e in ellipses]).reshape(-1, 4)
            items.append(AnnotatedImage(_image_path(root, name), boxes, np.zeros(len(boxes), bool), ellipses))
    return items
