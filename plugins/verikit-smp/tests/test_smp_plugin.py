"""verikit-smp: contract with random weights (nothing downloaded), options, discovery through the
entry point, and `verikit segment train` -> `weights=` round trip on a tiny synthetic mask set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from verikit.cli.main import app
from verikit.errors import PluginError
from verikit.registry import segmenters
from verikit.segment.weights import save_weights, write_sidecar
from verikit.testing import check_segmenter, synthetic_images, synthetic_mask_dataset
from verikit.structures import Detections
from verikit_smp import ARCHITECTURES, create
from verikit_smp.model import build_network

SMALL = "tu-mobilenetv3_small_050"


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_contract_with_random_weights(arch):
    torch.manual_seed(0)
    check_segmenter(create(arch, encoder=SMALL, input_size=64))


def test_registered_through_the_entry_point():
    info = next(i for i in segmenters.infos() if i.name == "smp")
    assert info.distribution == "verikit-smp" and segmenters.status("smp") == "ok"
    assert callable(segmenters.get("smp").train)


def test_default_encoder_is_timm_resnet18_built_offline():
    net = build_network("unet", "tu-resnet18")
    assert type(net).__name__ == "Unet" and net.encoder.__class__.__name__ == "TimmUniversalEncoder"


def test_only_one_channel_models_are_accepted():
    import segmentation_models_pytorch as smp

    from verikit_smp.model import require_one_channel

    require_one_channel(build_network("fpn", SMALL), "x")
    three = smp.create_model("fpn", encoder_name=SMALL, encoder_weights=None, classes=3)
    with pytest.raises(PluginError, match="hub model 'a/b' predicts 3 classes"):
        require_one_channel(three, "hub model 'a/b'")


def test_bad_options_are_plugin_errors(tmp_path):
    with pytest.raises(PluginError, match="did you mean unet"):
        create("unett")
    with pytest.raises(PluginError, match="multiple of 32"):
        create(input_size=100)
    with pytest.raises(PluginError, match="threshold must be in"):
        create(encoder=SMALL, threshold=2)
    with pytest.raises(PluginError, match="smp cannot build unet with encoder 'tu-nonexistent_net'"):
        create(encoder="tu-nonexistent_net")
    with pytest.raises(PluginError, match="does not exist"):
        create(encoder=SMALL, weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(PluginError, match="accepts options encoder, encoder_weights, not depth"):
        create.train("unet", options={"depth": 3}, pairs=[], out=tmp_path)


def test_weights_file_round_trip_with_recorded_encoder(tmp_path):
    torch.manual_seed(3)
    net = build_network("fpn", SMALL)
    save_weights(net.state_dict(), tmp_path / "segmenter.safetensors")
    write_sidecar(tmp_path, "smp:fpn", {"encoder": SMALL, "input_size": 64}, {})
    loaded = create("fpn", weights=str(tmp_path / "segmenter.safetensors"))  # encoder and size from the sidecar
    assert loaded.input_size == 64
    from verikit.segment.base import TorchMaskSegmenter

    images = synthetic_images()
    dets = [Detections([[0, 0, *im.size]], [1], image_size=im.size) for im in images]
    same = TorchMaskSegmenter(net, input_size=64).segment(images, dets)
    assert all(np.allclose(a.masks, b.masks, atol=1e-6) for a, b in zip(loaded.segment(images, dets), same))
    with pytest.raises(PluginError, match="were trained for smp:fpn, not smp:unet"):
        create("unet", weights=str(tmp_path / "segmenter.safetensors"))
    with pytest.raises(PluginError, match="do not fit this network"):
        create("fpn", weights=str(tmp_path / "segmenter.safetensors"), encoder="tu-resnet18")


@pytest.mark.slow
def test_segment_train_then_load(tmp_path):
    images, masks = synthetic_mask_dataset(tmp_path / "data", n=6, size=64)
    out = tmp_path / "seg"
    r = CliRunner().invoke(app, ["segment", "train", "smp:unet", "--images", str(images), "--masks", str(masks),
                                 "--out", str(out), "--epochs", "2", "--size", "64", "-S", f"encoder={SMALL}",
                                 "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    weights = out / "segmenter.safetensors"
    assert summary["usage"] == f"--segmenter smp:unet -S weights={weights} -S encoder={SMALL} -S input_size=64"
    assert len(summary["val_iou_per_epoch"]) == 2 and summary["val_images"] == 1
    seg = segmenters.create("smp:unet", weights=str(out / "segmenter.safetensors"))
    check_segmenter(seg)
