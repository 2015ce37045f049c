"""Evaluation output that cannot mislead (issue 16): intervals the data can support, subjects
named in a pairs CSV, one exit-code rule for skipped inputs, progress in a log, a fixed threshold
scored on a protocol."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from verikit.errors import DataError
from verikit.evaluate.bootstrap import MIN_SUBJECTS
from verikit.evaluate.evaluation import evaluate_verification
from verikit.evaluate.protocols import read_pairs_csv

runner = CliRunner()


def _cli(*args, env=None):
    from verikit.cli.main import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


# --------------------------------------------------------------------------- intervals


def _scores(n_subjects: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sg = np.repeat(np.arange(n_subjects), 20)
    g = rng.normal(0.6, 0.2, sg.size) + rng.normal(0, 0.1, n_subjects)[sg]
    n_i = 2000
    sa, sb = rng.integers(0, n_subjects, n_i), rng.integers(0, n_subjects, n_i)
    return g, rng.normal(0.1, 0.2, n_i), sg, (sa, sb)


def test_one_subject_gets_pair_level_intervals_never_a_zero_width_one():
    g, i, sg, si = _scores(1)
    v = evaluate_verification(g, i, sg, si, n_boot=200)
    assert v["bootstrap"]["unit"] == "pair" and "1 subject: too few" in v["subjects_note"]
    assert "pair-level" in v["interval_note"]
    lo, hi = v["eer"]["bootstrap_ci"]
    assert lo < v["eer"]["value"] < hi  # a real interval from resampling the comparisons
    for row in v["tar_at_far"]:
        assert row["tar_bootstrap_ci"] is None  # no subject interval to claim; Wilson is the rate's interval
        assert row["tar_interval"][0] < row["tar_interval"][1]


def test_enough_subjects_get_the_subject_bootstrap_and_fewer_do_not():
    for n, unit in ((MIN_SUBJECTS, "subject"), (MIN_SUBJECTS - 1, "pair")):
        g, i, sg, si = _scores(n)
        v = evaluate_verification(g, i, sg, si, n_boot=50)
        assert v["bootstrap"]["unit"] == unit and v["n_subjects"] == n
        assert (v["subjects_note"] is None) == (unit == "subject")
        assert (v["tar_at_far"][0]["tar_bootstrap_ci"] is not None) == (unit == "subject")


def test_a_bootstrap_interval_of_zero_width_is_not_shown():
    g, i, sg, si = _scores(12)
    g = g + 5.0  # every genuine score above every impostor: TAR 1 in every replicate
    v = evaluate_verification(g, i, sg, si, n_boot=50)
    assert v["tar_at_far"][0]["tar"] == 1.0 and v["tar_at_far"][0]["tar_bootstrap_ci"] is None
    assert "zero width" in v["interval_note"] and v["tar_at_far"][0]["tar_interval"][0] < 1.0


# --------------------------------------------------------------------------- subjects in a pairs CSV


def _images(root: Path, orl: Path, people: int, per: int = 3) -> None:
    for s in range(1, people + 1):
        for k in range(1, per + 1):
            shutil.copy(orl / f"s{s}" / f"{k}.pgm", root / f"p{s}_{k}.pgm")


def test_pairs_csv_subject_columns_and_flat_folders(tmp_path, orl):
    _images(tmp_path, orl, 3)
    flat = tmp_path / "flat.csv"
    flat.write_text("p1_1.pgm,p1_2.pgm,1\np1_1.pgm,p2_1.pgm,0\n")
    p = read_pairs_csv(flat)
    assert p.info["subject_source"] == "folders" and "subjects are unknown" in p.info["subject_note"]
    assert "flat.csv:1 is a genuine pair of two subjects" in p.info["subject_note"]
    named = tmp_path / "named.csv"
    named.write_text("path_a,path_b,label,subject_a,subject_b\np1_1.pgm,p1_2.pgm,1,alice,alice\n"
                     "p1_1.pgm,p2_1.pgm,0,alice,bob\np2_1.pgm,p3_1.pgm,0,bob,carol\n")
    p = read_pairs_csv(named)
    assert p.info["subject_note"] is None and p.subjects == ("alice", "bob", "carol")
    assert [p.subjects[s] for s in p.subject_of] == ["alice", "alice", "bob", "carol"]
    for text, message in [
        ("p1_1.pgm,p1_2.pgm,1,alice,bob\n", r"bad.csv:1: a genuine pair of two subjects \('alice', 'bob'\)"),
        ("p1_1.pgm,p2_1.pgm,0,alice,alice\n", r"bad.csv:1: an impostor pair inside one subject"),
        ("p1_1.pgm,p1_2.pgm,1,alice,alice\np1_1.pgm,p2_1.pgm,0,bob,carol\n",
         r"bad.csv:2: 'p1_1.pgm' is subject 'bob' here but 'alice' on an earlier line"),
        ("p1_1.pgm,p1_2.pgm,1,alice,alice\np1_1.pgm,p2_1.pgm,0\n", r"bad.csv:2: 3 fields, but earlier rows have 5"),
        ("p1_1.pgm,p1_2.pgm,1,alice,\n", r"bad.csv:1: empty subject"),
        ("p1_1.pgm,p1_2.pgm,1,alice\n", r"bad.csv:1: expected 3 fields .* or 5"),
    ]:
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(DataError, match=message):
            read_pairs_csv(tmp_path / "bad.csv")


def test_benchmark_pairs_from_one_folder_says_subjects_are_unknown(tmp_path, orl, tiny_model_dir):
    _images(tmp_path, orl, 12)
    rows = [f"p{s}_1.pgm,p{s}_{k}.pgm,1" for s in range(1, 13) for k in (2, 3)]
    rows += [f"p{s}_1.pgm,p{t}_2.pgm,0" for s in range(1, 13) for t in range(1, 13) if s != t]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    r = _cli("benchmark", "pairs", "--pairs", tmp_path / "pairs.csv", "--model", tiny_model_dir, "--bootstrap", "100",
             "-q")
    assert r.exit_code == 0, r.output
    assert "subjects unknown" in r.stdout and "so the subjects are unknown" in r.stdout
    assert "(pair bootstrap)" in r.stdout and "pair-level" in r.stdout
    # the same pairs with their people named: a subject bootstrap over the 12 of them
    named = [f"{row},s{row.split('_')[0][1:]},s{row.split(',')[1].split('_')[0][1:]}" for row in rows]
    (tmp_path / "named.csv").write_text("\n".join(named) + "\n")
    r = _cli("benchmark", "pairs", "--pairs", tmp_path / "named.csv", "--model", tiny_model_dir, "--bootstrap",
             "100", "-f", "json", "-q")
    v = json.loads(r.stdout)["verification"]
    assert v["bootstrap"]["unit"] == "subject" and v["n_subjects"] == 12 and v["subjects_note"] is None


# --------------------------------------------------------------------------- a fixed threshold


@pytest.fixture(scope="module")
def val_set(tmp_path_factory, orl) -> Path:
    root = tmp_path_factory.mktemp("val") / "people"
    for s in range(21, 33):
        shutil.copytree(orl / f"s{s}", root / f"s{s}")
    return root


def test_a_calibrated_threshold_scored_on_its_own_data_measures_what_calibrate_measured(
        tmp_path, val_set, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cal = json.loads(_cli("calibrate", val_set, "-m", model, "--target-fmr", "0.05", "-f", "json").stdout)
    r = _cli("benchmark", "folder", val_set, "-m", model, "--calibration", model, "--threshold", "0.5",
             "--bootstrap", "100", "--report", tmp_path / "rep", "-f", "json", "-q")
    assert r.exit_code == 0, r.output
    fixed, from_cal = json.loads(r.stdout)["verification"]["at_threshold"]
    scores = np.load(tmp_path / "rep" / "scores.npz")
    g, i = scores["genuine"].astype(np.float64), scores["impostor"].astype(np.float64)
    # The same pairs through the same model: the calibration's own rates, up to the comparisons whose
    # float32 score lands within rounding of the threshold (calibrate scores all pairs by matrix
    # products, the benchmark pair by pair: the last bit may differ, and the threshold sits there).
    t = from_cal["threshold"]
    assert t == cal["threshold"] and from_cal["pipeline_matches"] is True
    near_i, near_g = int((np.abs(i - t) <= 1e-6).sum()), int((np.abs(g - t) <= 1e-6).sum())
    assert abs(from_cal["impostor_accepted"] - round(cal["measured_fmr"] * i.size)) <= near_i
    assert abs(from_cal["genuine_rejected"] - round(cal["measured_fnmr"] * g.size)) <= near_g
    assert near_i <= 2
    assert from_cal["target_fmr"] == 0.05 and from_cal["target_fmr_in_interval"] is True
    lo, hi = from_cal["fmr_bootstrap_ci"]
    assert lo <= from_cal["fmr"] <= hi
    # --threshold: counts against the saved scores
    assert fixed["impostor_accepted"] == int((i >= 0.5).sum()) and fixed["genuine_rejected"] == int((g < 0.5).sum())
    assert fixed["fmr"] == (i >= 0.5).mean() and fixed["source"] == "--threshold"
    r = _cli("benchmark", "folder", val_set, "-m", model, "--calibration", model, "--bootstrap", "0", "-q")
    assert f"at threshold {cal['threshold']:.5f} (calibration {model})" in r.stdout
    assert "calibrated for FMR 0.05, which is inside the interval" in r.stdout
    assert "calibration" in (tmp_path / "rep" / "report.html").read_text()


def test_a_calibration_through_another_pipeline_is_flagged(tmp_path, val_set, tiny_model_dir):
    from verikit.registry import detectors
    from tests.test_acquisition import NotBlank

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    assert _cli("calibrate", val_set, "-m", model, "--target-fmr", "0.1", "-q").exit_code == 0
    with detectors.temporary("notblank", NotBlank):
        r = _cli("benchmark", "folder", val_set, "-m", model, "--calibration", model, "--detector", "notblank",
                 "--bootstrap", "0", "-f", "json", "-q")
    assert r.exit_code == 0, r.output
    (point,) = json.loads(r.stdout)["verification"]["at_threshold"]
    assert point["pipeline_matches"] is False and point["calibration_pipeline"] is None
    assert "was made through whole images" in r.stderr and "not meant for these scores" in r.stderr


def test_bad_thresholds_and_calibrations_are_refused(tmp_path, val_set, tiny_model_dir):
    r = _cli("benchmark", "folder", val_set, "-m", tiny_model_dir, "--threshold", "nan")
    assert r.exit_code == 2 and "not a finite number" in r.output
    env = {"VERIKIT_DEBUG": ""}
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "benchmark", "folder", str(val_set), "-m",
                        str(tiny_model_dir), "--calibration", str(tmp_path)], capture_output=True, text=True,
                       env={**__import__("os").environ, **env})
    assert r.returncode == 1 and "no calibration at" in r.stderr and r.stderr.count("\n") == 1


# --------------------------------------------------------------------------- skipped inputs


def test_calibrate_and_benchmark_exit_4_after_skipping_an_unreadable_image(tmp_path, val_set, tiny_model_dir):
    data = tmp_path / "people"
    shutil.copytree(val_set, data)
    (data / "s21" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (data / "README.txt").write_text("not an image, not an input")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    r = _cli("calibrate", data, "-m", model, "--target-fmr", "0.1")
    assert r.exit_code == 4
    assert f"warning: skipped: cannot read image '{data / 's21' / 'broken.jpg'}'" in r.stderr
    assert "1 file(s) under" in r.stderr and "not used" in r.stderr
    assert "images: 120 of 121 used; 1 skipped (0 no face found, 1 unreadable)" in r.stdout
    saved = json.loads((model / "calibration.json").read_text())  # the rest was calibrated and saved
    assert saved["data"]["skipped"][0]["path"] == str(data / "s21" / "broken.jpg")
    r = _cli("benchmark", "folder", data, "-m", model, "--bootstrap", "0")
    assert r.exit_code == 4 and "warning: skipped: cannot read image" in r.stderr
    assert "1 skipped (unreadable); 120 pair(s) dropped with them" in r.stdout
    # without the broken image: exit 0, the non-image file notwithstanding
    (data / "s21" / "broken.jpg").unlink()
    assert _cli("calibrate", data, "-m", model, "--target-fmr", "0.1", "-q").exit_code == 0
    assert _cli("benchmark", "folder", data, "-m", model, "--bootstrap", "0", "-q").exit_code == 0


# --------------------------------------------------------------------------- progress in a log


def test_progress_lines_at_intervals_with_rate_and_eta():
    from verikit.cli.common import ProgressLog

    now = [100.0]
    lines: list[str] = []
    log = ProgressLog("embedding 400 file(s)", 400, 10.0, clock=lambda: now[0], write=lines.append)
    for _ in range(40):  # 10 files a second
        now[0] += 1.0
        log.advance(10)
    log.close()
    assert lines[0] == "embedding 400 file(s): 100/400 (25%), 10.0/s, ETA 0:00:30"
    assert lines[2] == "embedding 400 file(s): 300/400 (75%), 10.0/s, ETA 0:00:10"
    assert len(lines) == 5 and lines[-1] == "embedding 400 file(s): done, 400 in 0:00:40 (10.0/s)"
    quiet: list[str] = []
    short = ProgressLog("x", 5, 10.0, clock=lambda: 0.0, write=quiet.append)
    short.advance(5)
    short.close()
    assert quiet == []  # a run shorter than one interval prints nothing


def test_a_benchmark_logs_progress_when_stderr_is_a_file(tmp_path, val_set, tiny_model_dir):
    import os

    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "benchmark", "folder", str(val_set), "-m",
                            str(tiny_model_dir), "--bootstrap", "0", "--batch-size", "16"], stdout=subprocess.PIPE,
                           stderr=err, text=True, env={**os.environ, "VERIKIT_PROGRESS_INTERVAL": "0"})
    assert r.returncode == 0
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("embedding 120 file(s): ")]
    counts = [int(ln.split(": ")[1].split("/")[0].replace(",", "")) for ln in lines if "/120" in ln]
    assert counts == sorted(counts) and counts[-1] == 120 and len(counts) >= 5
    assert "/s" in lines[0] and lines[-1].startswith("embedding 120 file(s): done, 120 in ")
