"""Contract checks every plugin must pass, first-party or third-party.

Call them from a plugin's own tests::

    from verikit.testing import check_detector
    def test_contract():
        check_detector(my_plugin.create())

Each check exercises the behaviour the Protocols in :mod:`verikit.interfaces` cannot express
(batch in = batch out, boxes inside the image, deterministic output, exact search, save/load
round trip) and raises ``AssertionError`` with a message saying which rule was broken. Inputs are
synthetic and small, so a check takes well under a second for a CPU model. Heavy imports
(numpy, PIL, torch) happen inside the functions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

__all__ = ["check_backbone", "check_detector", "check_index_backend", "check_segmenter", "synthetic_images",
           "synthetic_mask_dataset"]


def synthetic_images() -> list[Any]:
    """Three RGB images of different sizes and content: noise, flat grey, and a drawn 'face'."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), "RGB")
    flat = Image.new("RGB", (64, 80), (128, 128, 128))
    face = Image.new("RGB", (160, 120), (200, 200, 200))
    draw = ImageDraw.Draw(face)
    draw.ellipse((50, 20, 110, 100), fill=(230, 190, 160), outline=(0, 0, 0))
    draw.ellipse((62, 45, 74, 53), fill=(20, 20, 20))
    draw.ellipse((86, 45, 98, 53), fill=(20, 20, 20))
    draw.line((70, 80, 90, 80), fill=(120, 40, 40), width=3)
    return [noise, flat, face]


def synthetic_mask_dataset(folder: str | Path, n: int = 12, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """``n`` noise images with one bright disk each and their 0/255 masks: ``folder/images/iNN.png``
    and ``folder/masks/iNN.png``. Returns (images folder, masks folder). The background is noise
    in 0..150 and the disk 120..255, so single pixels overlap and a network must look around."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images, masks = Path(folder) / "images", Path(folder) / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        r = rng.uniform(0.15, 0.3) * size
        cx, cy = rng.uniform(r, size - r, 2)
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        inside = np.asarray(mask)[..., None] > 127
        pixels = np.where(inside, rng.integers(120, 256, (size, size, 3)), rng.integers(0, 151, (size, size, 3)))
        Image.fromarray(pixels.astype(np.uint8), "RGB").save(images / f"i{i:02d}.png")
        mask.save(masks / f"i{i:02d}.png")
    return images, masks


def check_detector(detector: Any, images: list[Any] | None = None) -> None:
    """A detector returns one valid :class:`~verikit.structures.Detections` per image, in order.

    Checked: it satisfies :class:`~verikit.interfaces.Detector`; an empty batch gives ``[]``; each
    result is a ``Detections`` whose ``image_size`` is that image's (width, height) and whose boxes
    lie inside it; a batch gives the same results as the images one by one; running twice gives
    the same boxes (detection is deterministic at inference).
    """
    import numpy as np

    from .interfaces import Detector
    from .structures import Detections

    assert isinstance(detector, Detector), f"{detector!r} has no detect(images) method"
    images = images if images is not None else synthetic_images()
    assert detector.detect([]) == [], "detect([]) must return []"
    batch = detector.detect(list(images))
    assert isinstance(batch, list) and len(batch) == len(images), \
        f"detect() returned {type(batch).__name__} of length {len(batch)} for {len(images)} images"
    for i, (image, dets) in enumerate(zip(images, batch)):
        assert isinstance(dets, Detections), f"result {i} is {type(dets).__name__}, not verikit.structures.Detections"
        assert dets.image_size == image.size, f"result {i}: image_size {dets.image_size} != image size {image.size}"
        w, h = image.size
        if len(dets):
            b = dets.boxes
            assert (b[:, :2] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all(), \
                f"result {i}: boxes {b.tolist()} leave the {w}x{h} image"
        single = detector.detect([image])[0]
        assert np.allclose(single.boxes, dets.boxes, atol=1e-3) and np.allclose(single.scores, dets.scores, atol=1e-4), \
            f"result {i}: detecting the image alone gives other boxes than in a batch"
    again = detector.detect(list(images))
    for i, (a, b) in enumerate(zip(batch, again)):
        assert np.array_equal(a.boxes, b.boxes), f"result {i}: two runs on the same image gave different boxes"


def check_segmenter(segmenter: Any, images: list[Any] | None = None) -> None:
    """A segmenter returns one valid :class:`~verikit.structures.Masks` per image, in order.

    Checked: it satisfies :class:`~verikit.interfaces.Segmenter`; an empty batch gives ``[]``;
    each result is a ``Masks`` of shape (number of boxes, image height, image width), float32,
    finite, in [0, 1]; an image with no detections gets a (0, H, W) result; a batch gives the
    same masks as the images one by one; two runs give the same masks (inference is deterministic).
    The boxes used are the whole image and a small box near its top-left corner.
    """
    import numpy as np

    from .interfaces import Segmenter
    from .structures import Detections, Masks

    assert isinstance(segmenter, Segmenter), f"{segmenter!r} has no segment(images, detections) method"
    images = images if images is not None else synthetic_images()
    assert segmenter.segment([], []) == [], "segment([], []) must return []"
    dets = []
    for i, image in enumerate(images):
        w, h = image.size
        boxes = [[0.0, 0.0, w, h], [w * 0.1, h * 0.1, w * 0.5, h * 0.6]]
        dets.append(Detections.empty(image_size=(w, h)) if i == 1 else Detections(boxes, [1.0, 0.5], image_size=(w, h)))
    batch = segmenter.segment(list(images), dets)
    assert isinstance(batch, list) and len(batch) == len(images), \
        f"segment() returned {type(batch).__name__} of length {len(batch)} for {len(images)} images"
    for i, (image, d, masks) in enumerate(zip(images, dets, batch)):
        assert isinstance(masks, Masks), f"result {i} is {type(masks).__name__}, not verikit.structures.Masks"
        w, h = image.size
        m = masks.masks
        assert m.shape == (len(d), h, w), f"result {i}: masks of shape {m.shape}, expected ({len(d)}, {h}, {w})"
        assert m.dtype == np.float32, f"result {i}: masks are {m.dtype}, not float32"
        assert np.isfinite(m).all() and (m >= 0).all() and (m <= 1).all(), f"result {i}: mask values leave [0, 1]"
        single = segmenter.segment([image], [d])[0]
        assert single.masks.shape == m.shape and np.allclose(single.masks, m, atol=1e-4), \
            f"result {i}: segmenting the image alone gives other masks than in a batch"
    again = segmenter.segment(list(images), dets)
    for i, (a, b) in enumerate(zip(batch, again)):
        assert np.allclose(a.masks, b.masks, atol=1e-5), f"result {i}: two runs on the same image gave different masks"


def check_backbone(factory: Callable[..., Any], *, size: int = 64) -> None:
    """A backbone factory builds an ``nn.Module`` that maps (B, C, H, W) to (B, num_features, h, w).

    Checked for ``in_chans`` 3 and 1: ``num_features`` is a positive int equal to the output's
    channel count; the output is finite; an ``input_spec``, when declared, is an InputSpec whose
    channels match. ``factory`` is called with keyword ``in_chans`` only (bind the rest first,
    e.g. ``functools.partial(backbones.create, "timm:resnet18")``).
    """
    import torch

    from .interfaces import Backbone
    from .structures import InputSpec

    for chans in (3, 1):
        model = factory(in_chans=chans)
        assert isinstance(model, torch.nn.Module), f"factory returned {type(model).__name__}, not torch.nn.Module"
        assert isinstance(model, Backbone), "backbone must expose num_features and forward()"
        nf = model.num_features
        assert isinstance(nf, int) and not isinstance(nf, bool) and nf > 0, f"num_features must be a positive int, got {nf!r}"
        spec = getattr(model, "input_spec", None)
        if spec is not None:
            assert isinstance(spec, InputSpec), f"input_spec must be a verikit.structures.InputSpec, got {type(spec).__name__}"
            assert spec.channels == chans, f"input_spec.channels {spec.channels} != in_chans {chans}"
        model.eval()
        with torch.inference_mode():
            out = model(torch.randn(2, chans, size, size, generator=torch.Generator().manual_seed(0)))
        assert isinstance(out, torch.Tensor) and out.ndim == 4, \
            f"forward must return a (B, F, h, w) tensor, got {getattr(out, 'shape', type(out).__name__)}"
        assert out.shape[0] == 2 and out.shape[1] == nf, f"output shape {tuple(out.shape)} does not match (2, {nf}, h, w)"
        assert torch.isfinite(out).all(), "backbone output has NaN or inf"


def check_index_backend(factory: Callable[..., Any], *, dim: int = 16, n: int = 200) -> None:
    """An index backend built with ``factory(dim=...)`` searches like exact inner product.

    Checked: it satisfies :class:`~verikit.interfaces.IndexBackend`; after add (training first
    when ``needs_training``), ``ntotal`` counts the vectors and each stored vector's top hit is
    itself with score ~1 (unit vectors, inner product); ids are the caller's int64 ids; a
    missing neighbour is id -1; removal (when supported) removes; save + load into a fresh index
    gives identical results.
    """
    import numpy as np

    from .interfaces import IndexBackend

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 1000 + n, dtype=np.int64) * 7  # not 0..n-1: ids must be the caller's
    index = factory(dim=dim)
    assert isinstance(index, IndexBackend), f"{type(index).__name__} lacks part of the IndexBackend protocol"
    assert index.dim == dim, f"dim is {index.dim}, expected {dim}"
    if index.needs_training:
        index.train(vectors)
    index.add(ids, vectors)
    assert index.ntotal == n, f"ntotal is {index.ntotal} after adding {n} vectors"
    scores, found = index.search(vectors[:20], 3)
    assert scores.shape == (20, 3) and found.shape == (20, 3), f"search returned shapes {scores.shape}, {found.shape}"
    exact = np.argsort(-(vectors[:20] @ vectors.T), axis=1)[:, 0]
    assert (found[:, 0] == ids[exact]).mean() >= 0.9, "top hits differ from exact inner-product search"
    assert np.allclose(scores[found[:, 0] == ids[:20], 0], 1.0, atol=1e-3), "a vector's score with itself is not ~1"
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all(), "scores are not in descending order"
    _, far = index.search(vectors[:1], n + 5)
    assert (far[0, n:] == -1).all(), "missing neighbours must have id -1"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        index.save(path)
        fresh = factory(dim=dim)
        fresh.load(path)
        s2, f2 = fresh.search(vectors[:20], 3)
        assert np.array_equal(f2, found) and np.allclose(s2, scores, atol=1e-5), "save + load changed search results"
    if index.remove(ids[:5]):
        assert index.ntotal == n - 5, f"ntotal is {index.ntotal} after removing 5 of {n}"
        _, after = index.search(vectors[:5], 1)
        assert not np.isin(after, ids[:5]).any(), "removed ids are still found"
