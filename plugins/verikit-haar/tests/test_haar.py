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
