"""Mask datasets: an image folder and a mask folder, matched by file stem.

``images/cat.jpg`` pairs with ``masks/cat.png`` (any format :func:`verikit.io.load_image` reads,
sub-folders allowed, matched by the path below the folder without its suffix). A mask is read as
8-bit grey (the brightest channel of a colour mask); **foreground is a value > 127** (so 0/255
masks and anti-aliased or JPEG masks work), except in a mask whose largest value is 1, which is
read as a 0/1 label map (foreground = 1). Every problem is one :class:`DataError` line naming
the file: an image without a mask, a mask without an image, two files with one stem, a mask of
another size than its image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..io import list_images, load_image

FOREGROUND_LEVEL = 127  # an 8-bit mask value above this is foreground


@dataclass(frozen=True)
class MaskPair:
    """One training example: an image file and its mask file."""

    image: Path
    mask: Path


def _by_stem(folder: Path, what: str) -> dict[str, Path]:
    files, _ = list_images(folder)
    out: dict[str, Path] = {}
    for path in files:
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in out:
            raise DataError(f"two {what} files share the name '{key}': '{out[key]}' and '{path}'")
        out[key] = path
    if not out:
        raise DataError(f"no image files in {what} folder '{folder}'")
    return out


def find_mask_pairs(images: str | Path, masks: str | Path) -> list[MaskPair]:
    """Pair every image under ``images`` with the mask under ``masks`` of the same stem; sorted."""
    images, masks = Path(images), Path(masks)
    image_files, mask_files = _by_stem(images, "image"), _by_stem(masks, "mask")
    for key, path in image_files.items():
        if key not in mask_files:
            raise DataError(f"image '{path}' has no mask named '{key}.*' in '{masks}'")
    for key, path in mask_files.items():
        if key not in image_files:
            raise DataError(f"mask '{path}' has no image named '{key}.*' in '{images}'")
    return [MaskPair(image_files[k], mask_files[k]) for k in sorted(image_files)]


def mask_from_pixels(grey: np.ndarray) -> np.ndarray:
    """8-bit grey (H, W) -> bool foreground: > 127, or == 1 in a 0/1 label map."""
    if grey.size and int(grey.max()) == 1:
        return grey == 1
    return grey > FOREGROUND_LEVEL


def read_mask(path: str | Path, size: tuple[int, int] | None = None, image: str | Path | None = None) -> np.ndarray:
    """The bool (H, W) foreground of mask file ``path``; ``size`` (width, height) must match when given."""
    picture = load_image(path, max_pixels=None)
    if size is not None and picture.size != tuple(size):
        raise DataError(f"mask '{path}' is {picture.size[0]}x{picture.size[1]} but its image "
                        f"'{image}' is {size[0]}x{size[1]}")
    return mask_from_pixels(np.asarray(picture, dtype=np.uint8).max(axis=2))


def load_pair(pair: MaskPair) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB pixels and the (H, W) bool mask of one pair."""
    image = load_image(pair.image)
    return np.array(image, dtype=np.uint8), read_mask(pair.mask, image.size, pair.image)


def split_pairs(pairs: Sequence[MaskPair], val_fraction: float, seed: int) -> tuple[list[MaskPair], list[MaskPair]]:
    """A seeded (train, validation) split: ``round(val_fraction * n)`` validation pairs, at least one
    when ``val_fraction > 0``, and at least one training pair always."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
    n = len(pairs)
    if n == 0:
        raise DataError("no image/mask pairs to train on")
    n_val = 0 if val_fraction == 0 else min(n - 1, max(1, round(val_fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    val = sorted((pairs[i] for i in order[:n_val]), key=lambda p: p.image)
    train = sorted((pairs[i] for i in order[n_val:]), key=lambda p: p.image)
    return train, val
