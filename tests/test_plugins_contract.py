"""Every registered plugin passes verikit.testing's contract checks (parametrised over the registries)."""

from __future__ import annotations

import functools

import pytest

from verikit import testing
from verikit.registry import backbones, detectors, index_backends

# Specs that build something small: for names whose factory needs an argument, and for plugins whose
# default is heavy (the contract, not accuracy, is under test). Other names are used bare.
SPECS = {"timm": "timm:test_resnet", "faiss": "faiss:Flat", "torchvision": "torchvision:ssdlite320_mobilenet_v3_large",
         "mobilenet": "mobilenet:mobilenetv3_small_050"}


def _spec(name: str) -> str:
    return SPECS.get(name, name)


@pytest.mark.parametrize("name", detectors.names())
def test_detector_contract(name):
    testing.check_detector(detectors.create(_spec(name)))


@pytest.mark.parametrize("name", backbones.names())
def test_backbone_contract(name):
    testing.check_backbone(functools.partial(backbones.create, _spec(name)))


@pytest.mark.parametrize("name", index_backends.names())
def test_index_backend_contract(name):
    testing.check_index_backend(functools.partial(index_backends.create, _spec(name)))


def test_first_party_plugins_are_registered():
    # The parametrisation above would silently test nothing if discovery broke.
    assert "timm" in backbones.names() and "faiss" in index_backends.names() and "haar" in detectors.names()


def test_contract_checks_catch_a_broken_detector():
    from verikit.structures import Detections

    class OffByOne:
        def detect(self, images):
            return [Detections.empty(image_size=im.size) for im in images[1:]]  # drops an image

    with pytest.raises(AssertionError, match="length"):
        testing.check_detector(OffByOne())

    class WrongSize:
        def detect(self, images):
            return [Detections.empty(image_size=(1, 1)) for _ in images]

    with pytest.raises(AssertionError, match="image_size"):
        testing.check_detector(WrongSize())


def test_contract_checks_catch_a_broken_index():
    import numpy as np

    real = functools.partial(index_backends.create, "faiss:Flat")

    def shuffled(dim):
        idx = real(dim=dim)
        search = idx.search

        def wrong(q, k):
            s, i = search(q, k)
            return s, np.roll(i, 1, axis=0)
        idx.search = wrong
        return idx

    with pytest.raises(AssertionError, match="exact"):
        testing.check_index_backend(shuffled)
