"""The segmentation step of the pipeline: masks blended into a flat background before cropping,
segmenter-only pipelines (the whole image is the one box), the gallery's record of the segmenter,
the contract check on what a segmenter returns, and the CLI/benchmark options that build it.

The segmenters here are small deterministic plugins registered for the test (the real smp and
torchvision segmenters have their own tests in their distributions), so every pixel is predictable.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from PIL import Image

from verikit.errors import DataError, GalleryError
from verikit.pipeline.detection import FaceCropper
from verikit.pipeline.segmentation import suppress_background
from verikit.pipeline.settings import FacePolicy, PipelineSettings
from verikit.registry import detectors, segmenters
from verikit.structures import Detections, Masks


class LeftHalf:
    """Keeps the left half of every box (mask 1), masks everything else (0)."""

    calls = 0

    def __init__(self, arg=None, **options):
        self.options = options

    def segment(self, images, detections):
        LeftHalf.calls += len(images)
        out = []
        for im, dets in zip(images, detections):
            w, h = im.size
            m = np.zeros((len(dets), h, w), np.float32)
            for i, (x1, y1, x2, y2) in enumerate(dets.boxes.astype(int)):
                m[i, y1:y2, x1:(x1 + x2) // 2] = 1.0
            out.append(Masks(m))
        return out


class WrongShape:
    def __init__(self, arg=None):
        pass

    def segment(self, images, detections):
        return [Masks(np.ones((len(d), 3, 3), np.float32)) for d in detections]


class CentreBox:
    """A detector with one box: the middle 40x40 of any image."""

    def __init__(self, arg=None):
        pass

    def detect(self, images):
        out = []
        for im in images:
            cx, cy = im.size[0] / 2, im.size[1] / 2
            out.append(Detections([[cx - 20, cy - 20, cx + 20, cy + 20]], [1.0], image_size=im.size))
        return out


@pytest.fixture()
def plugins():
    with segmenters.temporary("lefthalf", LeftHalf), segmenters.temporary("wrongshape", WrongShape), \
            detectors.temporary("centrebox", CentreBox):
        yield


def _white(tmp_path, name="white.png", size=(100, 60)):
    path = tmp_path / name
    Image.new("RGB", size, (255, 255, 255)).save(path)
    return path


def test_suppress_background_blends_with_the_soft_mask():
    img = Image.new("RGB", (2, 1), (200, 100, 0))
    out = np.asarray(suppress_background(img, np.array([[1.0, 0.25]]), "grey"))
    assert out[0, 0].tolist() == [200, 100, 0]
    assert out[0, 1].tolist() == [round(0.25 * 200 + 0.75 * 128), round(0.25 * 100 + 0.75 * 128), 96]
    assert np.asarray(suppress_background(img, np.zeros((1, 2)), "black")).max() == 0


def test_segmenter_only_masks_the_whole_image(tmp_path, plugins):
    path = _white(tmp_path)
    crops = FaceCropper(PipelineSettings(segmenter="lefthalf"), FacePolicy()).crops_of_file(path)
    assert len(crops) == 1 and crops[0].image.size == (100, 60)  # whole image: no detector, no crop
    px = np.asarray(crops[0].image)
    assert (px[:, :50] == 255).all() and (px[:, 50:] == 128).all()


def test_mask_is_applied_before_the_crop_with_margin(tmp_path, plugins):
    path = _white(tmp_path)
    settings = PipelineSettings("centrebox", crop_margin=0.25, segmenter="lefthalf", background="black")
    crop = FaceCropper(settings, FacePolicy("largest", tmp_path / "crops")).crops_of_file(path)[0]
    px = np.asarray(crop.image)
    # box x 30..70, y 10..50, grown by 10 px: crop x 20..80 -> the mask keeps box x 30..50 only
    assert crop.image.size == (60, 60)
    assert (px[10:50, 10:30] == 255).all()
    assert (px[:, :10] == 0).all() and (px[:, 30:] == 0).all() and (px[:10] == 0).all()
    assert [p.name for p in (tmp_path / "crops").iterdir()] == ["white_png_face0.png"]


def test_a_segmenter_breaking_the_contract_gets_one_clear_error(tmp_path, plugins):
    with pytest.raises(DataError, match=r"segmenter wrongshape returned masks of shape \(1, 3, 3\) .* 100x60"):
        FaceCropper(PipelineSettings(segmenter="wrongshape")).crops_of_file(_white(tmp_path))


def test_settings_validate_and_round_trip():
    s = PipelineSettings(None, segmenter="smp:unet", segmenter_options={"encoder": "tu-resnet18"}, background="white")
    assert PipelineSettings.from_meta(s.to_meta()) == s
    assert s.describe() == 'segmenter smp:unet (encoder="tu-resnet18"), white background'
    with pytest.raises(DataError, match="needs a detector, a segmenter or both"):
        PipelineSettings()
    with pytest.raises(DataError, match="background must be one of grey, black, white"):
        PipelineSettings("haar", background="pink")
    with pytest.raises(DataError, match="segmenter options given without a segmenter"):
        PipelineSettings("haar", segmenter_options={"a": 1})
    with pytest.raises(GalleryError, match="malformed"):
        PipelineSettings.from_meta('{"detector": null}')


def test_gallery_records_the_segmenter_and_probes_follow_it(tmp_path, tiny_model, plugins):
    from verikit.models.inference import embed_images
    from verikit.pipeline import operations as ops

    a = _white(tmp_path, "a.png")
    settings = PipelineSettings(segmenter="lefthalf")
    prepared = ops.prepare_enrollment(tiny_model, {"a": [a]}, pipeline=settings)
    with ops.open_gallery_for(tiny_model, tmp_path / "g", create=True, pipeline=settings) as g:
        ops.commit_enrollment(g, prepared)
        before = LeftHalf.calls
        d = ops.verify(tiny_model, g, a, "a", threshold=0.5)  # nothing given: the recorded segmenter runs
        assert LeftHalf.calls == before + 1 and d.score == pytest.approx(1.0, abs=1e-5)
        plain = embed_images(tiny_model, [Image.open(a).convert("RGB")])[0]
        assert float(plain @ g.templates("a")[0]) < 0.999  # the template really is of the masked image
        with pytest.raises(GalleryError, match="enrolled with segmenter lefthalf, grey background, not"):
            ops.search(tiny_model, g, [a], pipeline=PipelineSettings(segmenter="lefthalf", background="black"))
    with ops.open_gallery_for(tiny_model, tmp_path / "plain", create=True) as plain_g:
        with pytest.raises(GalleryError, match="drop --segmenter"):
            ops.search(tiny_model, plain_g, [a], pipeline=settings)


def test_requested_pipeline_merges_with_the_recorded_one():
    from verikit.cli.pipeline_options import Background, requested_pipeline

    recorded = PipelineSettings("haar", {"min_neighbors": 3}, 0.3, segmenter="smp:unet",
                                segmenter_options={"weights": "w.safetensors"})
    assert requested_pipeline(None, None, None, recorded=recorded) is None  # nothing asked: use the record
    assert requested_pipeline("haar", None, None, "smp:unet", None, None, recorded) == recorded
    changed = requested_pipeline(None, None, None, None, None, Background.black, recorded)
    assert changed.background == "black" and changed.segmenter_options == recorded.segmenter_options
    other = requested_pipeline(None, None, None, "torchvision:fcn_resnet50", None, None, recorded)
    assert other.segmenter_options == {} and other.options == {"min_neighbors": 3}
    fresh = requested_pipeline(None, None, None, "smp:fpn", ["encoder=tu-resnet18", "input_size=128"], None)
    assert fresh == PipelineSettings(None, segmenter="smp:fpn",
                                     segmenter_options={"encoder": "tu-resnet18", "input_size": 128})
    with pytest.raises(typer.BadParameter, match="need --segmenter"):
        requested_pipeline(None, None, None, None, None, Background.white)
    with pytest.raises(typer.BadParameter, match="need --detector"):
        requested_pipeline(None, None, 0.5, "smp:unet")


def test_benchmark_runs_files_through_the_pipeline_and_caches_per_pipeline(tmp_path, tiny_model, plugins):
    from verikit.evaluate.benchmark import embed_unique
    from verikit.pipeline.files import FileEmbedder

    files = [_white(tmp_path, f"{i}.png", (100 + 10 * i, 60)) for i in range(3)]
    whole, through = FileEmbedder(tiny_model), FileEmbedder(tiny_model, PipelineSettings(segmenter="lefthalf"))
    plain = embed_unique(whole, files, cache_dir=tmp_path / "cache")
    masked = embed_unique(through, files, cache_dir=tmp_path / "cache")
    assert plain.ok.all() and masked.ok.all() and masked.cached == 0  # another pipeline: nothing reused
    assert not np.allclose(plain.embeddings, masked.embeddings, atol=1e-3)
    again = embed_unique(through, files, cache_dir=tmp_path / "cache")
    assert again.cached == 3 and np.allclose(again.embeddings, masked.embeddings)
    assert whole.cache_key != through.cache_key


def test_cli_benchmark_and_enroll_take_the_pipeline_options(tmp_path, tiny_model_dir, plugins):
    """In-process CLI (the test plugins are registered in this process only)."""
    from typer.testing import CliRunner

    from verikit.cli.main import app

    data = tmp_path / "people"
    for person, colour in (("p1", (250, 10, 10)), ("p2", (10, 10, 250))):
        (data / person).mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (80 + 8 * k, 64), colour).save(data / person / f"{k}.png")
    runner = CliRunner()  # click 8.2+: r.stdout and r.stderr are kept apart
    r = runner.invoke(app, ["benchmark", "folder", str(data), "-m", str(tiny_model_dir), "--segmenter", "lefthalf",
                            "--bootstrap", "0", "-f", "json", "-q"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["pipeline"]["segmenter"] == "lefthalf" and result["verification"]["n_genuine"] == 2
    g = tmp_path / "g"
    r = runner.invoke(app, ["enroll", "--from-folder", str(data), "-m", str(tiny_model_dir), "-g", str(g),
                            "--segmenter", "lefthalf", "--background", "white", "-q", "-f", "json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["gallery", "info", "-g", str(g), "-f", "json"])
    assert json.loads(r.stdout)["pipeline"]["background"] == "white"
    # Calibrated through the segmenter with a grey background; the gallery masks to white: warned.
    r = runner.invoke(app, ["calibrate", str(data), "-m", str(tiny_model_dir), "--target-fmr", "0.5",
                            "--segmenter", "lefthalf", "-q", "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["data"]["pipeline"]["segmenter"] == "lefthalf"
    r = runner.invoke(app, ["verify", str(data / "p1" / "0.png"), "--claim", "p1", "-g", str(g), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert "calibrated on segmenter lefthalf, grey background, but this gallery's probes go through segmenter " \
           "lefthalf, white background" in " ".join(r.stderr.split())


def test_a_changed_weights_file_is_refused_for_a_gallery_made_with_it(tmp_path, tiny_model, plugins):
    """A segmenter retrained into the same path would silently mix two kinds of templates."""
    from verikit.pipeline import operations as ops

    weights = tmp_path / "segmenter.safetensors"
    weights.write_bytes(b"first weights")
    a = _white(tmp_path, "a.png")
    settings = PipelineSettings(segmenter="lefthalf", segmenter_options={"weights": str(weights)})
    with ops.open_gallery_for(tiny_model, tmp_path / "g", create=True, pipeline=settings) as g:
        ops.enroll(tiny_model, g, {"a": [a]}, pipeline=settings)
        assert ops.verify(tiny_model, g, a, "a", threshold=0.5).match
        weights.write_bytes(b"retrained weights")
        with pytest.raises(GalleryError, match=r"segmenter weights file '.*segmenter.safetensors' has changed"):
            ops.verify(tiny_model, g, a, "a", threshold=0.5)
        with pytest.raises(GalleryError, match="has changed"):
            ops.search(tiny_model, g, [a], pipeline=settings)  # asking for the same settings does not help
        weights.unlink()
        with pytest.raises(GalleryError, match="is missing since the gallery was enrolled"):
            ops.verify(tiny_model, g, a, "a", threshold=0.5)
