"""Property-based fuzzing of image input (hypothesis): bytes and in-memory pictures.

Every case either loads correctly or raises ONE :class:`verikit.errors.ImageError` (one line,
naming the file); never another exception type, a hang (pytest-timeout), or garbage accepted
silently. "Correctly" has an oracle wherever one exists: a truncated real image that still
loads must give exactly the pixels of the whole file; a PGM whose header lies about its size or
depth is decoded (or refused) exactly as its header and data say; an in-memory array that is
accepted gives the pixels the documented conversion gives.

`make fuzz` runs these with the long hypothesis profile (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from verikit.errors import ImageError
from verikit.image_input import to_image
from verikit.io import decode_image, load_image

# A hang fails the test (pytest-timeout); the limit grows with the profile's example count, since a
# `make fuzz` run of 2000 examples on a loaded 2-core machine takes minutes per test.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(120, settings.default.max_examples // 2))]

REPO = Path(__file__).resolve().parents[2]
BUNDLED_FACE = REPO / "data" / "orl_faces" / "s1" / "1.pgm"


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


class Seeds(dict):
    """name -> encoded bytes; shown by name only in failure reports."""

    def __repr__(self) -> str:
        return f"Seeds({sorted(self)})"


@pytest.fixture(scope="module")
def seeds(shared_data_or_none) -> Seeds:
    """Real images, and small re-encodings of a real face in every format verikit reads."""
    face = Image.open(BUNDLED_FACE)
    small = face.resize((46, 56))
    colour = Image.merge("RGB", (small, small.transpose(Image.Transpose.FLIP_LEFT_RIGHT), small.rotate(7)))
    out = {"pgm": BUNDLED_FACE.read_bytes(),
           "png": _encode(small, "PNG"), "png16": _encode(Image.fromarray(np.asarray(small).astype(np.uint16) * 257), "PNG"),
           "rgba png": _encode(colour.convert("RGBA"), "PNG"), "jpeg": _encode(colour, "JPEG", quality=90),
           "progressive jpeg": _encode(colour, "JPEG", progressive=True), "gif": _encode(colour.quantize(32), "GIF"),
           "bmp": _encode(colour, "BMP"), "tiff": _encode(colour, "TIFF"),
           "deflate tiff": _encode(colour, "TIFF", compression="tiff_deflate"), "webp": _encode(colour, "WEBP"),
           "lossless webp": _encode(colour, "WEBP", lossless=True),
           "pgm 10-bit": b"P5\n46 56\n1023\n" + (np.asarray(small).astype(np.uint16) * 4).astype(">u2").tobytes()}
    data = shared_data_or_none
    if data is not None:
        omniglot = sorted((data / "omniglot" / "images_background" / "Latin" / "character01").glob("*.png"))
        if omniglot:
            out["omniglot binary png"] = omniglot[0].read_bytes()
        if (data / "yalefaces" / "subject01.happy").is_file():
            out["yale gif"] = (data / "yalefaces" / "subject01.happy").read_bytes()
    return Seeds(out)


@pytest.fixture(scope="module")
def shared_data_or_none(request):
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None  # the bundled face and its re-encodings are enough to fuzz


def _load(tmp_path: Path, data: bytes, name: str = "case.img") -> np.ndarray | ImageError:
    """load_image on a file holding ``data`` and decode_image on the bytes: both agree, and each
    gives an RGB image or exactly one one-line ImageError naming what it read."""
    path = tmp_path / name
    path.write_bytes(data)
    results = []
    for label, call in ((str(path), lambda: load_image(path)), ("<bytes>", lambda: decode_image(data))):
        try:
            img = call()
        except ImageError as exc:
            msg = str(exc)
            assert "\n" not in msg and f"'{label}'" in msg, msg
            results.append(exc)
            continue
        assert img.mode == "RGB" and img.width >= 1 and img.height >= 1
        results.append(np.asarray(img))
    file_result, bytes_result = results
    if isinstance(file_result, ImageError):
        assert isinstance(bytes_result, ImageError), "the file was refused but the same bytes were accepted"
    else:
        assert isinstance(bytes_result, np.ndarray) and np.array_equal(file_result, bytes_result)
    return file_result


# -- truncated, mutated and random bytes -----------------------------------------------------------


@given(data=st.data())
def test_truncated_real_images_are_refused_or_lose_nothing(seeds, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
    whole = seeds[name]
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    full = _load(tmp_path, whole)
    assert isinstance(full, np.ndarray)
    result = _load(tmp_path, whole[:cut])
    if isinstance(result, np.ndarray):  # only trailing non-pixel data was cut
        assert np.array_equal(result, full), f"{name} cut at {cut} of {len(whole)} decoded to other pixels"


@given(data=st.data())
def test_mutated_real_images_load_or_fail_cleanly(seeds, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(seeds)), label="seed")
    buf = bytearray(seeds[name])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)), min_size=1, max_size=8))
    for pos, value in edits:
        buf[pos] = value
    _load(tmp_path, bytes(buf))


SIGNATURES = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM", b"RIFF\0\0\0\0WEBP",
              b"P1\n", b"P2\n", b"P3\n", b"P4\n", b"P5\n", b"P6\n", b"P7\n", b"P5\n4 4\n", b"P2\n2 2\n1023\n"]


@given(head=st.sampled_from(SIGNATURES), body=st.binary(max_size=600))
def test_random_bytes_behind_an_image_signature(tmp_path, head, body):
    _load(tmp_path, head + body)


# -- headers that lie ------------------------------------------------------------------------------


@given(w=st.integers(0, 60), h=st.integers(0, 60), maxval=st.integers(0, 70000), extra=st.integers(-40, 40),
       seed=st.integers(0, 2**16), over=st.booleans(), byte_order=st.sampled_from([">", "<"]))
def test_pgm_header_lying_about_size_and_depth(tmp_path, w, h, maxval, extra, seed, over, byte_order):
    """Decoded exactly as header and data say, or refused: too little data, samples above maxval, an
    impossible maxval or an empty size are errors; extra data after the raster is ignored."""
    rng = np.random.default_rng(seed)
    wide = maxval > 255
    n = max(0, w * h + extra)
    top = (65535 if wide else 255) if over else min(max(maxval, 0), 65535)  # over: samples may exceed maxval
    samples = rng.integers(0, top + 1, n).astype(byte_order + "u2" if wide else np.uint8)
    data = f"P5\n{w} {h}\n{maxval}\n".encode() + samples.tobytes()
    result = _load(tmp_path, data)
    need = w * h
    valid = 1 <= maxval <= 65535 and w >= 1 and h >= 1 and n >= need
    if valid:
        raster = samples[:need].astype(np.int64) if not wide else \
            np.frombuffer(samples.tobytes()[:2 * need], ">u2").astype(np.int64)
        valid = int(raster.max()) <= maxval
    if not valid:
        assert isinstance(result, ImageError), f"accepted a {w}x{h} maxval {maxval} PGM with {n} samples"
        return
    assert isinstance(result, np.ndarray), str(result)
    expected = (raster * 510 + maxval) // (2 * maxval)
    assert result.shape == (h, w, 3)
    assert np.array_equal(result[..., 0].ravel(), expected)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _grey_png(pixels: np.ndarray, interlace: bool) -> bytes:
    """An 8-bit grey PNG written by hand (Pillow does not write interlaced PNG): rows with filter 0,
    in Adam7's seven passes when ``interlace``."""
    h, w = pixels.shape
    passes = [pixels[y0::dy, x0::dx] for x0, y0, dx, dy in ADAM7] if interlace else [pixels]
    raw = b"".join(b"\0" + row.tobytes() for p in passes if p.size for row in p)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, int(interlace))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw))
            + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("interlace", [False, True])
def test_the_hand_written_png_is_what_pillow_reads(interlace):
    face = np.asarray(Image.open(BUNDLED_FACE).resize((37, 29)))
    assert np.array_equal(np.asarray(decode_image(_grey_png(face, interlace)))[..., 0], face)


@given(dw=st.integers(-20, 20), dh=st.integers(-20, 20), interlace=st.booleans())
def test_png_header_lying_about_its_size_is_refused(tmp_path, dw, dh, interlace):
    """IHDR (with a valid checksum) says another size than the compressed rows hold. Pillow fills
    missing rows with black, or shears the picture over extra ones, when the zlib stream ends
    cleanly; verikit refuses both. Only a size whose rows happen to need exactly the bytes there
    are cannot be told apart."""
    face = Image.open(BUNDLED_FACE).resize((40, 30))
    png = _grey_png(np.asarray(face), interlace)
    assert png[12:16] == b"IHDR"
    w, h = struct.unpack(">II", png[16:24])
    nw, nh = w + dw, h + dh
    assume(nw >= 1 and nh >= 1)
    ihdr = struct.pack(">II", nw, nh) + png[24:29]
    lying = png[:8] + _png_chunk(b"IHDR", ihdr) + png[33:]
    result = _load(tmp_path, lying)
    from verikit.image_formats import _png_raw_size

    if (dw, dh) == (0, 0):
        assert isinstance(result, np.ndarray) and np.array_equal(result[..., 0], np.asarray(face))
    elif _png_raw_size(nw, nh, 8, 0, int(interlace)) != _png_raw_size(w, h, 8, 0, int(interlace)):
        assert isinstance(result, ImageError), f"accepted a {w}x{h} PNG whose header says {nw}x{nh}"


# -- in-memory arrays and tensors ------------------------------------------------------------------


def _expected_pixels(a: np.ndarray) -> np.ndarray | None:
    """What the documented conversion gives for a grey or RGB array (None: refused or RGBA)."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        return None
    if a.dtype == np.uint8:
        v = a.astype(np.int64)
    elif a.dtype == np.bool_:
        v = a.astype(np.int64) * 255
    elif a.dtype == np.uint16:
        v = (a.astype(np.int64) * 510 + 65535) // 131070
    elif a.dtype.kind == "f":
        f = a.astype(np.float64)
        if not np.isfinite(f).all() or f.min() < -0.5 / 255 or f.max() > 1 + 0.5 / 255:
            return None
        v = np.clip(np.rint(f * 255), 0, 255).astype(np.int64)
    else:
        return None
    if v.ndim == 3 and v.shape[2] == 4:
        return "rgba"  # composited on white: checked by the file-path tests
    return np.repeat(v[..., None], 3, axis=2) if v.ndim == 2 else v


DTYPES = st.sampled_from([np.uint8, np.uint16, np.bool_, np.float16, np.float32, np.float64, np.int8, np.int16,
                          np.int32, np.int64, np.uint32, np.complex64])


@given(arrays=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)))
def test_arrays_convert_as_documented_or_are_refused(arrays):
    expected = _expected_pixels(arrays)
    try:
        out = np.asarray(to_image(arrays))
    except ImageError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith("cannot use image <array ")
        assert expected is None, f"refused an acceptable array: {msg}"
        return
    assert expected is not None, f"accepted {arrays.dtype} {arrays.shape}"
    if isinstance(expected, str):
        assert out.shape == arrays.shape[:2] + (3,)
    else:
        assert np.array_equal(out.astype(np.int64), expected)


@given(arrays=hnp.arrays(st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_]),
                         hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)))
def test_tensors_are_channels_first_arrays(arrays):
    t = torch.from_numpy(arrays.copy())
    as_array = np.moveaxis(arrays, 0, -1) if arrays.ndim == 3 else arrays if arrays.ndim == 2 else None
    expected = None if as_array is None or (arrays.ndim == 3 and arrays.shape[0] not in (1, 3, 4)) \
        else _expected_pixels(as_array)
    try:
        out = np.asarray(to_image(t))
    except ImageError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("cannot use image <tensor ")
        assert expected is None, str(exc)
        return
    assert expected is not None, f"accepted a tensor {tuple(t.shape)} {t.dtype}"
    if not isinstance(expected, str):
        assert np.array_equal(out.astype(np.int64), expected)
