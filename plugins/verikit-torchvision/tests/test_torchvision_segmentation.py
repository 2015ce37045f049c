"""verikit-torchvision segmenters (FCN, DeepLabV3, LR-ASPP): contract with random weights (nothing
downloaded), options, discovery, and `verikit segment train` -> `weights=` on a tiny mask set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from verikit.cli.main import app
from verikit.errors import PluginError
from verikit.registry import segmenters
from verikit.segment.base import TorchMaskSegmenter
from verikit.segment.weights import save_weights
from verikit.structures import Detections
from verikit.testing import check_segmenter, synthetic_images, synthetic_mask_dataset
from verikit_torchvision.segmentation import ARCHITECTURES, build_network, create

SMALL = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", SMALL)
def test_contract_with_random_weights(arch):
    torch.manual_seed(0)
    check_segmenter(create(arch, input_size=64))


def test_registered_through_the_entry_point():
    info = next(i for i in segmenters.infos() if i.name == "torchvision")
    assert info.distribution == "verikit-torchvision" and segmenters.status("torchvision") == "ok"
    assert callable(segmenters.get("torchvision").train)


def test_every_architecture_builds_offline_without_aux_head():
    for arch in ARCHITECTURES:
        net = build_network(arch, 2)
        assert getattr(net, "aux_classifier", None) is None, arch
    net = build_network("fcn_resnet50", 3).eval()
    with torch.inference_mode():
        assert net(torch.zeros(1, 3, 64, 64))["out"].shape == (1, 3, 64, 64)


def test_bad_options_are_plugin_errors(tmp_path):
    with pytest.raises(PluginError, match="did you mean fcn_resnet50"):
        create("fcn_resnet5")
    with pytest.raises(PluginError, match="num_classes must be >= 2"):
        create(SMALL[0], num_classes=1)
    with pytest.raises(PluginError, match=r"foreground must be in \[0, 1\]"):
        create(SMALL[0], foreground=2)
    with pytest.raises(PluginError, match="num_classes must be 21"):
        create(SMALL[0], weights="default", num_classes=2)
    with pytest.raises(PluginError, match="does not exist"):
        create(SMALL[0], weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(PluginError, match="takes no options"):
        create.train(SMALL[0], options={"encoder": "x"}, pairs=[], out=tmp_path)


def test_foreground_class_of_a_multi_class_model(tmp_path):
    torch.manual_seed(0)
    net = build_network(SMALL[0], 21)
    save_weights(net.state_dict(), tmp_path / "w.safetensors")
    torch.save({"model": net.state_dict()}, tmp_path / "w.pth")  # torchvision reference-script layout
    images = synthetic_images()[:1]
    dets = [Detections([[0, 0, *images[0].size]], [1], image_size=images[0].size)]
    seg = create(SMALL[0], weights=str(tmp_path / "w.pth"), num_classes=21, input_size=64)
    assert seg.foreground == 15  # VOC "person" is the default foreground of 21 classes
    expected = TorchMaskSegmenter(net, input_size=64, foreground=15).segment(images, dets)[0].masks
    assert np.allclose(seg.segment(images, dets)[0].masks, expected, atol=1e-6)
    other = create(SMALL[0], weights=str(tmp_path / "w.safetensors"), num_classes=21, foreground=0, input_size=64)
    assert not np.allclose(other.segment(images, dets)[0].masks, expected)


@pytest.mark.slow
def test_segment_train_then_load(tmp_path):
    images, masks = synthetic_mask_dataset(tmp_path / "data", n=6, size=64)
    out = tmp_path / "seg"
    spec = f"torchvision:{SMALL[0]}"
    r = CliRunner().invoke(app, ["segment", "train", spec, "--images", str(images), "--masks", str(masks),
                                 "--out", str(out), "--epochs", "2", "--size", "64", "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["usage"] == (f"--segmenter {spec} -S weights={out / 'segmenter.safetensors'} "
                                "-S num_classes=2 -S foreground=1 -S input_size=64")
    seg = segmenters.create(spec, weights=str(out / "segmenter.safetensors"))
    assert (seg.input_size, seg.foreground) == (64, 1)
    check_segmenter(seg)
    with pytest.raises(PluginError, match="were trained for"):
        segmenters.create(f"torchvision:{SMALL[1]}", weights=str(out / "segmenter.safetensors"))
