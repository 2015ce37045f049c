"""Checks and decoders for what Pillow takes without a word: the format-level half of :mod:`verikit.io`.

* Netpbm (PGM/PPM, P2/P3/P5/P6) whose maxval is not 255 -- 10-, 12- and 16-bit faces -- is decoded
  here and scaled by the file's own maxval. Pillow scales too, but takes samples above maxval (a
  corrupt file, or 16-bit data written little-endian) and returns an almost white face; here
  every sample must be <= maxval.
* A PNG whose header claims another size than its compressed rows hold: Pillow fills missing
  rows with black (or ignores extra ones, shearing the picture) when the zlib stream ends
  cleanly. :func:`check_png_data` inflates the rows once more and refuses any mismatch.

Every refusal is a :class:`FormatError` whose message is the one-line reason; :mod:`verikit.io`
names the file.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image


class FormatError(ValueError):
    """A file breaks its own format's rules; the message is the reason, on one line."""


def scale_to_uint8(a: np.ndarray, maxval: int) -> np.ndarray:
    """Integer samples in 0..maxval as 0..255, rounded half up in exact integer arithmetic
    (50 of 100 -> 128; 65535 of 65535 -> 255)."""
    v = np.asarray(a).astype(np.int64)
    return np.clip((v * 510 + maxval) // (2 * maxval), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- Netpbm


def _netpbm_header(data: bytes) -> tuple[bytes, int, int, int, int] | None:
    """(magic, width, height, maxval, raster offset) of a P2/P3/P5/P6 file; None for other data."""
    if len(data) < 3 or data[:2] not in (b"P2", b"P3", b"P5", b"P6") or data[2:3] not in b" \t\r\n#":
        return None
    values: list[int] = []
    i = 2
    while len(values) < 3:
        while i < len(data) and (data[i:i + 1].isspace() or data[i:i + 1] == b"#"):
            if data[i:i + 1] == b"#":
                while i < len(data) and data[i:i + 1] not in b"\r\n":
                    i += 1
            else:
                i += 1
        j = i
        while j < len(data) and data[j:j + 1].isdigit():
            j += 1
        if j == i:
            raise FormatError("malformed Netpbm header" if i < len(data) else "file is truncated (in the header)")
        if j - i > 9:
            raise FormatError(f"Netpbm header value {data[i:j][:12].decode()}... is too large")
        values.append(int(data[i:j]))
        i = j
    if i >= len(data) or not data[i:i + 1].isspace():
        raise FormatError("malformed Netpbm header" if i < len(data) else "file is truncated (no image data)")
    return data[:2], values[0], values[1], values[2], i + 1


def read_netpbm(f: BinaryIO, max_pixels: int | None) -> Image.Image | None:
    """A grey or colour Netpbm image whose maxval is not 255 (raw or plain), as RGB scaled by its
    maxval; None for any other data (Pillow reads it). Raises :class:`FormatError`."""
    f.seek(0)
    data = f.read(4096)
    if data[:2] not in (b"P2", b"P3", b"P5", b"P6"):
        return None
    try:
        parsed = _netpbm_header(data)
    except FormatError:
        if len(data) < 4096:
            raise
        data += f.read()  # a header longer than 4 KiB (comments)
        parsed = _netpbm_header(data)
    if parsed is None:
        return None
    magic, w, h, maxval, offset = parsed
    if maxval == 255 and magic in (b"P5", b"P6"):
        return None  # raw 8-bit: Pillow's reader is exact
    data += f.read()
    if w < 1 or h < 1:
        raise FormatError(f"Netpbm size {w}x{h} is empty")
    if not 1 <= maxval <= 65535:
        raise FormatError(f"Netpbm maxval {maxval} is outside 1..65535")
    if max_pixels is not None and w * h > max_pixels:
        raise FormatError(f"{w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")
    channels = 3 if magic in (b"P3", b"P6") else 1
    n = w * h * channels
    if magic in (b"P5", b"P6"):
        width = 2 if maxval > 255 else 1
        raster = data[offset:offset + n * width]
        if len(raster) < n * width:
            raise FormatError(f"file is truncated ({len(raster)} of {n * width} bytes of image data)")
        samples = np.frombuffer(raster, ">u2" if width == 2 else np.uint8)
    else:
        text = b" ".join(line.split(b"#", 1)[0] for line in data[offset - 1:].splitlines())
        tokens = text.split(None, n)[:n]
        if len(tokens) < n:
            raise FormatError(f"file is truncated ({len(tokens)} of {n} samples)")
        if not all(t.isdigit() and len(t) <= 6 for t in tokens):
            raise FormatError("Netpbm plain samples must be decimal numbers up to 65535")
        samples = np.array(tokens, dtype=np.int64)
    top = int(samples.max())
    if top > maxval:
        raise FormatError(f"sample value {top} exceeds the header's maxval {maxval} (corrupt, or 16-bit data "
                          "not written big-endian)")
    scaled = scale_to_uint8(samples, maxval)
    if channels == 1:
        return Image.fromarray(scaled.reshape(h, w)).convert("RGB")
    return Image.fromarray(scaled.reshape(h, w, 3))


# ----------------------------------------------------------------------------- PNG

_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_raw_size(width: int, height: int, bits: int, colour: int, interlace: int) -> int:
    """Bytes of filtered rows (one filter byte per row) the header promises."""
    bpp = bits * _PNG_CHANNELS[colour]
    if not interlace:
        return height * (1 + (width * bpp + 7) // 8)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        pw, ph = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if pw > 0 and ph > 0:
            total += ph * (1 + (pw * bpp + 7) // 8)
    return total


def check_png_data(data: bytes) -> None:
    """Refuse a (non-animated) PNG whose compressed rows inflate to more or fewer bytes than its
    header's size and depth promise. Call it after Pillow has decoded the image, so the chunk
    layout is already known to be sound; a layout this walk cannot follow is left to Pillow."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 29:
        return
    width, height, bits, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if colour not in _PNG_CHANNELS:
        return
    expected = _png_raw_size(width, height, bits, colour, interlace)
    inflate = zlib.decompressobj()
    produced, pos = 0, 8
    while pos + 8 <= len(data) and not inflate.eof:
        length, kind = struct.unpack(">I", data[pos:pos + 4])[0], data[pos + 4:pos + 8]
        if kind == b"acTL":
            return  # animated: frames live in fdAT chunks; Pillow checks those itself
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            chunk = data[pos + 8:pos + 8 + length]
            while chunk and not inflate.eof:
                try:
                    out = inflate.decompress(chunk, expected + 1 - produced)
                except zlib.error as exc:
                    raise FormatError(f"corrupt image data (compressed rows: {exc})") from None
                produced += len(out)
                if produced > expected:
                    raise FormatError(f"more image data than its {width}x{height} header promises")
                chunk = inflate.unconsumed_tail
        pos += 12 + length
    if produced < expected:
        raise FormatError(f"image data ends early ({produced} of {expected} bytes of rows for its "
                          f"{width}x{height} header)")
