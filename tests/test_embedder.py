"""Embedder: build from a backbone spec, save/load as config.json + model.safetensors, fingerprint,
local weights files, batched inference with bad files skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import make_pattern_image
from verikit.errors import ModelError, PluginError
from verikit.models.embedder import CONFIG_FILE, WEIGHTS_FILE, Embedder
from verikit.models.inference import embed_files, embed_images
from verikit.io import load_image
from verikit.structures import InputSpec

SPEC = InputSpec(size=(32, 32))


def test_embeddings_are_unit_vectors_of_the_configured_size(tiny_model):
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        e = tiny_model(x)
    assert e.shape == (3, 16)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_save_load_round_trip_is_exact_and_fingerprint_is_stable(tiny_model, tmp_path):
    x = torch.randn(2, 3, 32, 32)
    d = tmp_path / "copy"
    fp = tiny_model.save(d)
    assert sorted(p.name for p in d.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    again = Embedder.load(d)
    with torch.inference_mode():
        torch.testing.assert_close(again(x), tiny_model(x), rtol=0, atol=0)
    assert again.fingerprint == fp == tiny_model.fingerprint
    config = json.loads((d / CONFIG_FILE).read_text())
    assert config["backbone"] == "timm:test_resnet" and config["input_spec"]["size"] == [32, 32]


def test_fingerprint_changes_with_weights_or_config(tiny_model, tmp_path):
    fp = tiny_model.fingerprint
    tiny_model.save(tmp_path / "a")
    with torch.no_grad():
        tiny_model.head.proj.weight.add_(1e-3)
    tiny_model.train().eval()
    assert tiny_model.fingerprint != fp
    cfg = tmp_path / "a" / CONFIG_FILE
    cfg.write_text(cfg.read_text().replace('"cosine"', '"cosine" '))  # any byte change counts
    assert Embedder.load(tmp_path / "a").fingerprint != fp


def test_grey_input_spec_builds_a_one_channel_model(tmp_path):
    m = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=InputSpec(channels=1, size=(32, 32))).eval()
    img = make_pattern_image(tmp_path / "x.png", 1, 1)
    assert embed_images(m, [load_image(img)]).shape == (1, 8)
    assert m.backbone.conv1[0].in_channels == 1 if isinstance(m.backbone.conv1, torch.nn.Sequential) \
        else m.backbone.conv1.in_channels == 1


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_backbone_weights_from_a_local_file(tmp_path, fmt):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = timm.create_model("test_resnet", num_classes=10)  # with a classifier, as checkpoints come
    path = tmp_path / f"weights.{fmt}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, path) if fmt == "safetensors" else torch.save(state, path)
    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC, backbone_options={"weights": str(path)})
    torch.testing.assert_close(model.backbone.conv1.weight if hasattr(model.backbone.conv1, "weight")
                               else model.backbone.conv1[0].weight,
                               source.conv1.weight if hasattr(source.conv1, "weight") else source.conv1[0].weight)
    # The saved model carries the weights itself: no pointer to the file survives.
    model.save(tmp_path / "m")
    assert "weights" not in json.loads((tmp_path / "m" / CONFIG_FILE).read_text())["backbone_options"]


def test_build_errors_are_clear():
    with pytest.raises(ModelError, match="did you mean resnet18"):
        Embedder.build("timm:resnt18")
    with pytest.raises(PluginError, match="unknown backbone 'tim'.*did you mean timm"):
        Embedder.build("tim:resnet18")
    with pytest.raises(ModelError, match="weights file not found"):
        Embedder.build("timm:test_resnet", backbone_options={"weights": "/nonexistent.safetensors"})


def test_load_errors_name_the_problem(tmp_path, tiny_model_dir):
    with pytest.raises(ModelError, match="model directory not found"):
        Embedder.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="needs config.json and model.safetensors"):
        Embedder.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / CONFIG_FILE).write_text("{not json")
    (bad / WEIGHTS_FILE).write_bytes((tiny_model_dir / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ModelError, match="malformed"):
        Embedder.load(bad)
    (bad / CONFIG_FILE).write_text((tiny_model_dir / CONFIG_FILE).read_text().replace('"embedding_size": 16',
                                                                                      '"embedding_size": 32'))
    with pytest.raises(ModelError, match="do not fit"):
        Embedder.load(bad)
    (bad / CONFIG_FILE).write_text((tiny_model_dir / CONFIG_FILE).read_text())
    (bad / WEIGHTS_FILE).write_bytes(b"truncated")
    with pytest.raises(ModelError):
        Embedder.load(bad)


def test_embed_files_skips_and_reports_bad_files(tiny_model, tmp_path):
    good = [make_pattern_image(tmp_path / f"{i}.png", i, 0) for i in range(5)]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0garbage")
    paths = [good[0], corrupt, *good[1:], tmp_path / "missing.png"]
    out = embed_files(tiny_model, paths, batch_size=2, num_workers=0)
    assert out.paths == good and out.embeddings.shape == (5, 16)
    assert [p for p, _ in out.failures] == [corrupt, tmp_path / "missing.png"]
    assert "corrupt.jpg" in out.failures[0][1]
    # Batched, worker-decoded and one-at-a-time embeddings agree.
    single = embed_images(tiny_model, [load_image(p) for p in good])
    np.testing.assert_allclose(out.embeddings, single, atol=1e-5)
    with_workers = embed_files(tiny_model, good, batch_size=3, num_workers=1)
    np.testing.assert_allclose(with_workers.embeddings, single, atol=1e-5)


class _Payload:
    """Stands for code an attacker hides in a pickled checkpoint."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_with_pickled_code_is_refused(tmp_path, capsys):
    import timm

    state = dict(timm.create_model("test_resnet", num_classes=0).state_dict())
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": state, "payload": _Payload()}, path)
    with pytest.raises(ModelError, match="weights_only=True blocked"):
        Embedder.build("timm:test_resnet", input_spec=SPEC, backbone_options={"weights": str(path)})
    assert "must never run" not in capsys.readouterr().out
