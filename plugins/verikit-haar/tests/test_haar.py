"""verikit-haar: contract, cascades and options, eyes, and discovery through the entry point."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from verikit.errors import PluginError
from verikit.io import load_image
from verikit.registry import detectors
from verikit.testing import check_detector
from verikit_haar import CASCADES, create

DATA = Path(os.environ.get("VERIKIT_DATA") or Path(__file__).resolve().parents[3].parent / "shared" / "data")
BUNDLED_ORL = Path(__file__).resolve().parents[3] / "data" / "orl_faces"  # shipped with verikit for the demo


@pytest.mark.parametrize("cascade", sorted(CASCADES))
def test_contract_for_every_cascade(cascade):
    check_detector(create(cascade))


def test_registered_through_the_entry_point():
    assert detectors.infos() and any(i.name == "haar" and i.distribution == "verikit-haar" for i in detectors.infos())
    assert detectors.create("haar:profileface").cascade == "profileface"
    assert detectors.create("haar").cascade == "frontalface_default"


def test_bad_options_are_plugin_errors():
    with pytest.raises(PluginError, match="did you mean frontalface_alt"):
        create("frontalface_alt3")
    with pytest.raises(PluginError, match="scale_factor must be > 1"):
        create(scale_factor=1.0)
    with pytest.raises(PluginError, match=r"min_size must be \[width, height\]"):
        create(min_size=30)
    with pytest.raises(PluginError, match="border must be between 0 and 1"):
        create(border=-0.1)


@pytest.fixture(scope="module")
def yale_normal():
    path = DATA / "yalefaces" / "subject01.normal"
    if not path.is_file():
        pytest.skip(f"{path} not found; set VERIKIT_DATA")
    return load_image(path)


def test_finds_the_face_and_both_eyes_on_a_real_photo(yale_normal):
    (dets,) = create().detect([yale_normal])
    assert len(dets) == 1 and dets.landmark_names == ("left_eye", "right_eye")
    x1, y1, x2, y2 = dets.boxes[0]
    left, right = dets.landmark(0, "left_eye"), dets.landmark(0, "right_eye")
    assert left is not None and right is not None and left[0] < right[0]
    for x, y in (left, right):  # eyes inside the upper part of the face box
        assert x1 < x < x2 and y1 < y < (y1 + y2) / 2
    assert create(eyes=False).detect([yale_normal])[0].landmarks is None


def test_min_size_and_max_size_are_applied(yale_normal):
    assert len(create(min_size=[300, 300]).detect([yale_normal])[0]) == 0
    assert len(create(max_size=[60, 60]).detect([yale_normal])[0]) == 0
    boxes = create().detect([yale_normal])[0].boxes
    assert np.all(boxes[:, 2] - boxes[:, 0] >= 30)


def test_a_face_that_fills_the_frame_is_found_inside_a_replicated_border():
    import cv2

    from verikit_haar.detector import to_grey

    image = load_image(BUNDLED_ORL / "s1" / "2.pgm")  # 92x112, the face touches the edges
    assert len(create(border=0).detect([image])[0]) == 0  # the sliding window has no room
    (dets,) = create().detect([image])
    assert len(dets) == 1
    # OpenCV's own answer on the bordered image (20% of 112 px = 22 px each side), moved back.
    grey = to_grey(image)
    bordered = cv2.copyMakeBorder(grey, 22, 22, 22, 22, cv2.BORDER_REPLICATE)
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADES["frontalface_default"]))
    (x, y, w, h), = cascade.detectMultiScale(bordered, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
    want = np.clip([x - 22, y - 22, x - 22 + w, y - 22 + h], 0, [92, 112, 92, 112])
    np.testing.assert_allclose(dets.boxes[0], want)
    left, right = dets.landmark(0, "left_eye"), dets.landmark(0, "right_eye")
    assert left is not None and right is not None and left[0] < right[0]
    for ex, ey in (left, right):  # eyes in the image's own coordinates, in the upper half of the face
        assert 0 <= ex < 92 and want[1] < ey < (want[1] + want[3]) / 2


def test_the_border_search_runs_only_when_the_first_finds_nothing(yale_normal):
    plain, bordered = create(border=0).detect([yale_normal])[0], create(border=0.5).detect([yale_normal])[0]
    np.testing.assert_array_equal(plain.boxes, bordered.boxes)
    np.testing.assert_array_equal(plain.landmarks, bordered.landmarks)
