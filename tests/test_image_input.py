"""verikit.image_input: every image form a Python user holds gives the template its file gives.

Real pictures from ../shared/data (an Omniglot binary PNG, ORL PGM faces, a dlib photo), and the
variants the data lacks made from them in tmp_path: a palette GIF (with and without a transparent
index), a 16-bit PNG, an RGBA PNG, an LA PNG, a CMYK JPEG, a float TIFF, a 12-bit PGM.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from verikit.errors import ImageError
from verikit.image_input import check_sequence, input_name, to_image
from verikit.io import load_image
from verikit.models.inference import embed_files, embed_images


def _need(shared_data: Path, rel: str) -> Path:
    path = shared_data / rel
    if not path.exists():
        pytest.skip(f"real data {rel} not found under {shared_data}; set VERIKIT_DATA")
    return path


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def real_files(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """name -> file: real images, and variants of real images in the modes the data lacks."""
    out = tmp_path_factory.mktemp("forms")
    face = _need(shared_data, "orl_faces/s1/1.pgm")
    photo = _need(shared_data, "dlib_faces/2008_002470.jpg")
    omniglot = sorted(_need(shared_data, "omniglot/images_background/Latin/character01").glob("*.png"))[0]
    grey = np.asarray(Image.open(face))
    with Image.open(photo) as img:
        colour = img.convert("RGB").resize((160, 120))
    files = {"binary png": omniglot, "pgm": face}
    colour.quantize(64).save(out / "palette.gif")
    files["palette gif"] = out / "palette.gif"
    pal = colour.quantize(64)
    pal.save(out / "transparent.gif", transparency=0)
    files["transparent palette gif"] = out / "transparent.gif"
    deep = grey.astype(np.uint16) * 257 + np.random.default_rng(0).integers(0, 200, grey.shape).astype(np.uint16)
    Image.fromarray(deep).save(out / "deep16.png")
    files["16-bit png"] = out / "deep16.png"
    alpha = np.tile(np.linspace(0, 255, colour.width).astype(np.uint8), (colour.height, 1))
    Image.fromarray(np.dstack([np.asarray(colour), alpha])).save(out / "rgba.png")
    files["rgba png"] = out / "rgba.png"
    Image.fromarray(np.dstack([grey, np.full_like(grey, 200)])).save(out / "la.png")
    files["la png"] = out / "la.png"
    colour.convert("CMYK").save(out / "cmyk.jpg", quality=95)
    files["cmyk jpeg"] = out / "cmyk.jpg"
    Image.fromarray(grey.astype(np.float32) / 255.0).save(out / "float.tif")
    files["float tiff"] = out / "float.tif"
    twelve = np.rint(grey.astype(np.float64) * 4095 / 255).astype(">u2")
    (out / "deep12.pgm").write_bytes(b"P5\n92 112\n4095\n" + twelve.tobytes())
    files["12-bit pgm"] = out / "deep12.pgm"
    colour.save(out / "photo.jpg", quality=95)
    files["rgb jpeg"] = out / "photo.jpg"
    return files


def _modes(files: dict[str, Path]) -> dict[str, str]:
    return {name: Image.open(p).mode for name, p in files.items()}


def test_the_variants_really_have_the_modes_under_test(real_files):
    modes = _modes(real_files)
    assert modes["binary png"] == "1" and modes["palette gif"] == "P" and modes["16-bit png"] == "I;16"
    assert modes["rgba png"] == "RGBA" and modes["la png"] == "LA" and modes["cmyk jpeg"] == "CMYK"
    assert modes["float tiff"] == "F" and modes["12-bit pgm"] == "I" and modes["pgm"] == "L"
    assert "transparency" in Image.open(real_files["transparent palette gif"]).info


def _forms(path: Path) -> dict[str, object]:
    """The ways a Python user may hold the picture in ``path``."""
    lazy = Image.open(path)  # not loaded yet: to_image loads it
    with Image.open(path) as img:
        img.load()
        loaded = img.copy()
    forms: dict[str, object] = {"str": str(path), "Path": path, "bytes": path.read_bytes(),
                                "bytearray": bytearray(path.read_bytes()), "PIL lazy": lazy, "PIL loaded": loaded}
    if loaded.mode in ("1", "L", "RGB", "RGBA", "I;16", "F"):  # modes whose pixels are the picture itself
        a = np.array(loaded)
        forms["numpy"] = a
        t = torch.from_numpy(a)
        forms["tensor"] = t[None] if a.ndim == 2 else t.permute(2, 0, 1)
        if a.dtype == np.uint8:
            forms["numpy float"] = a.astype(np.float32) / 255.0
            forms["tensor float"] = forms["tensor"].float() / 255.0
            forms["numpy HxWx1" if a.ndim == 2 else "numpy float64"] = \
                a[..., None] if a.ndim == 2 else a.astype(np.float64) / 255.0
    return forms


@pytest.mark.parametrize("name", ["binary png", "pgm", "palette gif", "transparent palette gif", "16-bit png",
                                  "rgba png", "la png", "cmyk jpeg", "float tiff", "12-bit pgm", "rgb jpeg"])
def test_every_form_gives_the_files_pixels_and_template(real_files, tiny_model, name):
    path = real_files[name]
    reference = np.asarray(load_image(path)).astype(int)
    forms = _forms(path)
    for form, value in forms.items():
        pixels = np.asarray(to_image(value)).astype(int)
        assert pixels.shape == reference.shape, (name, form)
        assert np.abs(pixels - reference).max() <= 1, (name, form)  # at most a rounding step apart
    names = list(forms)
    templates = embed_images(tiny_model, [forms[n] for n in names])
    file_template = embed_images(tiny_model, [path])[0]
    for n, t in zip(names, templates):
        assert _cos(t, file_template) >= 0.9999, (name, n)


def test_the_template_check_can_fail(real_files, tiny_model, shared_data):
    """The 0.9999 bound separates pictures: another face, or the face at half brightness, is far below."""
    face = real_files["pgm"]
    other = _need(shared_data, "orl_faces/s2/1.pgm")
    dim = np.asarray(Image.open(face)) // 2
    e = embed_images(tiny_model, [face, other, dim])
    assert _cos(e[0], e[1]) < 0.999 and _cos(e[0], e[2]) < 0.999


def test_binary_png_fed_raw_to_the_transform_was_garbage(real_files, tiny_model):
    """The regression of issue 15: mode "1" went straight into the tensor transform as 0/1 values."""
    from verikit.models.preprocess import to_tensor_transform

    path = real_files["binary png"]
    raw = to_tensor_transform(tiny_model.input_spec)(Image.open(path))
    with torch.inference_mode():
        before = tiny_model(raw[None]).numpy()[0]
    after = embed_images(tiny_model, [Image.open(path)])[0]
    assert _cos(after, embed_images(tiny_model, [path])[0]) >= 0.9999
    assert _cos(before, after) < 0.999


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, says", [
    (np.full((8, 8), 2.0), "outside [0, 1]"),
    (np.linspace(0, 255, 64).reshape(8, 8), "0..255 values? use uint8"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (torch.randn(3, 8, 8), "normalised with a mean and std"),
    (torch.zeros(2, 8, 8), "2 channels"),
    (torch.zeros(8, 8, 3), "channels last?"),
    (np.zeros((3, 8, 8), np.uint8), "channels first?"),
    (np.zeros((8, 8, 2), np.uint8), "2 channels"),
    (np.zeros((8, 8), np.int64), "dtype int64"),
    (np.zeros((8, 8), np.int8), "dtype int8"),
    (np.zeros((2, 8, 8, 3), np.uint8), "4-D array is not one image"),
    (torch.zeros(1, 3, 8, 8), "4-D tensor is not one image"),
    (np.zeros((0, 8), np.uint8), "no pixels"),
    ([[0, 1], [1, 0]], "builtins.list is not an image form"),
    (None, "is not an image form"),
    (12, "is not an image form"),
])
def test_ambiguous_forms_are_refused_in_one_line(value, says):
    with pytest.raises(ImageError) as info:
        to_image(value)
    msg = str(info.value)
    assert says in msg and "\n" not in msg
    assert msg.startswith(f"cannot use image {input_name(value)}:")  # says what was given
    assert "accepted: a path, encoded image bytes, a PIL image, a numpy array" in msg  # and what is accepted


def test_float_noise_around_the_unit_range_is_a_rounding_matter_not_an_error():
    a = np.array([[-1e-4, 0.5], [1.0 + 1e-4, 1.0]])
    assert np.asarray(to_image(a))[..., 0].tolist() == [[0, 128], [255, 255]]


def test_in_memory_bomb_guard_and_bad_bytes():
    with pytest.raises(ImageError, match="exceeds the limit of 100"):
        to_image(np.zeros((20, 20), np.uint8), max_pixels=100)
    with pytest.raises(ImageError, match=r"cannot read image '<7 bytes>': not an image"):
        to_image(b"garbage")
    with pytest.raises(ImageError, match="no data"):
        to_image(b"")


def test_a_truncated_file_opened_lazily_is_an_image_error(tmp_path):
    p = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(p)
    p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ImageError, match="PIL image RGB 64x64"):
        to_image(Image.open(p))


def test_a_single_image_where_a_sequence_is_expected_is_refused(tiny_model, orl):
    face = orl / "s1" / "1.pgm"
    for single in (str(face), face, face.read_bytes(), Image.open(face), np.zeros((8, 8, 3), np.uint8),
                   torch.zeros(3, 8, 8)):
        with pytest.raises(ImageError, match="sequence of images"):
            embed_images(tiny_model, single)
    with pytest.raises(ImageError, match="sequence of images"):
        embed_files(tiny_model, str(face))
    batch = np.stack([np.asarray(load_image(face))] * 2)  # N x H x W x C: a batch, accepted
    assert len(check_sequence(batch)) == 2 and len(check_sequence(torch.zeros(2, 3, 8, 8))) == 2
    e = embed_images(tiny_model, batch)
    assert _cos(e[0], embed_images(tiny_model, [face])[0]) >= 0.9999


def test_embed_images_names_the_bad_item(tiny_model, orl):
    with pytest.raises(ImageError, match=r"<tensor float32 2x8x8>: 2 channels"):
        embed_images(tiny_model, [orl / "s1" / "1.pgm", torch.zeros(2, 8, 8)])


def test_exif_orientation_applies_to_the_open_image_too(tmp_path):
    img = Image.fromarray(np.tile(np.linspace(0, 255, 60).astype(np.uint8), (20, 1)))
    exif = img.getexif()
    exif[0x0112] = 6
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif)
    assert to_image(Image.open(p)).size == load_image(p).size == (20, 60)
    assert np.array_equal(np.asarray(to_image(Image.open(p))), np.asarray(load_image(p)))


# -- the operations take in-memory images ----------------------------------------------------------


def test_enroll_verify_search_with_pictures_in_memory(tiny_model, orl, tmp_path):
    import verikit

    s1, s2 = sorted((orl / "s1").glob("*.pgm")), sorted((orl / "s2").glob("*.pgm"))
    as_arrays = [np.asarray(Image.open(p)) for p in s2[:3]]
    with verikit.open_gallery(tiny_model, tmp_path / "g", create=True) as g:
        report = verikit.enroll(tiny_model, g, {"s1": [Image.open(p) for p in s1[:3]], "s2": as_arrays,
                                                "bad": [torch.zeros(2, 4, 4)]})
        assert report.enrolled == {"s1": 3, "s2": 3} and report.skipped_identities == ["bad"]
        assert [r["path"] for r in report.to_dict()["failures"]] == ["<tensor float32 2x4x4>"]
        assert g.identity("s1").sources == ("<PIL image L 92x112>",) * 3

        by_path = verikit.verify(tiny_model, g, s1[5], claim="s1", threshold=0.5)
        for probe in (s1[5].read_bytes(), Image.open(s1[5]), np.asarray(Image.open(s1[5])),
                      torch.from_numpy(np.asarray(Image.open(s1[5])).copy())[None]):
            d = verikit.verify(tiny_model, g, probe, claim="s1", threshold=0.5)
            assert d.score == pytest.approx(by_path.score, abs=1e-5)
            assert d.probe == input_name(probe)
        results, failures = verikit.search(tiny_model, g, [s2[7], Image.open(s2[7]), b"not an image"], top_k=2)
        assert results[0].hits[0].identity == results[1].hits[0].identity
        assert results[0].hits[0].score == pytest.approx(results[1].hits[0].score, abs=1e-5)
        assert results[1].probe == "<PIL image L 92x112>" and len(failures) == 1
        with pytest.raises(ImageError, match="sequence of images"):
            verikit.search(tiny_model, g, s2[7])


class CentreBox:
    """A detector that checks what it is given (RGB PIL images) and finds the middle half."""

    seen: list[str] = []

    def __init__(self, arg=None):
        pass

    def detect(self, images):
        from verikit.structures import Detections

        out = []
        for im in images:
            CentreBox.seen.append(im.mode)
            w, h = im.size
            out.append(Detections(np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32), [1.0], image_size=(w, h)))
        return out


def test_the_pipeline_entry_points_take_in_memory_images(orl):
    from verikit.pipeline.detection import FaceCropper
    from verikit.pipeline.settings import PipelineSettings
    from verikit.registry import detectors

    face = orl / "s1" / "1.pgm"
    with detectors.temporary("centrebox", CentreBox):
        cropper = FaceCropper(PipelineSettings("centrebox", crop_margin=0.0))
        from_file = cropper.crops_of_file(face)[0]
        for form in (Image.open(face), np.asarray(Image.open(face)), face.read_bytes()):
            crop = cropper.crops_of_file(form)[0]
            assert np.array_equal(np.asarray(crop.image), np.asarray(from_file.image))
            assert crop.label == input_name(form)
        [crops] = cropper.crops_of_images([np.asarray(Image.open(face))])
        assert np.array_equal(np.asarray(crops[0].image), np.asarray(from_file.image))
        (crops, failures), = cropper.crops_of_files([Image.open(face), torch.zeros(2, 3, 3)])
        assert len(crops) == 1 and "2 channels" in failures[0][1]
    assert set(CentreBox.seen) == {"RGB"}  # the detector plugin only ever sees RGB


# -- the Omniglot regression on a trained tiny model -------------------------------------------------


@pytest.mark.slow
def test_omniglot_one_shot_same_answer_from_open_png_and_path(shared_data, tmp_path):
    """Issue 15: on a handwriting model, `Image.open(png)` (mode "1") gave garbage embeddings.
    Train a tiny model on two background alphabets, then score 20-way one-shot runs of other
    alphabets: the open images and the file paths must give the same templates and answers."""
    from verikit.evaluate.oneshot import make_runs, read_runs, score_runs
    from verikit.models.preprocess import to_tensor_transform
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    background = _need(shared_data, "omniglot/images_background")
    data = tmp_path / "train"
    data.mkdir()
    for alphabet in ("Latin", "Greek"):
        (data / alphabet).symlink_to(background / alphabet, target_is_directory=True)
    cfg = TrainConfig(backbone="timm:test_resnet", image_size=(28, 28), channels=1, epochs=2, batch_size=64,
                      m_per_class=2, embedding_size=32, val_fraction=0, device="cpu", augment="none", lr=3e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is faster than two on a shared machine
    try:
        model = train(data, cfg).model.eval()
        make_runs(background, ["Armenian", "Tifinagh", "Gujarati"], 6, tmp_path / "runs", way=20, seed=0)
        runs = read_runs(tmp_path / "runs")
        files = sorted({p for r in runs for p in (*r.examples, *r.queries)})
        assert Image.open(files[0]).mode == "1"
        by_path = dict(zip(files, embed_images(model, files)))
        by_open = dict(zip(files, embed_images(model, [Image.open(p) for p in files])))
        transform = to_tensor_transform(model.input_spec)
        with torch.inference_mode():  # what issue 15 saw: mode "1" straight into the transform
            raw = dict(zip(files, model(torch.stack([transform(Image.open(p)) for p in files])).numpy()))
    finally:
        torch.set_num_threads(threads)
    assert min(_cos(by_path[p], by_open[p]) for p in files) >= 0.9999
    results = {name: score_runs(lambda paths, t=table: np.stack([t[p] for p in paths]), runs, n_boot=10)
               for name, table in (("path", by_path), ("open", by_open), ("raw", raw))}
    assert results["open"].accuracy_per_run == results["path"].accuracy_per_run  # the same answer, run by run
    assert results["path"].mean_accuracy > results["raw"].mean_accuracy  # and the raw feed was worse
    assert np.mean([_cos(by_path[p], raw[p]) for p in files]) < 0.99


def test_the_docs_images_example_runs(capsys, monkeypatch):
    import re

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "docs" / "python-api.md").read_text()
    example = re.search(r"## Images\n.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(repo)
    exec(compile(example, "docs/python-api.md#images", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[1. 1. 1. 1.]"
    assert out[1].startswith("cannot use image <array float64 112x92>: float values span") and "use uint8" in out[1]
