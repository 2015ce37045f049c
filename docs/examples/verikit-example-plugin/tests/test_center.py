"""The example plugin passes verikit's detector contract, and its own behaviour is right."""

import pytest
from PIL import Image

from verikit.plugin_api import PluginError
from verikit.testing import check_detector
from verikit_example_plugin import create


def test_contract():
    check_detector(create())


def test_central_box():
    (dets,) = create("0.5").detect([Image.new("RGB", (200, 100))])
    assert dets.boxes.tolist() == [[50.0, 25.0, 150.0, 75.0]]


def test_bad_fraction_is_a_plugin_error():
    with pytest.raises(PluginError, match="fraction"):
        create("2")
