"""Tests for verikit.io: every file becomes an RGB image or one clear ImageError."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from verikit.errors import DataError, ImageError, VerikitError
from verikit.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    FolderScan,
    is_image_file,
    list_images,
    load_image,
    scan_identity_folders,
)


def _rgb(w: int = 40, h: int = 30) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    a[..., 2] = 128
    return Image.fromarray(a, "RGB")


def _assert_rgb(img: Image.Image, size: tuple[int, int]) -> None:
    assert img.mode == "RGB"
    assert img.size == size
    assert np.asarray(img).shape == (size[1], size[0], 3)  # pixels really loaded and usable


def _opened(path: Path) -> Image.Image:
    with Image.open(path) as img:  # closed promptly: tests also run under -W error
        img.load()
        return img.copy()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("name, fmt", [("a.jpg", "JPEG"), ("a.png", "PNG"), ("a.bmp", "BMP"), ("a.webp", "WEBP")])
def test_colour_formats_load_as_rgb(tmp_path, name, fmt):
    p = tmp_path / name
    _rgb().save(p, fmt)
    _assert_rgb(load_image(p), (40, 30))
    _assert_rgb(load_image(str(p)), (40, 30))


def test_pgm_grey_becomes_three_equal_channels(tmp_path):
    p = tmp_path / "1.pgm"
    Image.fromarray(np.arange(92 * 112, dtype=np.uint32).reshape(112, 92).astype(np.uint8) % 251, "L").save(p)
    img = load_image(p)
    _assert_rgb(img, (92, 112))
    a = np.asarray(img)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    assert np.array_equal(a[..., 0], np.asarray(_opened(p)))


def test_gif_with_and_without_extension(tmp_path):
    frames = [_rgb().quantize(16), Image.new("RGB", (40, 30), "red").quantize(4)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    (tmp_path / "subject01.happy").write_bytes((tmp_path / "anim.gif").read_bytes())
    (tmp_path / "noext").write_bytes((tmp_path / "anim.gif").read_bytes())
    for name in ("anim.gif", "subject01.happy", "noext"):
        img = load_image(tmp_path / name)
        _assert_rgb(img, (40, 30))
        # The first frame, not the all-red second one.
        assert np.asarray(img)[..., 1].max() > 100


def test_tiff_16bit_grey_is_scaled_not_clipped(tmp_path):
    a = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (20, 1))
    p = tmp_path / "deep.tif"
    Image.fromarray(a).save(p)
    assert _opened(p).mode.startswith("I;16")
    out = np.asarray(load_image(p))
    _assert_rgb(load_image(p), (50, 20))
    assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255
    assert 120 <= out[0, 25, 0] <= 135  # mid-range stays mid-grey (no clipping to 255)
    assert np.array_equal(out[..., 0], out[..., 2])


def test_float_grey_in_unit_range(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(p)
    assert set(np.unique(np.asarray(load_image(p)))) == {128}


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "c.jpg"
    _rgb().convert("CMYK").save(p)
    _assert_rgb(load_image(p), (40, 30))


def test_exif_orientation_rotates(tmp_path):
    img = _rgb(60, 20)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert _opened(p).size == (60, 20)
    _assert_rgb(load_image(p), (20, 60))


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., :3] = (0, 0, 0)  # black colour hidden under transparency
    a[:, 5:, 3] = 255  # right half opaque black, left half fully transparent
    p = tmp_path / "t.png"
    Image.fromarray(a, "RGBA").save(p)
    out = np.asarray(load_image(p))
    assert (out[:, :5] == 255).all()
    assert (out[:, 5:] == 0).all()


def test_la_half_transparent_blends_with_white(tmp_path):
    p = tmp_path / "la.png"
    Image.fromarray(np.dstack([np.zeros((4, 4), np.uint8), np.full((4, 4), 128, np.uint8)]), "LA").save(p)
    out = np.asarray(load_image(p))
    assert 120 <= out.min() and out.max() <= 135


def test_transparent_palette_gif_uses_white(tmp_path):
    img = Image.new("P", (6, 6), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (3, 0, 6, 6))
    p = tmp_path / "t.gif"
    img.save(p, transparency=0)
    out = np.asarray(load_image(p))
    assert (out[:, :3] == 255).all()
    assert (out[:, 3:] == (255, 0, 0)).all()


def test_returned_image_is_independent_of_the_file(tmp_path):
    p = tmp_path / "a.png"
    _rgb().save(p)
    img = load_image(p)
    p.unlink()
    assert img.getpixel((0, 0)) is not None  # usable after the file is gone


# ---------------------------------------------------------------- failures


def _error_for(path, **kw) -> str:
    with pytest.raises(ImageError) as info:
        load_image(path, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert isinstance(info.value, VerikitError)
    return msg


def test_truncated_jpeg(tmp_path):
    src = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)).save(src, quality=95)
    data = src.read_bytes()
    cut = _write(tmp_path / "x.jpg", data[: len(data) // 2])
    assert "file is truncated" in _error_for(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png(tmp_path):
    src = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (100, 100, 3), np.uint8)).save(src)
    data = src.read_bytes()
    _error_for(_write(tmp_path / "x.png", data[: len(data) // 2]))


def test_corrupt_bytes(tmp_path):
    p = _write(tmp_path / "bad.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    _error_for(p)


def test_not_an_image(tmp_path):
    p = _write(tmp_path / "notes.txt", b"hello, this is text\n")
    assert "not an image (unrecognised format)" in _error_for(p)


def test_empty_file(tmp_path):
    assert "file is empty" in _error_for(_write(tmp_path / "e.png", b""))


def test_missing_file(tmp_path):
    assert "no such file" in _error_for(tmp_path / "missing.jpg")


def test_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    assert "is a directory" in _error_for(tmp_path / "d.png")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(p)
    msg = _error_for(p, max_pixels=1_000_000)
    assert "25000000 pixels exceeds the limit of 1000000 (decompression bomb guard)" in msg
    small = tmp_path / "small.png"
    Image.new("L", (1000, 1000)).save(small)
    _assert_rgb(load_image(small, max_pixels=1_000_000), (1000, 1000))


def test_default_limit_is_pillows():
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_pillow_global_bomb_guard_becomes_image_error(tmp_path, monkeypatch):
    p = tmp_path / "b.png"
    Image.new("L", (100, 100)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px > 2x -> Pillow raises itself
    assert "decompression bomb" in _error_for(p, max_pixels=None)


def test_our_limit_replaces_pillows_warning(tmp_path, monkeypatch):
    p = tmp_path / "w.png"
    Image.new("L", (40, 40)).save(p)  # 1,600 px: between Pillow's limit and twice it
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _assert_rgb(load_image(p, max_pixels=None), (40, 40))


def test_load_does_not_touch_pillow_globals(tmp_path):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    p = tmp_path / "a.png"
    _rgb().save(p)
    load_image(p, max_pixels=None)
    with pytest.raises(ImageError):
        load_image(p, max_pixels=10)
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# ---------------------------------------------------------------- is_image_file


def test_is_image_file_by_suffix_and_content(tmp_path):
    gif = tmp_path / "a.gif"
    _rgb().save(gif)
    for name in ("subject01.happy", "subject01.centerlight", "noext"):
        _write(tmp_path / name, gif.read_bytes())
        assert is_image_file(tmp_path / name)
    for fmt in ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM"):
        p = tmp_path / f"sniff_{fmt}"
        _rgb().save(p, fmt)
        assert is_image_file(p), fmt
    assert is_image_file(tmp_path / "UPPER.JPG")  # suffix is enough, case-insensitive
    assert {".jpg", ".pgm", ".tiff", ".webp"} <= IMAGE_SUFFIXES


def test_is_image_file_rejects_text_and_hidden(tmp_path):
    _write(tmp_path / "yaleB01_P00.info", b"yaleB01_P00A+000E+00.pgm\n")
    _write(tmp_path / "a.txt", b"P5 is a pgm magic\n")
    _write(tmp_path / "README", b"BMW and other text\n")
    _write(tmp_path / "labels.xml", b"<xml/>")
    _rgb().save(tmp_path / ".hidden.png")
    for name in ("yaleB01_P00.info", "a.txt", "README", "labels.xml", ".hidden.png", "missing"):
        assert not is_image_file(tmp_path / name), name


# ---------------------------------------------------------------- folders


def _tree(root: Path, spec: dict[str, int]) -> None:
    for folder, n in spec.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _rgb(8, 8).save(root / folder / f"{i}.png")


def test_scan_leaf_identities(tmp_path):
    _tree(tmp_path, {"s1": 3, "s2": 2, "Alpha/character01": 2, ".git/objects": 2})
    _write(tmp_path / "s1" / "s1_P00.info", b"text")
    _write(tmp_path / "s1" / ".DS_Store", b"junk")
    _rgb(8, 8).save(tmp_path / "loose.png")
    scan = scan_identity_folders(tmp_path)
    assert isinstance(scan, FolderScan)
    assert scan.identities == ["Alpha/character01", "s1", "s2"]
    assert len(scan.items) == 7
    assert [p.name for p in scan.by_identity["s1"]] == ["0.png", "1.png", "2.png"]
    assert set(scan.skipped) == {tmp_path / "s1" / "s1_P00.info", tmp_path / "loose.png"}
    assert list(scan.items) == sorted(scan.items)


def test_scan_min_images_moves_small_identities_to_skipped(tmp_path):
    _tree(tmp_path, {"a": 3, "b": 1})
    scan = scan_identity_folders(tmp_path, min_images=2)
    assert scan.identities == ["a"]
    assert tmp_path / "b" / "0.png" in scan.skipped
    with pytest.raises(DataError):
        scan_identity_folders(tmp_path, min_images=5)


def test_scan_depth_one_groups_by_top_folder(tmp_path):
    _tree(tmp_path, {"Greek/character01": 2, "Greek/character02": 2, "Latin/character01": 1, "Latin": 1})
    scan = scan_identity_folders(tmp_path, depth=1)
    assert scan.identities == ["Greek", "Latin"]
    assert len(scan.by_identity["Greek"]) == 4 and len(scan.by_identity["Latin"]) == 2
    deep = scan_identity_folders(tmp_path, depth=2)
    assert deep.identities == ["Greek/character01", "Greek/character02", "Latin/character01"]
    assert tmp_path / "Latin" / "0.png" in deep.skipped  # too shallow for depth=2


def test_scan_bad_arguments(tmp_path):
    _tree(tmp_path, {"a": 1})
    for kw in ({"depth": 0}, {"depth": "top"}, {"min_images": 0}):
        with pytest.raises(ValueError):
            scan_identity_folders(tmp_path, **kw)


def test_scan_empty_and_missing_folders(tmp_path):
    with pytest.raises(DataError, match=r"no images found under .*expected one sub-folder per identity"):
        scan_identity_folders(tmp_path)
    _write(tmp_path / "notes.txt", b"x")
    _rgb(8, 8).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="no images found"):
        scan_identity_folders(tmp_path)
    for bad in (tmp_path / "nope", tmp_path / "notes.txt"):
        with pytest.raises(DataError) as info:
            list_images(bad)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_list_images_sorted_and_recursive(tmp_path):
    _tree(tmp_path, {"b": 2, "a/x": 1})
    _write(tmp_path / "a" / "readme.txt", b"x")
    images, skipped = list_images(tmp_path)
    assert images == sorted(images) and len(images) == 3
    assert skipped == [tmp_path / "a" / "readme.txt"]


def test_list_images_survives_symlink_loop(tmp_path):
    _tree(tmp_path, {"a": 1})
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)
    images, _ = list_images(tmp_path)
    assert images == [tmp_path / "a" / "0.png"]


# ---------------------------------------------------------------- real data


def _need(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"real data set {name} not found at {folder}; set VERIKIT_DATA")
    return folder


def test_real_yalefaces_all_load(shared_data):
    folder = _need(shared_data, "yalefaces")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in files if "readme" not in p.name.lower()]
    assert len(files) == 164  # the README's count
    images, skipped = list_images(folder)
    assert images == files and skipped == []
    for p in files:
        _assert_rgb(load_image(p), (320, 243))


def test_real_cropped_yale_b_scan(shared_data):
    folder = _need(shared_data, "cropped_yale_b")
    scan = scan_identity_folders(folder)
    pgm = sorted(folder.rglob("*.pgm"))
    assert len(scan.identities) == 38
    assert len(scan.items) == len(pgm) == 2414  # no image lost
    assert sorted(p for _, p in scan.items) == pgm
    info = [p for p in scan.skipped if p.suffix == ".info"]
    assert len(info) == 38 and len(scan.skipped) == 40  # + 2 excluded_listing/*.txt
    assert all(p.suffix in (".info", ".txt") for p in scan.skipped)
    for name in scan.identities:  # one image per person keeps this quick
        _assert_rgb(load_image(scan.by_identity[name][0]), (168, 192))


def test_real_orl_and_omniglot_layouts(shared_data):
    orl = scan_identity_folders(_need(shared_data, "orl_faces"))
    assert len(orl.identities) == 40 and len(orl.items) == 400
    assert all(p.suffix == ".pgm" for _, p in orl.items)
    omni = scan_identity_folders(_need(shared_data, "omniglot") / "images_background", depth=1)
    assert len(omni.identities) == 30 and len(omni.items) == 19280
