"""The low-light option of face-api.js's box detectors (``enhance``): the contrast-normalised copy
itself (luminance spread, colour and size kept), that the network looks at it while the boxes stay
the photo's, and -- with the real weights and Extended Yale B -- that it finds faces in dark photos."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from verikit.io import load_image
from verikit_faceapi import create_detector
from verikit_faceapi.contrast import ENHANCE_MODES, enhanced
from verikit_faceapi.weights import NETWORKS, convert, default_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_package import write_fake_package  # noqa: E402

DATA = Path(os.environ.get("VERIKIT_DATA") or Path(__file__).resolve().parents[3].parent / "shared" / "data")


def _dark_photo(seed: int = 0, size=(40, 30)) -> Image.Image:
    """A dim colour photo: levels 8-60, a reddish left half and a bluish right half."""
    rng = np.random.default_rng(seed)
    x = rng.integers(8, 40, size=(size[1], size[0], 3)).astype(np.uint8)
    x[:, : size[0] // 2, 0] += 20
    x[:, size[0] // 2:, 2] += 20
    return Image.fromarray(x)


@pytest.mark.parametrize("mode", ["equalize", "clahe"])
def test_enhanced_copy_spreads_the_luminance_and_keeps_colour_and_size(mode):
    photo = _dark_photo()
    out = enhanced(photo, mode)
    assert out.size == photo.size and out.mode == "RGB"
    y0, cb0, cr0 = (np.asarray(c, np.int16) for c in photo.convert("YCbCr").split())
    y1, cb1, cr1 = (np.asarray(c, np.int16) for c in out.convert("YCbCr").split())
    assert y0.max() - y0.min() < 60 and y1.max() - y1.min() > (200 if mode == "equalize" else 100)
    assert np.corrcoef(y0.ravel(), y1.ravel())[0, 1] > 0.9  # brighter stays brighter, on the whole
    if mode == "equalize":  # the luminance is Pillow's equalisation of it, up to the RGB round trip
        from PIL import ImageOps

        want = np.asarray(ImageOps.equalize(photo.convert("YCbCr").split()[0]), np.int16)
        assert np.median(np.abs(y1 - want)) <= 1 and np.abs(y1 - want).max() <= 12
    for before, after in ((cb0, cb1), (cr0, cr1)):  # chroma as it was, up to rounding and RGB's gamut
        assert np.median(np.abs(after - before)) <= 1 and np.abs(after - before).max() <= 12


def test_enhance_none_is_the_photo_itself_and_grey_photos_work():
    photo = _dark_photo()
    assert enhanced(photo, "none") is photo
    grey = enhanced(photo.convert("L"), "equalize")
    r, g, b = (np.asarray(c, np.int16) for c in grey.split())
    assert np.abs(r - g).max() <= 2 and np.abs(g - b).max() <= 2  # still grey
    with pytest.raises(ValueError, match="unknown enhance mode 'bright'"):
        enhanced(photo, "bright")
    assert ENHANCE_MODES == ("none", "equalize", "clahe")


def test_detector_with_enhance_detects_on_the_enhanced_copy_and_returns_the_photos_boxes(tmp_path):
    """Random weights (Tiny-YOLO: the step is the same code for both networks), threshold 0: many
    boxes. With enhance, detect(photo) returns exactly what
    the plain detector returns for the enhanced copy -- boxes in the same pixels, labelled with the
    photo's size -- and differs from detecting on the photo itself."""
    write_fake_package(tmp_path / "package" / "model", seed=3)
    convert(tmp_path / "package" / "model", tmp_path / "weights")
    kind = "tiny_yolo"
    weights = str(tmp_path / "weights" / NETWORKS[kind][2])
    options = dict(box_weights=weights, landmarks=False, score_threshold=0.0, border=0, input_size=64)
    photos = [_dark_photo(1, (48, 36)), _dark_photo(2, (30, 52))]
    plain = create_detector(kind, **options)
    lifted = create_detector(kind, enhance="equalize", **options)
    assert lifted.enhance == "equalize" and plain.enhance == "none"
    got, want, own = lifted.detect(photos), plain.detect([enhanced(p, "equalize") for p in photos]), plain.detect(photos)
    for g, w, o, photo in zip(got, want, own, photos):
        assert g.image_size == photo.size and len(g) > 0
        assert np.array_equal(g.boxes, w.boxes) and np.array_equal(g.scores, w.scores)
    assert any(not np.array_equal(g.scores, o.scores) for g, o in zip(got, own))


needs_real = pytest.mark.skipif(not all((default_dir() / NETWORKS[k][2]).is_file() for k in ("ssd", "landmarks")),
                                reason=f"real faceapi weights not in {default_dir()}; run python -m verikit_faceapi fetch")


@needs_real
def test_real_ssd_finds_faces_in_dark_extended_yale_b_photos_with_enhance():
    """Extended Yale B photos lit from far to the side (azimuth 85-130 degrees): face-api.js's SSD
    (with its border search) finds faces in few of them as given, in more on equalised copies."""
    folder = DATA / "cropped_yale_b" / "yaleB39"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found; set VERIKIT_DATA")
    paths = sorted(p for p in folder.glob("*.pgm") if "A+1" in p.name or "A+085" in p.name or "A+095" in p.name)[:4]
    images = [load_image(p) for p in paths]
    plain = create_detector("ssd", landmarks=False).detect(images)
    lifted = create_detector("ssd", landmarks=False, enhance="equalize").detect(images)
    found_plain, found_lifted = sum(len(d) > 0 for d in plain), sum(len(d) > 0 for d in lifted)
    assert found_lifted > found_plain, (found_plain, found_lifted)
    for d, image in zip(lifted, images):  # boxes in the photo, of a face's size
        if len(d):
            w, h = image.size
            assert (d.boxes[:, 2] <= w).all() and (d.boxes[:, 3] <= h).all()
            assert ((d.boxes[:, 2] - d.boxes[:, 0]) > w / 4).all()
