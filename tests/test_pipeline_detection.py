"""Face crops for embedding: policies for zero / several faces, margin, eye alignment, saved crops,
and the gallery's record of its detector (used automatically; a different one refused)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from verikit.errors import DataError, GalleryError, ImageError
from verikit.pipeline.detection import FaceCropper, choose_faces, crop_face, expand_box
from verikit.pipeline.settings import FacePolicy, PipelineSettings
from verikit.registry import detectors
from verikit.structures import Detections


class BoxesByWidth:
    """A fake detector: images 100 px wide have no face, 200 px one, 300 px two (the second larger)."""

    calls = 0

    def __init__(self, arg=None):
        pass

    def detect(self, images):
        BoxesByWidth.calls += len(images)
        out = []
        for im in images:
            boxes = {100: [], 200: [[10, 10, 60, 60]], 300: [[10, 10, 50, 50], [100, 20, 200, 120]]}[im.size[0]]
            out.append(Detections(np.array(boxes, dtype=np.float32).reshape(-1, 4), [1.0] * len(boxes),
                                  image_size=im.size))
        return out


@pytest.fixture()
def fake_detector():
    with detectors.temporary("fakebox", BoxesByWidth):
        yield PipelineSettings("fakebox", crop_margin=0.0)


def _images(tmp_path):
    paths = {}
    for w in (100, 200, 300):
        paths[w] = tmp_path / f"w{w}.png"
        Image.new("RGB", (w, 150), (w % 255, 90, 30)).save(paths[w])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return paths, bad


def test_policies_for_zero_and_several_faces():
    two = Detections([[0, 0, 10, 10], [0, 0, 30, 20]], [0.9, 0.1])
    assert choose_faces(two, "largest", "f.jpg") == [1]  # by area, not by score
    assert choose_faces(two, "all", "f.jpg") == [0, 1]
    with pytest.raises(ImageError, match=r"^2 faces found in 'f.jpg' \(--multiple-faces error"):
        choose_faces(two, "error", "f.jpg")
    with pytest.raises(ImageError, match=r"^no face found in 'g.jpg'$"):
        choose_faces(Detections.empty(), "largest", "g.jpg")


def test_margin_expands_and_clips():
    assert expand_box([10, 20, 30, 60], 0.5, (100, 100)) == (0.0, 0.0, 40.0, 80.0)
    img = Image.new("RGB", (100, 100))
    crop, aligned = crop_face(img, [10, 20, 30, 60], None, 0.25)
    assert crop.size == (30, 60) and not aligned


def test_eye_alignment_levels_the_eyes():
    img = Image.new("RGB", (200, 200), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    left, right = (70.0, 80.0), (130.0, 110.0)  # tilted by atan(30/60) = 26.6 degrees
    for x, y in (left, right):
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(0, 0, 0))
    crop, aligned = crop_face(img, [40, 40, 160, 160], (left, right), 0.0)
    assert aligned and crop.size == (120, 120)
    dark = np.argwhere(np.asarray(crop.convert("L")) < 100)  # (row, col) of the eye pixels
    halves = [dark[dark[:, 1] < 60], dark[dark[:, 1] >= 60]]
    rows = [h[:, 0].mean() for h in halves]
    assert all(len(h) > 20 for h in halves) and abs(rows[0] - rows[1]) < 1.0
    # The eyes keep their distance (a rotation, not a shear): 60 * sqrt(1.25) = 67.1 px apart.
    assert halves[1][:, 1].mean() - halves[0][:, 1].mean() == pytest.approx(67.08, abs=1.5)
    unaligned = np.argwhere(np.asarray(crop_face(img, [40, 40, 160, 160], None, 0.0)[0].convert("L")) < 100)
    assert abs(unaligned[unaligned[:, 1] < 60][:, 0].mean() - unaligned[unaligned[:, 1] >= 60][:, 0].mean()) > 25


def test_cropper_skips_and_reports_in_batches_and_saves_crops(tmp_path, fake_detector):
    paths, bad = _images(tmp_path)
    cropper = FaceCropper(fake_detector, FacePolicy("all", tmp_path / "crops"))
    crops, failures = next(cropper.crops_of_files([paths[100], paths[200], paths[300], bad]))
    assert [(c.source.name, c.face, c.of) for c in crops] == [("w200.png", 0, 1), ("w300.png", 0, 2), ("w300.png", 1, 2)]
    assert [c.image.size for c in crops] == [(50, 50), (40, 40), (100, 100)]
    assert crops[2].label.endswith("w300.png#1") and crops[0].label == str(paths[200])
    assert [(p.name, r.split(":")[0]) for p, r in failures] == [("broken.png", f"cannot read image '{bad}'"),
                                                              ("w100.png", f"no face found in '{paths[100]}'")]
    saved = sorted(p.name for p in (tmp_path / "crops").iterdir())
    assert saved == ["w200_png_face0.png", "w300_png_face0.png", "w300_png_face1.png"]
    assert Image.open(tmp_path / "crops" / "w300_png_face1.png").size == (100, 100)
    with pytest.raises(ImageError, match="no face found in"):
        cropper.crops_of_file(paths[100])


def test_settings_round_trip_and_validation():
    s = PipelineSettings("haar:frontalface_alt", {"min_size": (40, 40)}, 0.3)
    assert PipelineSettings.from_meta(s.to_meta()) == s and s.options == {"min_size": [40, 40]}
    with pytest.raises(DataError, match="crop margin"):
        PipelineSettings("haar", crop_margin=-1)
    with pytest.raises(DataError, match="multiple-faces"):
        FacePolicy("biggest")


def test_gallery_records_its_detector_and_probes_follow_it(tmp_path, tiny_model, fake_detector):
    from verikit.pipeline import operations as ops

    paths, _ = _images(tmp_path)
    prepared = ops.prepare_enrollment(tiny_model, {"a": [paths[200]], "b": [paths[300]], "c": [paths[100]]},
                                      pipeline=fake_detector)
    assert {n: len(s) for n, (_, s) in prepared.templates.items()} == {"a": 1, "b": 1}  # largest face of w300
    assert prepared.report.skipped_identities == ["c"] and "no face found" in prepared.report.failures[0][1]
    with ops.open_gallery_for(tiny_model, tmp_path / "g", create=True, pipeline=fake_detector) as g:
        ops.commit_enrollment(g, prepared)
        before = BoxesByWidth.calls
        d = ops.verify(tiny_model, g, paths[200], "a", threshold=0.5)  # no detection given: the recorded one runs
        assert BoxesByWidth.calls == before + 1 and d.score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ImageError, match="no face found in"):
            ops.verify(tiny_model, g, paths[100], "a", threshold=0.5)
        with pytest.raises(GalleryError, match="was enrolled with detector fakebox"):
            ops.verify(tiny_model, g, paths[200], "a", threshold=0.5,
                       pipeline=PipelineSettings("fakebox", crop_margin=0.5))
        with pytest.raises(DataError, match="one face"):
            ops.verify(tiny_model, g, paths[300], "a", threshold=0.5, faces=FacePolicy("all"))
        results, failures = ops.search(tiny_model, g, [paths[300], paths[100]], top_k=1, faces=FacePolicy("all"))
        assert [r.probe.rsplit("/", 1)[-1] for r in results] == ["w300.png#0", "w300.png#1"]
        assert results[1].hits[0].identity == "b" and len(failures) == 1
        undetected = ops.prepare_enrollment(tiny_model, {"d": [paths[200]]})
        with pytest.raises(DataError, match="without the pipeline"):
            ops.commit_enrollment(g, undetected)
    with ops.open_gallery_for(tiny_model, tmp_path / "plain", create=True) as plain:
        with pytest.raises(GalleryError, match="enrolled without a detector"):
            ops.search(tiny_model, plain, [paths[200]], pipeline=fake_detector)
