"""Image input: the one place files and encoded bytes become PIL images.

This module owns reading image files (any format Pillow knows, with or without an extension) and
encoded image bytes (with the format checks Pillow lacks, :mod:`verikit.image_formats`), normalising every PIL mode to fully loaded RGB (:func:`to_rgb`, which
:mod:`verikit.image_input` also applies to pictures held in memory), refusing corrupt, truncated,
oversized and special files with one-line :class:`ImageError` messages, and finding the images
of a folder-per-identity dataset. Nothing else in verikit calls ``Image.open``.

Only regular files are ever opened: a named pipe, socket or device in a dataset folder is
skipped by the folder scan and refused by :func:`load_image` without blocking on it.

File names are shown and stored as :func:`path_text`: the name as UTF-8 text, with each byte
that is not valid UTF-8 (a name made on a Latin-1 system, say) written as ``\\xNN``.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from verikit.errors import DataError, ImageError
from verikit.image_formats import FormatError, check_png_data, read_netpbm, scale_to_uint8

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".pnm", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
)
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default limit
# Sniffing these would only ever find text; never treat them as images even if bytes look alike.
_TEXT_SUFFIXES = frozenset({".txt", ".info", ".xml", ".json", ".csv", ".md", ".html", ".yaml", ".yml"})
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}  # 'BM' alone is too weak a signature
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO to look at it must never wait for a writer


# ----------------------------------------------------------------------------- names and files


def path_text(path: str | bytes | os.PathLike) -> str:
    """``path`` as valid UTF-8 text, for messages, JSON and the gallery.

    A POSIX file name is bytes; Python holds the bytes that are not UTF-8 as lone surrogates,
    which cannot be printed to a UTF-8 stream nor stored in SQLite. Here each such byte becomes
    the four characters ``\\xNN`` (``d\\xe9nise``), so two different names stay different and the
    text says which bytes the name holds.
    """
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that did not come from the file system
        return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _kind_of(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def _stat_problem(path: str | os.PathLike, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return f"broken symbolic link (to '{path_text(os.readlink(path))}')"
        return "no such file"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ENOTDIR:
        return "no such file (a parent is not a folder)"
    return exc.strerror or type(exc).__name__


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (``None`` when it can be opened): no such
    file, a broken symbolic link, a symbolic link loop, a folder, a named pipe or device,
    permission denied. Looks without opening, so it never blocks."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return _stat_problem(path, exc)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return f"{_kind_of(st.st_mode)}, not a regular file"
    return None


def _open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file; raise :class:`ImageError` otherwise.

    The type is checked on the opened descriptor, so a file swapped for a FIFO after a check
    cannot make us block (the open itself is non-blocking).
    """
    problem = file_problem(path)
    if problem is not None:
        raise image_error(path, problem)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise image_error(path, _stat_problem(path, exc)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise image_error(path, f"{_kind_of(st.st_mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def image_error(path: str | bytes | os.PathLike, reason: str) -> ImageError:
    """The one-line error for an image that cannot be used: ``cannot read image 'NAME': REASON``."""
    reason = " ".join(str(reason).split()) or "unknown error"  # always exactly one line
    return ImageError(f"cannot read image '{path_text(path)}': {reason}")


# ----------------------------------------------------------------------------- decoding


def load_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read ``path`` into a fully loaded RGB image, EXIF orientation applied.

    Raises :class:`ImageError` (one line naming the file) for anything that is not a readable image,
    including images with more than ``max_pixels`` pixels (``None``: no limit of our own; Pillow's
    global guard at twice its default still applies because we never touch its global state),
    and anything that is not a regular file (a named pipe is refused, never waited on).
    """
    with _open_regular(path) as f:
        try:
            if os.fstat(f.fileno()).st_size == 0:
                raise image_error(path, "file is empty")
        except OSError as exc:
            raise image_error(path, exc.strerror or "cannot read") from None
        return _decode(f, path, max_pixels)


def load_image_bytes(path: str | os.PathLike, *,
                     max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[bytes, Image.Image]:
    """The bytes of the regular file ``path`` and the image they decode to (exactly as
    :func:`load_image` reads it), from one read: what a caller that also hashes the file needs, so
    the hash is always of the bytes that were decoded. Same errors as :func:`load_image`."""
    with _open_regular(path) as f:
        try:
            data = f.read()
        except OSError as exc:
            raise image_error(path, exc.strerror or "cannot read") from None
    if not data:
        raise image_error(path, "file is empty")
    return data, _decode(io.BytesIO(data), path, max_pixels)


def decode_image(data: bytes | bytearray | memoryview, *, name: str = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Encoded image bytes (the content of an image file) into an RGB image, exactly as
    :func:`load_image` reads the same file; errors name the data ``name``."""
    data = bytes(data)
    if not data:
        raise image_error(name, "no data (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(f: BinaryIO, name: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    try:
        deep = read_netpbm(f, max_pixels)  # 10-, 12-, 16-bit PGM/PPM: scaled by maxval, checked (image_formats)
        if deep is not None:
            return deep
        f.seek(0)
        with quiet_pillow():
            with Image.open(f) as img:
                check_pixel_limit(img.size, name, max_pixels)  # header only; nothing decoded yet
                img.seek(0)  # animated GIF/TIFF/WEBP: the first frame is the image
                img.load()  # decode now so truncation surfaces here, not in a worker later
                if img.format == "PNG":
                    f.seek(0)
                    check_png_data(f.read())  # rows missing or extra for the header's size
                out = to_rgb(exif_oriented(img), name)
                # close() invalidates img's pixels, so never hand back the object we opened.
                return out.copy() if out is img else out
    except ImageError:
        raise
    except FormatError as e:
        raise image_error(name, str(e)) from e
    except Image.DecompressionBombError as e:
        raise image_error(name, f"{e} (decompression bomb guard)") from e
    except UnidentifiedImageError as e:
        raise image_error(name, "not an image (unrecognised format)") from e
    except PermissionError as e:
        raise image_error(name, "permission denied") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
            OverflowError, MemoryError) as e:
        # Pillow reports broken data with a zoo of exception types; all mean "bad file".
        msg = str(e) or type(e).__name__
        raise image_error(name, "file is truncated" if "truncat" in msg.lower() else f"corrupt image data ({msg})") from e


_quiet_lock = threading.Lock()
_quiet_depth = 0  # how many decodes (in any thread) are inside quiet_pillow() now
_quiet_filters: warnings.catch_warnings | None = None


@contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings off while we decode: our own ``max_pixels`` check replaces its bomb
    warning (whose threshold is global state), and its warnings about damaged metadata ("Corrupt
    EXIF data") of pixels it does decode would, under ``-W error``, escape as exceptions that are
    not ImageErrors.

    Safe when several threads decode at once (:mod:`verikit.pipeline.decoding`): the warning filters
    are process-wide, and ``warnings.catch_warnings`` entered and left interleaved by two threads
    would leave one thread decoding unfiltered and the filters changed for good. So the first
    decode in installs the filters and the last one out restores them."""
    global _quiet_depth, _quiet_filters
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_filters = warnings.catch_warnings()
            _quiet_filters.__enter__()
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_filters is not None:
                _quiet_filters.__exit__(None, None, None)
                _quiet_filters = None


def check_pixel_limit(size: tuple[int, int], name: str | os.PathLike, max_pixels: int | None) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (``None``: no limit), before decoding it."""
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise image_error(name, f"{w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")


def exif_oriented(img: Image.Image) -> Image.Image:
    """``img`` turned upright as its EXIF orientation says (the image itself when it says nothing)."""
    try:
        if img.getexif().get(0x0112, 1) in (None, 1):
            return img  # nothing to turn: no copy
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost us intact pixels
        return img


# ----------------------------------------------------------------------------- modes


def to_rgb(img: Image.Image, name: str | os.PathLike = "<image>", *, bits: int | None = None) -> Image.Image:
    """Any PIL mode as RGB: what every image becomes before a model sees it.

    Transparency (RGBA, LA, PA, a palette's transparent index) is composited on white, because
    transparent pixels often hold garbage colour. Deep grey ("I;16", "I", "F") is mapped to 0..255
    by its nominal range (:func:`_grey_to_uint8`; ``bits`` states the depth when the file says so);
    an "I" or "F" image with no nominal range is refused with :class:`ImageError` naming ``name``.
    Binary ("1"), palette, CMYK and YCbCr images go through Pillow's own conversion.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        if bits is None and mode == "I" and img.format in ("PNG", "PPM"):
            bits = 16  # Pillow holds a 16-bit PNG (old Pillow) or a deep PGM (scaled to 65535) as "I"
        return Image.fromarray(_grey_to_uint8(np.asarray(img), mode, name, bits), "L").convert("RGB")
    try:
        return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
    except ValueError as exc:
        raise image_error(name, f"cannot convert mode {mode!r} to RGB ({exc})") from None


def unit_to_uint8(a: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (a float image) as 0..255."""
    return np.clip(np.rint(np.asarray(a, np.float64) * 255.0), 0, 255).astype(np.uint8)


def uint16_to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit values (0..65535) as 0..255: :func:`scale_to_uint8` with maxval 65535."""
    return scale_to_uint8(a, 65535)


def _grey_to_uint8(a: np.ndarray, mode: str, name: str | os.PathLike = "<image>", bits: int | None = None) -> np.ndarray:
    """Map high-depth grey to 0..255 by its nominal range, so values keep their meaning.

    "I;16*" (and ``bits=16``) is 16-bit; "F" in [0, 1] is a unit-range float image; "I"/"F" whose
    values all lie in 0..255 are 8-bit values in a wide container, and an "I" in 0..65535 is
    16-bit data. Anything else (negative, larger, NaN) has no range to trust: refused, never
    stretched, because a stretch would make the same picture embed differently by its content.
    """
    if mode.startswith("I;16") or bits == 16:
        return uint16_to_uint8(a)
    af = np.asarray(a, np.float64)
    if not np.isfinite(af).all():
        raise image_error(name, f"mode {mode} image holds NaN or infinite values")
    lo, hi = (float(af.min()), float(af.max())) if af.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return unit_to_uint8(af)
    if lo >= 0.0 and hi <= 255.0:
        return np.clip(np.rint(af), 0, 255).astype(np.uint8)
    if lo >= 0.0 and hi <= 65535.0 and mode != "F":
        return uint16_to_uint8(np.asarray(a))
    accepted = "0..1 or 0..255" if mode == "F" else "0..255 or 0..65535"
    raise image_error(name, f"mode {mode} values span [{lo:g}, {hi:g}]: no nominal range (accepted: {accepted}); "
                      "scale the image to 8 bits first")


# ----------------------------------------------------------------------------- what is an image file


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
    """True for a regular file with a known image suffix, or with an unknown/missing suffix whose
    bytes start like an image. Named pipes, sockets and devices are never images (and never opened
    in a way that could block)."""
    p = Path(path)
    if p.name.startswith("."):
        return False
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            return False  # a folder, named pipe, socket or device
    except OSError:
        pass  # missing or a link loop: a listed image is reported with its reason when it is loaded
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix in _TEXT_SUFFIXES:
        return False
    # Yale faces are 'subject01.happy': the "suffix" is a label, so sniff the content.
    try:
        with _open_regular(p) as f:
            return _has_image_signature(f.read(32))
    except (ImageError, OSError):
        return False


# ----------------------------------------------------------------------------- folders


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


def _check_folder(folder: str | os.PathLike) -> None:
    problem = file_problem(folder)
    if problem == "is a directory":
        return
    if problem is None or "not a regular file" in problem:
        raise DataError(f"'{path_text(folder)}' is not a folder")
    raise DataError(f"folder '{path_text(folder)}' does not exist" if problem == "no such file"
                    else f"folder '{path_text(folder)}': {problem}")


def list_images(folder: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(images, skipped files) under ``folder`` recursively, sorted; hidden entries ignored.

    Skipped are the files that are not images and anything that is not a regular file (a named
    pipe, socket or device is never opened). A name that cannot be looked at (a symbolic link
    loop, a dangling link) with an image suffix is listed as an image, so that loading it reports
    what is wrong with it.
    """
    root = Path(folder)
    _check_folder(root)
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
    ``depth="leaf"``, or the first ``depth`` folders under ``root`` for an int, as
    :func:`path_text` (a folder name that is not UTF-8 is named with ``\\xNN`` escapes). Images
    without such a folder, non-image files and identities with fewer than ``min_images`` images
    are returned in ``skipped``.
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
        name = path_text("/".join(folders if depth == "leaf" else folders[:depth]))
        groups.setdefault(name, []).append(img)
    items: list[tuple[str, Path]] = []
    for name in sorted(groups):
        if len(groups[name]) < min_images:
            skipped.extend(groups[name])
        else:
            items.extend((name, p) for p in sorted(groups[name]))
    if not items:
        if groups:
            raise DataError(f"no identity under '{path_text(root)}' has at least {min_images} images")
        raise DataError(f"no images found under '{path_text(root)}' (expected one sub-folder per identity)")
    return FolderScan(items=tuple(items), skipped=tuple(sorted(skipped)))
