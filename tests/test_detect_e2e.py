"""End to end on real photos with a real detector, as a user runs it (the CLI in a subprocess):
enroll Yale faces with --detector DET (the installed default detector, found by a registry
query), then verify and search through the recorded detector, and the command-line policies (no
face, several faces, different pipeline settings)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.test_cli import one_line_error, ok, run

PEOPLE = ["subject01", "subject02", "subject03"]


@pytest.fixture(scope="module")
def det():
    """The detector a user gets by default: one that needs no downloads (a registry query)."""
    from verikit.errors import PluginError
    from verikit.registry import detectors

    try:
        return detectors.preferred()
    except PluginError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def yale_gallery(det, shared_data, tmp_path_factory, tiny_model_dir):
    yale = shared_data / "yalefaces"
    if not (yale / "subject01.normal").is_file():
        pytest.skip(f"Yale faces not found under {yale}")
    root = tmp_path_factory.mktemp("yale")
    for person in PEOPLE:
        (root / "people" / person).mkdir(parents=True)
        for cond in ("normal", "happy", "sad"):
            (root / "people" / person / cond).symlink_to(yale / f"{person}.{cond}")
    gallery = root / "gallery"
    r = ok("enroll", "--from-folder", root / "people", "-m", tiny_model_dir, "-g", gallery, "--detector", det,
           "--save-crops", root / "crops", "-f", "json")
    return root, gallery, yale, json.loads(r.stdout)


def test_enroll_with_detector_records_it_and_embeds_crops(yale_gallery):
    root, gallery, _, report = yale_gallery
    assert report["enrolled"] == {p: 3 for p in PEOPLE} and report["failures"] == []
    crops = sorted((root / "crops").iterdir())
    assert len(crops) == 9
    with Image.open(crops[0]) as c:
        assert 100 < c.size[0] < 320  # a face crop, not the 320x243 photo
    assert report["gallery"]["templates"] == 9


def test_verify_and_search_use_the_recorded_detector(yale_gallery, det, tmp_path):
    root, gallery, yale, _ = yale_gallery
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    v = json.loads(ok("verify", yale / "subject02.glasses", "--claim", "subject02", "-g", gallery, "-t", "0.0",
                      "--save-crops", tmp_path / "probe", "-f", "json").stdout)
    assert v["match"] and -1.0 <= v["score"] <= 1.0
    assert [p.name for p in (tmp_path / "probe").iterdir()] == ["subject02_glasses_face0.png"]
    r = run("search", yale / "subject03.wink", blank, "-g", gallery, "-k", "3", "-f", "json")
    assert r.returncode == 4 and f"no face found in '{blank}'" in r.stderr
    results = json.loads(r.stdout)
    assert len(results) == 1 and {h["identity"] for h in results[0]["hits"]} == set(PEOPLE)
    one_line_error(run("search", yale / "subject03.wink", "-g", gallery, "--detector", det, "--crop-margin", "0.5"),
                   f"was enrolled with detector {det}, crop margin 0.2", f"not detector {det}, crop margin 0.5")


def test_detect_command_writes_boxes_and_annotated_images(yale_gallery, tmp_path):
    _, _, yale, _ = yale_gallery
    r = ok("detect", yale / "subject01.normal", "--out", tmp_path / "ann")  # the default detector
    (row,) = json.loads(r.stdout)
    assert row["image_size"] == [320, 243] and len(row["detections"]) >= 1
    x1, y1, x2, y2 = row["detections"][0]["box"]
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 243
    with Image.open(row["annotated"]) as im:
        assert im.size == (320, 243)
