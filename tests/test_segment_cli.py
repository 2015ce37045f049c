"""``verikit segment train`` / ``segment run`` with a tiny trainable segmenter registered in-process
(CliRunner), and the one-line errors with exit status 1 as a user sees them (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from verikit.cli.main import app
from verikit.registry import segmenters
from verikit.testing import check_segmenter, synthetic_mask_dataset

from .segment_tiny import tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def registered():
    with segmenters.temporary("tiny", tiny):
        yield


def test_tiny_segmenter_passes_the_contract():
    torch.manual_seed(0)
    check_segmenter(tiny())


def test_train_then_run(tmp_path, registered):
    images, masks = synthetic_mask_dataset(tmp_path / "data", n=8, size=48)
    out = tmp_path / "seg"
    r = CliRunner().invoke(app, ["segment", "train", "tiny", "--images", str(images), "--masks", str(masks),
                                 "--out", str(out), "--epochs", "3", "--lr", "0.02", "--val-fraction", "0.25",
                                 "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    weights = out / "segmenter.safetensors"
    assert summary["weights"] == str(weights) and weights.is_file() and (out / "segmenter.json").is_file()
    assert summary["images"] == 6 and summary["val_images"] == 2 and len(summary["loss_per_epoch"]) == 3
    assert summary["usage"] == f"--segmenter tiny -S weights={weights} -S input_size=48"
    table = CliRunner().invoke(app, ["segment", "train", "tiny", "--images", str(images), "--masks", str(masks),
                                     "--out", str(tmp_path / "seg2"), "--epochs", "1", "-q"])
    assert table.exit_code == 0 and "use it with: --segmenter tiny -S weights=" in table.stdout

    probe = images / "i00.png"
    r = CliRunner().invoke(app, ["segment", "run", str(probe), str(images / "i01.png"), "--segmenter", "tiny",
                                 "-S", f"weights={weights}", "--out", str(tmp_path / "masks"), "--background", "black",
                                 "-q"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["image"] for row in rows] == [str(probe), str(images / "i01.png")]
    mask = np.asarray(Image.open(rows[0]["mask"]))
    masked = np.asarray(Image.open(rows[0]["masked"]))
    assert mask.shape == (48, 48) and masked.shape == (48, 48, 3) and rows[0]["boxes"] == [[0, 0, 48, 48]]
    assert rows[0]["foreground_fraction"] == pytest.approx((mask >= 128).mean(), abs=0.01)
    assert (masked[mask == 0] == 0).all()  # black background where the mask is 0
    assert rows[0]["box_foreground_fractions"] == [rows[0]["foreground_fraction"]]


def test_untrainable_segmenter_and_bad_option_syntax(tmp_path):
    with segmenters.temporary("plain", lambda **_: None):
        r = CliRunner().invoke(app, ["segment", "train", "plain", "--images", str(tmp_path), "--masks",
                                     str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "cannot be trained" in str(r.exception)
    r = CliRunner().invoke(app, ["segment", "run", "x.png", "--segmenter", "tiny", "-S", "novalue"])
    assert r.exit_code == 2 and "--segmenter-option" in r.output


_MAIN = ("import sys; from verikit.registry import segmenters; from tests.segment_tiny import tiny; "
         "segmenters.register('tiny', tiny); from verikit.cli.main import main; sys.argv[0] = 'verikit'; main()")


def _cli(*args):
    return subprocess.run([sys.executable, "-c", _MAIN, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_user_errors_are_one_line_with_exit_1(tmp_path):
    images, masks = synthetic_mask_dataset(tmp_path / "data", n=3, size=16)
    (masks / "i02.png").unlink()
    r = _cli("segment", "train", "tiny", "--images", images, "--masks", masks, "--out", tmp_path / "o")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: image '{images / 'i02.png'}' has no mask named 'i02.*' in '{masks}'"], r.stderr
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = _cli("segment", "run", tmp_path / "bad.png", "--segmenter", "tiny")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "bad.png" in r.stderr, r.stderr
    r = _cli("segment", "run", images / "i00.png", "--segmenter", "tiny", "-S", f"weights={tmp_path / 'w.safetensors'}")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: segmenter 'tiny': segmenter weights file '{tmp_path / 'w.safetensors'}' does not exist"], r.stderr
    r = _cli("segment", "run", images / "i00.png", "--segmenter", "tinny")
    assert r.returncode == 1 and "did you mean tiny" in r.stderr
