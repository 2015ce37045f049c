"""verikit-torchvision: contract (random weights, nothing downloaded), options, weights round trip,
discovery through the entry point, and `verikit detect train` on a tiny synthetic box dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from verikit.cli.main import app
from verikit.errors import PluginError
from verikit.registry import detectors
from verikit.testing import check_detector, synthetic_images
from verikit_torchvision import ARCHITECTURES, create
from verikit_torchvision.model import build_model, save_weights

SMALL = ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"]


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", SMALL)
def test_contract_with_random_weights(arch):
    # num_classes=2 and no threshold: a random two-class head scores ~0.5, so boxes do come out
    torch.manual_seed(0)
    detector = create(arch, num_classes=2, score_threshold=0.0)
    assert sum(len(d) for d in detector.detect(synthetic_images()[:1])) > 0
    check_detector(detector)


def test_registered_through_the_entry_point():
    info = next(i for i in detectors.infos() if i.name == "torchvision")
    assert info.distribution == "verikit-torchvision" and detectors.status("torchvision") == "ok"


def test_every_architecture_builds_offline():
    # weights=None, weights_backbone=None: every builder accepts them, nothing is downloaded
    for arch in ARCHITECTURES:
        assert isinstance(build_model(arch, 2), torch.nn.Module), arch


def test_bad_options_are_plugin_errors(tmp_path):
    with pytest.raises(PluginError, match="did you mean fasterrcnn_resnet50_fpn"):
        create("fasterrcnn_resnet50")
    with pytest.raises(PluginError, match="num_classes must be >= 2"):
        create(SMALL[0], num_classes=1)
    with pytest.raises(PluginError, match="label must be in"):
        create(SMALL[0], num_classes=2, label=2)
    with pytest.raises(PluginError, match="does not exist"):
        create(SMALL[0], weights=str(tmp_path / "missing.safetensors"))
    with pytest.raises(PluginError, match="num_classes must be 91"):
        create(SMALL[0], weights="default", num_classes=2)


def test_weights_load_from_safetensors_and_torch_files(tmp_path):
    torch.manual_seed(1)
    model = build_model(SMALL[0], 2)
    save_weights(model, tmp_path / "w.safetensors")
    torch.save({"model": model.state_dict()}, tmp_path / "w.pth")  # the reference scripts' layout
    image = synthetic_images()[0]
    a = create(SMALL[0], weights=str(tmp_path / "w.safetensors"), num_classes=2, score_threshold=0.0).detect([image])
    b = create(SMALL[0], weights=str(tmp_path / "w.pth"), num_classes=2, score_threshold=0.0).detect([image])
    assert len(a[0]) and np.allclose(a[0].boxes, b[0].boxes) and np.allclose(a[0].scores, b[0].scores)
    with pytest.raises(PluginError, match="check the architecture and num_classes"):
        create(SMALL[0], weights=str(tmp_path / "w.safetensors"), num_classes=3)


def _square_dataset(folder):
    rng = np.random.default_rng(0)
    rows = ["path,x1,y1,x2,y2"]
    for i in range(4):
        image = Image.fromarray(rng.integers(0, 60, (96, 96, 3), dtype=np.uint8), "RGB")
        x, y = 10 + 15 * i, 50 - 10 * i
        ImageDraw.Draw(image).rectangle((x, y, x + 29, y + 29), fill=(250, 250, 250))
        image.save(folder / f"sq{i}.png")
        rows.append(f"sq{i}.png,{x},{y},{x + 30},{y + 30}")
    (folder / "boxes.csv").write_text("\n".join(rows) + "\n")
    return folder / "boxes.csv"


@pytest.mark.slow
def test_detect_train_writes_a_loadable_detector(tmp_path):
    csv = _square_dataset(tmp_path)
    out = tmp_path / "det"
    spec = f"torchvision:{SMALL[0]}"
    result = CliRunner().invoke(app, ["detect", "train", "-a", str(csv), "-d", spec, "--out", str(out),
                                      "--epochs", "1", "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 4 and summary["boxes"] == 4 and len(summary["loss_per_epoch"]) == 1
    meta = json.loads((out / "detector.json").read_text())
    assert meta["arch"] == SMALL[0] and meta["num_classes"] == 2
    weights = str(out / "detector.safetensors")
    loaded = detectors.create(spec, weights=weights, num_classes=2, score_threshold=0.0)
    assert len(loaded.detect([Image.open(tmp_path / "sq0.png").convert("RGB")])[0]) > 0
    # num_classes comes from detector.json when not given; another architecture is refused
    assert detectors.create(spec, weights=weights).num_classes == 2
    with pytest.raises(PluginError, match="were trained for"):
        detectors.create(f"torchvision:{SMALL[1]}", weights=weights)
    # the benchmark command reads the trained detector through the same options
    bench = CliRunner().invoke(app, ["benchmark", "detection", "-a", str(csv), "-d", spec, "-O", f"weights={weights}",
                                     "-O", "num_classes=2", "--format", "json", "-q"])
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["images"] == 4


def test_detect_train_refuses_an_untrainable_detector(tmp_path):
    csv = _square_dataset(tmp_path)

    def factory(**_):
        raise AssertionError("not called")

    with detectors.temporary("untrainable", factory):
        result = CliRunner().invoke(app, ["detect", "train", "-a", str(csv), "-d", "untrainable",
                                          "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "cannot be trained" in str(result.exception)
