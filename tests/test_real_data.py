"""End to end on real faces, through the CLI: train -> calibrate -> enroll -> verify -> search.

ORL is bundled with the project; Yale and Extended Yale B come from ../shared/data (skipped with
a reason when absent). Identities used for testing are never used for training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_cli import ok

pytestmark = pytest.mark.slow


def link_people(src: Path, dst: Path, people: list[str], images: slice = slice(None)) -> Path:
    """A folder-per-identity view of some ORL people (symlinks: nothing is copied)."""
    for p in people:
        files = sorted((src / p).glob("*.pgm"), key=lambda f: int(f.stem))[images]
        (dst / p).mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(f, dst / p / f.name)
    return dst


@pytest.fixture(scope="module")
def orl_model(tmp_path_factory, orl) -> Path:
    root = tmp_path_factory.mktemp("orl")
    train_dir = link_people(orl, root / "train", [f"s{i}" for i in range(1, 26)])
    model = root / "model"
    r = ok("train", train_dir, "--out", model, "--backbone", "timm:resnet10t", "--image-size", "48",
           "--channels", "1", "--epochs", "6", "--val-fraction", "0.2", "--lr", "2e-3", "--loss", "multi_similarity",
           "--miner", "multi_similarity")
    assert "val EER" in r.stderr and "saved" in r.stderr
    config = json.loads((model / "config.json").read_text())
    assert config["training"]["kept_epoch"] >= 1 and len(config["training"]["history"]) == 6
    return model


@pytest.fixture(scope="module")
def orl_gallery(tmp_path_factory, orl, orl_model) -> Path:
    root = tmp_path_factory.mktemp("orl-g")
    cal_dir = link_people(orl, root / "cal", [f"s{i}" for i in range(26, 31)])
    cal = json.loads(ok("calibrate", cal_dir, "--model", orl_model, "--target-fmr", "0.01", "-f", "json").stdout)
    assert cal["n_genuine"] == 5 * 45 and cal["n_impostor"] == 50 * 49 // 2 - 5 * 45
    enroll_dir = link_people(orl, root / "enroll", [f"s{i}" for i in range(31, 41)], slice(0, 5))
    gallery = root / "gallery"
    report = json.loads(ok("enroll", "--from-folder", enroll_dir, "-m", orl_model, "-g", gallery, "-f", "json").stdout)
    assert report["templates"] == 50 and len(report["enrolled"]) == 10
    return gallery


def test_search_identifies_unseen_people_far_above_chance(orl, orl_gallery):
    probes = [orl / f"s{i}" / f"{k}.pgm" for i in range(31, 41) for k in range(6, 11)]
    results = json.loads(ok("search", *probes, "-k", "3", "-g", orl_gallery, "-f", "json").stdout)
    truth = [p.parent.name for p in probes]
    rank1 = sum(r["hits"][0]["identity"] == t for r, t in zip(results, truth)) / len(probes)
    assert rank1 >= 0.6, f"rank-1 {rank1:.2f} on 10 unseen people (chance 0.10)"
    assert all(r["threshold"] is not None for r in results)  # calibrated: open-set decisions made


def test_verify_genuine_scores_above_impostor_on_average(orl, orl_gallery):
    genuine, impostor = [], []
    for i in (31, 35, 39):
        probe = orl / f"s{i}" / "8.pgm"
        genuine.append(json.loads(ok("verify", probe, "-c", f"s{i}", "-g", orl_gallery, "-f", "json").stdout)["score"])
        impostor.append(json.loads(ok("verify", probe, "-c", f"s{i + 1}", "-g", orl_gallery, "-f", "json").stdout)["score"])
    assert sum(genuine) / 3 > sum(impostor) / 3


def test_yale_files_without_extension_enroll_and_verify(tmp_path, shared_data, orl_model):
    yale = shared_data / "yalefaces"
    if not yale.is_dir():
        pytest.skip(f"yalefaces not found under {shared_data}")
    gallery = tmp_path / "g"
    for subject in ("subject01", "subject02"):
        files = [yale / f"{subject}.{c}" for c in ("normal", "glasses", "noglasses")]
        ok("enroll", subject, *files, "-m", orl_model, "-g", gallery)
    d = json.loads(ok("verify", yale / "subject01.happy", "-c", "subject01", "-g", gallery, "-f", "json").stdout)
    assert d["claim"] == "subject01" and "match" in d


def test_extended_yale_b_folders_skip_info_files(tmp_path, shared_data, orl_model):
    yale_b = shared_data / "cropped_yale_b"
    if not yale_b.is_dir():
        pytest.skip(f"cropped_yale_b not found under {shared_data}")
    subset = tmp_path / "yaleb"
    for person in ("yaleB01", "yaleB02"):
        (subset / person).mkdir(parents=True)
        files = sorted((yale_b / person).iterdir())
        for f in [f for f in files if f.suffix == ".pgm"][:4] + [f for f in files if f.suffix == ".info"]:
            os.symlink(f, subset / person / f.name)
    r = ok("enroll", "--from-folder", subset, "-m", orl_model, "-g", tmp_path / "g", "-f", "json")
    assert json.loads(r.stdout)["enrolled"] == {"yaleB01": 4, "yaleB02": 4}
    assert "2 file(s) under" in r.stderr and "ignored (not images" in r.stderr
