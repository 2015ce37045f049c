"""Decoding a batch of image inputs on a few threads at once, for the detector's file path.

This module owns :func:`decode_batch`: the images of one batch (files, encoded bytes, or
in-memory images) turned into RGB images exactly as :func:`verikit.image_input.to_image` turns
each one, with the one-line :class:`~verikit.errors.ImageError` of an input that cannot be used
returned in its place, in input order. Decoding a JPEG is most of what reading a photo costs, and
Pillow's decoders release the GIL, so the files of a batch are decoded on ``decode_workers()``
threads at once instead of one after the other on one core while the others idle.

The threads come from the process's shared pool of that size (:func:`verikit.threads.shared_pool`,
reused by every batch). In-memory images are converted in
the calling thread: they are cheap, and a lazily opened PIL image must not be loaded by two
threads at once (the same object may appear twice in a batch).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from ..errors import ImageError
from ..image_input import is_path, to_image
from ..threads import shared_pool


def decode_workers() -> int:
    """How many threads decode a batch: torch's intra-op thread count when torch is loaded (the
    CPU budget the caller gave the forward the images go to), else the CPUs of the machine."""
    torch = sys.modules.get("torch")  # never import torch here: `verikit --help` stays light
    if torch is not None:
        return max(1, int(torch.get_num_threads()))
    return max(1, os.cpu_count() or 1)


def _decode_one(x: Any) -> Any:
    try:
        return to_image(x)
    except ImageError as exc:
        return exc


def _encoded(x: Any) -> bool:
    """A file or encoded bytes: what needs decoding, and is safe to decode on another thread."""
    return is_path(x) or isinstance(x, (bytes, bytearray, memoryview))


def decode_batch(inputs: Sequence[Any], *, workers: int | None = None) -> list[Any]:
    """Per input, in order: the RGB image :func:`~verikit.image_input.to_image` gives, or the
    :class:`~verikit.errors.ImageError` it raises (returned, not raised). Any other exception
    (a bug, not a bad image) is raised as in the serial path.

    ``workers``: threads decoding at once (default :func:`decode_workers`); 1 decodes serially in
    the calling thread."""
    inputs = list(inputs)
    workers = decode_workers() if workers is None else max(1, int(workers))
    encoded = [k for k, x in enumerate(inputs) if _encoded(x)]
    workers = min(workers, len(encoded))
    out: list[Any] = [None] * len(inputs)
    if workers > 1:
        for k, image in zip(encoded, shared_pool(workers).map(_decode_one, [inputs[k] for k in encoded])):
            out[k] = image
        rest = [k for k, x in enumerate(inputs) if not _encoded(x)]
    else:
        rest = range(len(inputs))
    for k in rest:
        out[k] = _decode_one(inputs[k])
    return out
