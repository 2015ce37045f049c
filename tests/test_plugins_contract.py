"""Every registered plugin passes verikit.testing's contract checks (parametrised over the registries).

Each is built from its factory's declared ``example`` (a small build; verikit.interfaces), or from
each of its ``examples`` when it declares several, and
one that says it cannot be built here (``unavailable()``: weights not fetched) is skipped with
its reason; its own tests check it on converted random weights.
"""

from __future__ import annotations

import functools
import json

import pytest

from verikit import testing
from verikit.registry import backbones, detectors, index_backends


def _ensemble_members(in_chans: int) -> dict:
    """The ``ensemble`` backbone's one required option: two tiny members' configs."""
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    spec = InputSpec(channels=in_chans, size=(32, 32))
    return {"members": [json.loads(Embedder.build("timm:test_resnet", embedding_size=8, input_spec=spec)
                                   .config.to_json_bytes()) for _ in range(2)]}


BACKBONE_OPTIONS = {"ensemble": _ensemble_members}  # core built-in name -> options for a given in_chans


@pytest.mark.parametrize("name", detectors.names())
def test_detector_contract(name):
    if detectors.status(name) != "ok":
        pytest.skip(f"{name}: {detectors.status(name)}")
    for spec, options in detectors.examples(name):  # each network a factory's argument picks
        testing.check_detector(detectors.create(spec, **options))


@pytest.mark.parametrize("name", backbones.names())
def test_backbone_contract(name):
    spec, options = backbones.example(name)

    def factory(in_chans: int):
        extra = BACKBONE_OPTIONS[name](in_chans) if name in BACKBONE_OPTIONS else {}
        return backbones.create(spec, in_chans=in_chans, **options, **extra)

    testing.check_backbone(factory)


@pytest.mark.parametrize("name", index_backends.names())
def test_index_backend_contract(name, tmp_path):
    spec, options = index_backends.example(name)
    if getattr(index_backends.get(name), "gallery_bound", False):
        # Built by a Gallery, which passes its folder and uid (verikit/index/derived.py).
        options = {"gallery": tmp_path, "uid": "contract", **options}
    testing.check_index_backend(functools.partial(index_backends.create, spec, **options))


def test_discovery_finds_plugins_of_every_kind():
    # The parametrisation above would silently test nothing if discovery broke.
    assert backbones.names() and index_backends.names() and detectors.names()


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
