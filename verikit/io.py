"""Image input: the one place files become PIL images.

This module owns reading image files (any format Pillow knows, with or without an extension),
normalising them to fully loaded RGB, refusing corrupt/truncated/oversized files with one-line
:class:`ImageError` messages, and finding the images of a folder-per-identity dataset.
Nothing else in verikit calls ``Image.open``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from verikit.errors import DataError, ImageError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".pnm", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
)
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit
# Sniffing these would only ever find text; never treat them as images even if bytes look alike.
_TEXT_SUFFIXES = frozenset({".txt", ".info", ".xml", ".json", ".csv", ".md", ".html", ".yaml", ".yml"})
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}  # 'BM' alone is too weak a signature


def _fail(path: str | os.PathLike, reason: str) -> ImageError:
    reason = " ".join(str(reason).split()) or "unknown error"  # always exactly one line
    return ImageError(f"cannot read image '{os.fspath(path)}': {reason}")


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``path`` into a fully loaded RGB image, EXIF orientation applied.

    Raises :class:`ImageError` (one line naming the file) for anything that is not a readable image,
    including images with more than ``max_pixels`` pixels (``None``: no limit of our own; Pillow's
    global guard at twice its default still applies because we never touch its global state).
    """
    p = Path(path)
    if not p.exists():
        raise _fail(path, "no such file")
    if p.is_dir():
        raise _fail(path, "is a directory")
    try:
        if p.stat().st_size == 0:
            raise _fail(path, "file is empty")
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's warning, whose threshold is global state.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                w, h = img.size  # header only; nothing decoded yet
                if max_pixels is not None and w * h > max_pixels:
                    raise _fail(path, f"{w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")
                img.seek(0)  # animated GIF/TIFF/WEBP: the first frame is the image
                img.load()  # decode now so truncation surfaces here, not in a worker later
                out = _to_rgb(_oriented(img))
                # close() invalidates img's pixels, so never hand back the object we opened.
                return out.copy() if out is img else out
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise _fail(path, f"{e} (decompression bomb guard)") from e
    except UnidentifiedImageError as e:
        raise _fail(path, "not an image (unrecognised format)") from e
    except PermissionError as e:
        raise _fail(path, "permission denied") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        # Pillow reports broken data with a zoo of exception types; all mean "bad file".
        msg = str(e) or type(e).__name__
        raise _fail(path, "file is truncated" if "truncat" in msg.lower() else f"corrupt image data ({msg})") from e


def _oriented(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost us intact pixels
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        # Transparent pixels often hold garbage colour; dropping alpha would expose it.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_grey_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr; Pillow's ValueError names an unknown mode


def _grey_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Map high-depth grey to 0..255 by its nominal bit depth when evident, so values keep their meaning."""
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        scale, offset = 255.0 / 65535.0, 0.0
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, offset = 255.0, 0.0  # float images in [0, 1]
    elif lo >= 0.0 and hi <= 255.0:
        scale, offset = 1.0, 0.0  # already 8-bit values in a wide container
    elif lo >= 0.0 and hi <= 65535.0 and mode != "F":
        scale, offset = 255.0 / 65535.0, 0.0  # 16-bit data stored as 32-bit "I"
    else:
        # No nominal range to trust: stretch what is there.
        scale, offset = (255.0 / (hi - lo) if hi > lo else 0.0), lo
    a = np.nan_to_num(a, nan=offset, posinf=hi, neginf=lo)
    return np.clip(np.rint((a - offset) * scale), 0, 255).astype(np.uint8)


def _has_image_signature(head: bytes) -> bool:
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    if head[:2] == b"BM" and len(head) >= 18:
        return int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    # PNM: 'P1'..'P7' must be followed by whitespace, so text such as "P51 notes" is not taken.
    return len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"1234567" and head[2:3] in b" \t\r\n"


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a known image suffix, or for an unknown/missing suffix whose bytes start like an image."""
    p = Path(path)
    if p.name.startswith("."):
        return False
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in _TEXT_SUFFIXES:
        return False
    # Yale faces are 'subject01.happy': the "suffix" is a label, so sniff the content.
    try:
        with open(p, "rb") as f:
            return _has_image_signature(f.read(32))
    except OSError:
        return False


@dataclass(frozen=True)
class FolderScan:
    """Result of :func:`scan_identity_folders`: (identity, image path) pairs plus files not used."""

    items: tuple[tuple[str, Path], ...]
    skipped: tuple[Path, ...]

    @property
    def identities(self) -> list[str]:
        return sorted({name for name, _ in self.items})

    @property
    def by_identity(self) -> dict[str, list[Path]]:
        groups: dict[str, list[Path]] = {}
        for name, path in sorted(self.items):
            groups.setdefault(name, []).append(path)
        return groups


def list_images(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(images, skipped non-image files) under ``folder`` recursively, sorted; hidden entries ignored."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"folder '{os.fspath(folder)}' does not exist")
    if not root.is_dir():
        raise DataError(f"'{os.fspath(folder)}' is not a folder")
    images: list[Path] = []
    skipped: list[Path] = []
    seen: set[str] = set()
    # Follow symlinked folders (datasets are often assembled from links) but never loop.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            f = Path(dirpath, name)
            (images if is_image_file(f) else skipped).append(f)
    return sorted(images), sorted(skipped)


def scan_identity_folders(root: str | os.PathLike, *, min_images: int = 1, depth: str | int = "leaf") -> FolderScan:
    """Scan a folder-per-identity dataset.

    The identity of an image is its parent folder relative to ``root`` ('/'-joined) for
    ``depth="leaf"``, or the first ``depth`` folders under ``root`` for an int. Images without
    such a folder, non-image files and identities with fewer than ``min_images`` images are
    returned in ``skipped``.
    """
    if depth != "leaf" and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 1):
        raise ValueError(f"depth must be 'leaf' or a positive int, got {depth!r}")
    if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 1:
        raise ValueError(f"min_images must be a positive int, got {min_images!r}")
    base = Path(root)
    images, skipped = list_images(base)
    groups: dict[str, list[Path]] = {}
    for img in images:
        folders = img.relative_to(base).parts[:-1]
        if not folders or (depth != "leaf" and len(folders) < depth):
            skipped.append(img)  # no identity folder to name it by
            continue
        name = "/".join(folders if depth == "leaf" else folders[:depth])
        groups.setdefault(name, []).append(img)
    items: list[tuple[str, Path]] = []
    for name in sorted(groups):
        if len(groups[name]) < min_images:
            skipped.extend(groups[name])
        else:
            items.extend((name, p) for p in sorted(groups[name]))
    if not items:
        if groups:
            raise DataError(f"no identity under '{os.fspath(root)}' has at least {min_images} images")
        raise DataError(f"no images found under '{os.fspath(root)}' (expected one sub-folder per identity)")
    return FolderScan(items=tuple(items), skipped=tuple(sorted(skipped)))
