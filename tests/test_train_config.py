"""Training config files and their precedence: defaults < resumed run < --config file < options given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import ok, one_line_error, run
from verikit.cli.train import resolve_config
from verikit.errors import DataError
from verikit.train.config import config_from_dict, config_to_dict, read_config_file, write_config
from verikit.train.config import TrainConfig


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_yaml_and_json_files_read_the_same(tmp_path):
    y = write(tmp_path / "c.yaml", "epochs: 7\nlr: 0.01\nimage_size: 64x48\nbackbone_options:\n  channels: [8, 16]\n")
    j = write(tmp_path / "c.json", json.dumps({"epochs": 7, "lr": 0.01, "image_size": [64, 48],
                                               "backbone_options": {"channels": [8, 16]}}))
    a, b = (config_from_dict(read_config_file(p)) for p in (y, j))
    assert a == b and a.epochs == 7 and a.image_size == (64, 48) and a.backbone_options == {"channels": [8, 16]}


def test_option_given_overrides_the_file_even_when_it_equals_the_default(tmp_path):
    f = write(tmp_path / "c.yaml", "epochs: 7\nlr: 0.01\nloss: contrastive\nbackbone_options: {channels: [8, 16]}\n")
    cfg = resolve_config(tmp_path, f, False, {"lr": 1e-3}, {"drop_rate": 0.1}, None)
    assert cfg.lr == 1e-3                   # typed on the command line (and equal to the built-in default)
    assert cfg.epochs == 7 and cfg.loss == "contrastive"       # from the file
    assert cfg.miner == TrainConfig().miner                     # built-in default
    assert cfg.backbone_options == {"channels": [8, 16], "drop_rate": 0.1}  # merged key by key


def test_resume_starts_from_the_saved_config(tmp_path):
    from verikit.train.checkpoint import Checkpoint, save_checkpoint

    saved = TrainConfig(epochs=5, lr=0.02, loss="multi_similarity")
    save_checkpoint(tmp_path, Checkpoint(epoch=2, model={}, states={}, progress={"config": config_to_dict(saved)}))
    f = write(tmp_path / "more.json", '{"epochs": 9}')
    cfg = resolve_config(tmp_path, f, True, {"lr": 0.005}, {}, None)
    assert (cfg.epochs, cfg.lr, cfg.loss) == (9, 0.005, "multi_similarity")


def test_resolved_config_round_trips_through_its_file(tmp_path):
    cfg = TrainConfig(image_size=(48, 40), margin=0.3, optimizer="sgd", patience=3)
    path = write_config(cfg, tmp_path / "train_config.json")
    assert config_from_dict(read_config_file(path)) == cfg


@pytest.mark.parametrize("text, message", [
    ('{"epochz": 3}', "unknown field 'epochz'"),
    ('{"epochs": "three"}', "field 'epochs' must be a valid integer, got \"three\""),
    ('{"epochs": 0}', "field 'epochs' must be greater than or equal to 1"),
    ('{"lr": NaN}', "field 'lr' must be a finite number, got NaN"),
    ('{"margin": Infinity}', "field 'margin' must be a finite number"),
    ('{"amp": 1}', "field 'amp' must be a valid boolean"),
    ('{"loss": "tripplet"}', "field 'loss' must be one of triplet, contrastive"),
    ('{"distance": "cosin"}', "field 'distance': unknown similarity/distance 'cosin'"),
    ('{"image_size": "big"}', "field 'image_size'"),
    ('[1, 2]', "must hold a mapping"),
    ('{"epochs": ', "is malformed"),
    ('{"augment": "heavy"}', "field 'augment' must be one of none, light, strong, affine, got \"heavy\""),
    ('{"keep": "first"}', "field 'keep' must be one of last, best"),
    ('{"equalize": "clahe"}', "field 'equalize' must be one of none, histogram"),
])
def test_bad_config_files_are_one_clear_error(tmp_path, text, message):
    path = write(tmp_path / "c.json", text)
    with pytest.raises(DataError, match=message) as err:
        config_from_dict(read_config_file(path), source=str(path))
    assert "c.json" in str(err.value) and "\n" not in str(err.value)


def test_unknown_key_suggests_the_close_one(tmp_path):
    with pytest.raises(DataError, match="did you mean 'epochs'"):
        config_from_dict({"epochz": 3})


@pytest.mark.slow
def test_cli_trains_from_a_config_file_and_saves_the_resolved_config(tmp_path, synthetic_faces):
    cfg_file = write(tmp_path / "run.yaml", "backbone: timm:test_resnet\nembedding_size: 8\nimage_size: 32\n"
                                            "epochs: 1\nbatch_size: 4\nm_per_class: 2\nlr: 0.01\nval_fraction: 0\n"
                                            "device: cpu\n")
    out = tmp_path / "model"
    ok("train", synthetic_faces, "--out", out, "--config", cfg_file, "--lr", "1e-3", "--quiet")
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["epochs"] == 1 and saved["backbone"] == "timm:test_resnet"
    assert json.loads((out / "config.json").read_text())["training"]["config"] == saved
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "train_log.csv").is_file()

    bad = write(tmp_path / "bad.yaml", "epochs: 1\nlearning_rate: 0.1\n")
    one_line_error(run("train", synthetic_faces, "--out", tmp_path / "m2", "--config", bad),
                   "unknown field 'learning_rate'", "bad.yaml")
