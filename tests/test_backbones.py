"""Convolution-family backbones registered through entry points, and the 1x1-convolution neck."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from verikit import testing
from verikit.errors import ModelError, PluginError
from verikit.models.embedder import Embedder
from verikit.models.heads import EmbeddingHead
from verikit.registry import backbones
from verikit.structures import InputSpec

# The smallest member of each family (random weights, never downloaded) at tiny inputs.
FAMILY_SPECS = {
    "mobilenet": ("mobilenet:mobilenetv3_small_050", {}, 32),
    "inception": ("inception", {}, 48),   # below 75 px: upsampled to the stem's minimum
    "xception": ("xception:xception41", {}, 32),
    "dilated_resnet": ("dilated_resnet:resnet18", {"output_stride": 8}, 32),
}


def test_families_are_registered_through_entry_points():
    infos = {i.name: i for i in backbones.infos()}
    for family in FAMILY_SPECS:
        assert infos[family].distribution == "verikit", f"{family} must come from the entry-point group"
        assert infos[family].target.startswith("verikit.models.backbones:")


@pytest.mark.parametrize("family", sorted(FAMILY_SPECS))
def test_family_backbone_contract(family):
    spec, options, size = FAMILY_SPECS[family]
    testing.check_backbone(functools.partial(backbones.create, spec, pretrained=False, **options), size=size)


@pytest.mark.parametrize("stride", [8, 16])
def test_dilated_resnet_keeps_resolution(stride):
    net = backbones.create("dilated_resnet:resnet18", output_stride=stride).eval()
    plain = backbones.create("timm:resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert net(x).shape[-2:] == (64 // stride, 64 // stride)
        assert plain(x).shape[-2:] == (2, 2)
    # atrous convolutions change the receptive field, not the weights
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in plain.parameters())


def test_family_errors_are_clear():
    with pytest.raises(ModelError, match="output_stride must be one of"):
        backbones.create("dilated_resnet:resnet18", output_stride=32)
    with pytest.raises(ModelError, match="not a Xception.*xception41"):
        backbones.create("xception:resnet18")
    with pytest.raises(PluginError, match="does not accept these options"):
        backbones.create("mobilenet:mobilenetv3_small_050", outputstride=8)


def test_mobilenet_num_features_matches_its_feature_map():
    # MobileNetV3's post-pooling 1x1 conv runs on the map when pooling is off: 1024 channels, not 576
    net = backbones.create("timm:mobilenetv3_small_100").eval()
    with torch.inference_mode():
        assert net(torch.randn(1, 3, 32, 32)).shape[1] == net.num_features == 1024


@pytest.mark.parametrize("pooling", ["avg", "gem", "max"])
def test_conv1x1_neck_projects_the_map_before_pooling(pooling):
    head = EmbeddingHead(6, embedding_size=4, pooling=pooling, neck="conv1x1").eval()
    fmap = torch.randn(3, 6, 5, 5)
    conv, bn, _ = head.proj
    with torch.no_grad():
        projected = torch.relu(bn(torch.einsum("bchw,ec->behw", fmap, conv.weight[:, :, 0, 0])))
        pooled = {"avg": projected.mean(dim=(-2, -1)), "max": projected.amax(dim=(-2, -1)),
                  "gem": projected.clamp(min=1e-6).pow(3).mean(dim=(-2, -1)).pow(1 / 3)}[pooling]
        want = torch.nn.functional.normalize(head.bn(pooled), dim=1)
        assert torch.allclose(head(fmap), want, atol=1e-5)
        assert head(fmap.mean(dim=(-2, -1))).shape == (3, 4)  # already-pooled backbones work too
    with pytest.raises(ValueError, match="neck must be one of"):
        EmbeddingHead(6, neck="mlp")


def test_conv1x1_neck_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = Embedder.build("dilated_resnet:resnet18", embedding_size=8, pooling="gem", neck="conv1x1",
                           backbone_options={"output_stride": 16}, input_spec=InputSpec(size=(32, 32))).eval()
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["neck"] == "conv1x1" and config["backbone_options"] == {"output_stride": 16}
    again = Embedder.load(tmp_path / "m")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(model(x), again(x), atol=1e-6)


def test_linear_neck_config_is_backward_compatible(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert "neck" not in config  # linear models write the same config.json as before the option
    assert Embedder.load(tiny_model_dir).config.neck == "linear"
