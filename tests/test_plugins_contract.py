"""Every registered plugin passes verikit.testing's contract checks (parametrised over the registries)."""

from __future__ import annotations

import functools
import json

import pytest

from verikit import testing
from verikit.registry import backbones, detectors, index_backends

# Specs that build something small: for names whose factory needs an argument, and for plugins whose
# default is heavy (the contract, not accuracy, is under test). Other names are used bare.
SPECS = {"timm": "timm:test_resnet", "faiss": "faiss:Flat", "torchvision": "torchvision:ssdlite320_mobilenet_v3_large",
         "mobilenet": "mobilenet:mobilenetv3_small_050"}


def _spec(name: str) -> str:
    return SPECS.get(name, name)


def _ensemble_members(in_chans: int) -> dict:
    """The ``ensemble`` backbone's one required option: two tiny members' configs."""
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    spec = InputSpec(channels=in_chans, size=(32, 32))
    return {"members": [json.loads(Embedder.build("timm:test_resnet", embedding_size=8, input_spec=spec)
                                   .config.to_json_bytes()) for _ in range(2)]}


BACKBONE_OPTIONS = {"ensemble": _ensemble_members}  # name -> options for a given in_chans


def _weights_not_fetched(name: str) -> bool:
    """Detectors that load downloaded weights check their contract in their own tests (on
    converted random weights); here they run only where the real weights have been fetched."""
    if name != "faceapi":
        return False
    from verikit_faceapi.weights import NETWORKS, default_dir
    return not (default_dir() / NETWORKS["landmarks"][2]).is_file()


@pytest.mark.parametrize("name", detectors.names())
def test_detector_contract(name):
    if _weights_not_fetched(name):
        pytest.skip(f"{name}: weights not fetched here (python -m verikit_faceapi fetch); its own tests check it")
    testing.check_detector(detectors.create(_spec(name)))


@pytest.mark.parametrize("name", backbones.names())
def test_backbone_contract(name):
    def factory(in_chans: int):
        options = BACKBONE_OPTIONS[name](in_chans) if name in BACKBONE_OPTIONS else {}
        return backbones.create(_spec(name), in_chans=in_chans, **options)

    testing.check_backbone(factory)


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
