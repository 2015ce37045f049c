"""The image forms the Python API accepts, each turned into what :func:`verikit.io.load_image` returns.

This module owns one conversion, :func:`to_image`, that every public function taking images goes
through (``embed_images``, ``embed_files``, ``enroll``, ``verify``, ``search``, the pipeline's
detector and segmenter entry points), so a file and the same picture held in memory give the
same RGB image, and so the same template. Accepted:

* a path (``str`` or ``os.PathLike``): :func:`verikit.io.load_image`;
* encoded bytes (``bytes``, ``bytearray``, ``memoryview``: a file's content):
  :func:`verikit.io.decode_image`, the same decoder;
* a PIL image of any mode ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "I;16", "I", "F", ...):
  EXIF orientation, then :func:`verikit.io.to_rgb`, the same code a file's pixels go through;
* a numpy array H x W or H x W x C (C = 1, 3 or 4: grey, RGB, RGBA) of ``uint8`` (0..255),
  ``uint16`` (0..65535), ``bool``, or float in [0, 1];
* a torch tensor C x H x W (C = 1, 3 or 4) or H x W, of the same dtypes, channels first.

Anything that would need a guess is refused with one line saying what was given and what is
accepted: a float array outside [0, 1] (a normalised tensor, or 0..255 floats), NaN, two
channels, channels last in a tensor or first in an array, signed or 32/64-bit integers, a batch
where one image is expected.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .errors import ImageError
from .io import (DEFAULT_MAX_PIXELS, check_pixel_limit, decode_image, exif_oriented, image_error, load_image, path_text,
                 quiet_pillow, to_rgb, uint16_to_uint8, unit_to_uint8)

ImageInput = Any
"""Any of the forms above (a type alias for signatures; :func:`to_image` checks the value)."""

ACCEPTED = ("a path, encoded image bytes, a PIL image, a numpy array HxW or HxWxC (C 1/3/4; uint8, uint16, bool, "
            "or float in [0, 1]), or a torch tensor CxHxW (C 1/3/4, same dtypes)")
_UNIT_SLACK = 0.5 / 255.0  # half a grey level: float noise around 0 and 1 rounds to the same pixel
_CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _torch_tensor_type() -> type | None:
    torch = sys.modules.get("torch")  # never import torch here: `verikit --help` stays light
    return getattr(torch, "Tensor", None)


def is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def input_name(x: Any) -> str:
    """How an input is named in results and messages: the path as :func:`verikit.io.path_text`,
    or a short description of an in-memory image (``<PIL image L 92x112>``)."""
    if is_path(x):
        return path_text(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"<{len(x)} bytes>"
    if isinstance(x, Image.Image):
        return f"<PIL image {x.mode} {x.width}x{x.height}>"
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        kind = "tensor" if _is_tensor(x) else "array"
        return f"<{kind} {str(dtype).replace('torch.', '')} {'x'.join(str(int(s)) for s in shape)}>"
    return f"<{type(x).__name__}>"


def _is_tensor(x: Any) -> bool:
    tensor = _torch_tensor_type()
    return tensor is not None and isinstance(x, tensor)


def as_source(x: Any) -> Any:
    """The input as results keep it: a :class:`~pathlib.Path` for a path, the object itself otherwise."""
    return Path(x) if is_path(x) else x


def source_key(x: Any) -> Any:
    """A hashable key for an input: equal paths are one file; an in-memory image is itself."""
    return Path(x) if is_path(x) else ("in-memory", id(x))


def refuse(x: Any, reason: str) -> ImageError:
    return ImageError(f"cannot use image {input_name(x)}: {reason}; accepted: {ACCEPTED}")


def to_image(x: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Any accepted image form -> a fully loaded RGB PIL image, exactly as ``load_image`` reads
    the same picture from a file. :class:`~verikit.errors.ImageError` (one line) otherwise."""
    if is_path(x):
        return load_image(x, max_pixels=max_pixels)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return decode_image(x, name=input_name(x), max_pixels=max_pixels)
    if isinstance(x, Image.Image):
        return _from_pil(x, max_pixels)
    if _is_tensor(x):
        return _from_array(_tensor_to_hwc(x), x, max_pixels)
    if isinstance(x, np.ndarray):
        return _from_array(x, x, max_pixels)
    raise refuse(x, f"{type(x).__module__}.{type(x).__qualname__} is not an image form")


def _from_pil(img: Image.Image, max_pixels: int | None) -> Image.Image:
    name = input_name(img)
    check_pixel_limit(img.size, name, max_pixels)
    with quiet_pillow():
        try:
            img.load()  # a lazily opened file decodes here: truncation is the caller's error now
        except Exception as exc:  # noqa: BLE001 - Pillow's zoo of decode errors, as in io.load_image
            raise image_error(name, str(exc) or type(exc).__name__) from None
        out = to_rgb(exif_oriented(img), name)
    return out.copy() if out is img else out  # never hand back (and let callers mutate) the caller's object


def _tensor_to_hwc(t: Any) -> np.ndarray:
    import torch

    if t.ndim == 2:
        return _tensor_numpy(t, torch)
    if t.ndim != 3:
        raise refuse(t, f"a {t.ndim}-D tensor is not one image (a batch of images goes in a list, one image "
                        "per item)" if t.ndim == 4 else f"a {t.ndim}-D tensor is not an image")
    if t.shape[0] not in _CHANNEL_MODES:
        last = " (channels last? tensors are channels first: CxHxW)" if t.shape[-1] in _CHANNEL_MODES else ""
        raise refuse(t, f"{int(t.shape[0])} channels{last}")
    return _tensor_numpy(t, torch).transpose(1, 2, 0)


def _tensor_numpy(t: Any, torch: Any) -> np.ndarray:
    t = t.detach().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if t.dtype == getattr(torch, "uint16", None):
        return t.to(torch.int32).numpy().astype(np.uint16)
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as exc:
        raise refuse(t, f"dtype {t.dtype} ({exc})") from None


def _from_array(a: np.ndarray, original: Any, max_pixels: int | None) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise refuse(original, f"a {a.ndim}-D array is not one image (a batch of images goes in a list)")
    if a.ndim == 3 and a.shape[2] not in _CHANNEL_MODES:
        first = " (channels first? arrays are channels last: HxWxC)" if a.shape[0] in _CHANNEL_MODES else ""
        raise refuse(original, f"{a.shape[2]} channels{first}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise refuse(original, "it has no pixels")
    check_pixel_limit((a.shape[1], a.shape[0]), input_name(original), max_pixels)
    if a.dtype == np.uint8:
        pixels = a
    elif a.dtype == np.bool_:
        pixels = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        if a.ndim == 2:  # the 16-bit grey path of a 16-bit PNG or TIFF file ("I;16")
            return to_rgb(Image.fromarray(np.ascontiguousarray(a, dtype=np.uint16)), input_name(original))
        pixels = uint16_to_uint8(a)
    elif a.dtype.kind == "f":
        pixels = unit_to_uint8(_unit_range(a, original))
    else:
        raise refuse(original, f"dtype {a.dtype} (convert to uint8 or uint16, or to float in [0, 1])")
    return to_rgb(Image.fromarray(np.ascontiguousarray(pixels)), input_name(original))  # L, RGB or RGBA by shape


def _unit_range(a: np.ndarray, original: Any) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if not np.isfinite(a).all():
        raise refuse(original, "it holds NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < -_UNIT_SLACK or hi > 1.0 + _UNIT_SLACK:
        hint = " (0..255 values? use uint8)" if hi <= 255.0 and lo >= 0.0 else \
            " (normalised with a mean and std? undo it)" if lo < 0.0 else ""
        raise refuse(original, f"float values span [{lo:.4g}, {hi:.4g}], outside [0, 1]{hint}")
    return a


def to_images(images: Any, *, what: str = "images", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """:func:`to_image` of each item of a sequence (see :func:`check_sequence`)."""
    return [to_image(x, max_pixels=max_pixels) for x in check_sequence(images, what)]


def check_sequence(images: Any, what: str = "images") -> Sequence[Any]:
    """``images`` as a sequence of image inputs, refusing one image passed where several are
    expected (a path string would otherwise be read letter by letter, an HxWx3 array row by row).
    A list or tuple of images, or a 4-D batch (numpy NxHxWxC, torch NxCxHxW) is accepted."""
    if is_path(images) or isinstance(images, (bytes, bytearray, memoryview, Image.Image)):
        raise ImageError(f"{what} must be a sequence of images; got one image {input_name(images)}: "
                         "wrap it in a list")
    if _is_tensor(images) or isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ImageError(f"{what} must be a sequence of images; got {input_name(images)}: pass a list of "
                             "images or a 4-D batch (numpy NxHxWxC, torch NxCxHxW)")
        return list(images)
    try:
        return list(images)
    except TypeError:
        raise ImageError(f"{what} must be a sequence of images; got {input_name(images)}") from None
