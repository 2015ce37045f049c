"""Failures to acquire (ISO/IEC 19795-1) counted honestly in `benchmark pairs|folder|identify`.

A small detector plugin registered in-process finds a face in every photo and none in a blank
grey image, so the tests know exactly which files fail to acquire. Oracles: the metrics on
``-inf`` scores against scikit-learn's curve with a sentinel below every real score, the counts
against combinatorics, and ``--on-no-face nonmatch`` against the same run with the blanks dropped.
"""

from __future__ import annotations

import json
import shutil
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from verikit.evaluate.bootstrap import WeightedScores
from verikit.evaluate.evaluation import evaluate_verification, fold_accuracy
from verikit.evaluate.metrics import UNSCORED
from verikit.evaluate.summary import roc_summary
from verikit.registry import detectors
from verikit.structures import Detections

FARS = (0.1, 0.05, 0.01)
runner = CliRunner()


# --------------------------------------------------------------------------- the metrics on -inf


def _sklearn_reading(g: np.ndarray, i: np.ndarray, fars) -> list[float]:
    """TAR at each FAR read off scikit-learn's ROC, the unscored at a sentinel below every score."""
    from sklearn.metrics import roc_curve

    sentinel = min(g[np.isfinite(g)].min(), i[np.isfinite(i)].min()) - 10.0
    s = np.r_[np.where(np.isfinite(g), g, sentinel), np.where(np.isfinite(i), i, sentinel)]
    y = np.r_[np.ones(g.size), np.zeros(i.size)]
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    real = thr > sentinel  # operating points that accept no unscored comparison
    fpr, tpr = fpr[real], tpr[real]
    return [float(tpr[np.searchsorted(fpr, f, side="right") - 1]) for f in fars]


def _scores_with_failures(seed: int = 0):
    rng = np.random.default_rng(seed)
    g = rng.normal(0.6, 0.15, 400).astype(np.float32)
    i = rng.normal(0.1, 0.15, 3000).astype(np.float32)
    g[rng.choice(400, 37, replace=False)] = UNSCORED
    i[rng.choice(3000, 410, replace=False)] = UNSCORED
    return g, i


def test_unscored_comparisons_count_but_are_never_accepted():
    g, i = _scores_with_failures()
    s = roc_summary(g, i, FARS)
    assert list(s.tars) == pytest.approx(_sklearn_reading(g, i, FARS), abs=1e-12)
    assert all(np.isfinite(t) for t in s.thresholds) and np.isfinite(s.eer_threshold)
    assert s.tars[0] <= (400 - 37) / 400  # a genuine comparison with no face is a false non-match
    # the curve ends where accepting every scored comparison leaves it, never at (1, 1)
    assert s.curve_fmr.max() == pytest.approx((3000 - 410) / 3000)
    assert s.curve_tmr.max() == pytest.approx((400 - 37) / 400)
    # weighted rules with unit weights give the same numbers
    w = WeightedScores(g, np.arange(400) % 20, i, (np.arange(3000) % 20, (np.arange(3000) + 1) % 20))
    ones = np.ones(20, np.int64)
    tar, e = w.replicate(ones, FARS)
    assert tar.tolist() == list(s.tars) and e == s.eer


def test_every_impostor_may_be_accepted_but_not_the_unscored():
    g = np.array([0.9, 0.8, UNSCORED], np.float32)
    i = np.array([0.3, UNSCORED, UNSCORED, 0.2], np.float32)
    s = roc_summary(g, i, [1.0])
    assert s.thresholds[0] == pytest.approx(0.2) and s.tars[0] == pytest.approx(2 / 3)


def test_fold_accuracy_never_accepts_a_failure_to_acquire():
    scores = np.array([UNSCORED, UNSCORED, UNSCORED, 0.5, UNSCORED, UNSCORED, UNSCORED, 0.4])
    genuine = np.array([1, 1, 1, 0, 1, 1, 1, 0], bool)
    r = fold_accuracy(scores, genuine, np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    # accepting everything would be 75% right, but the unscored can never be accepted: the best a
    # threshold can do is reject all (1 of 4 right)
    assert r["threshold"] == [np.inf, np.inf] and r["accuracy"] == [0.25, 0.25]
    scores[[3, 7]] = [0.6, 0.7]  # now the two scored comparisons are genuine ones
    genuine[[3, 7]] = True
    r = fold_accuracy(scores, genuine, np.array([0, 0, 0, 0, 1, 1, 1, 1]))
    # each fold's threshold is the other fold's one real score, not a midpoint with -inf
    assert r["threshold"] == [0.7, 0.6] and r["accuracy"] == [0.0, 0.25]


def test_evaluation_reports_unscored_and_keeps_them_out_of_the_histogram():
    g, i = _scores_with_failures(1)
    subjects = np.arange(400) % 20
    v = evaluate_verification(g, i, subjects, (np.arange(3000) % 20, (np.arange(3000) + 3) % 20), fars=FARS,
                              n_boot=30)
    assert v["unscored"] == {"genuine": 37, "impostor": 410}
    assert v["n_genuine"] == 400 and v["n_impostor"] == 3000
    assert sum(v["histogram"]["genuine"]) == 363 and sum(v["histogram"]["impostor"]) == 2590
    json.dumps(v, allow_nan=False)  # strict JSON: no -inf anywhere


# --------------------------------------------------------------------------- end to end


class NotBlank:
    """A face (the middle of the image) in every picture that is not one flat colour."""

    def __init__(self, arg=None):
        pass

    def detect(self, images):
        out = []
        for im in images:
            w, h = im.size
            if np.asarray(im.convert("L")).std() < 1.0:
                out.append(Detections.empty(image_size=(w, h)))
            else:
                out.append(Detections(np.array([[0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h]], np.float32), [0.9],
                                      image_size=(w, h)))
        return out


@pytest.fixture()
def notblank():
    with detectors.temporary("notblank", NotBlank):
        yield "notblank"


@pytest.fixture(scope="module")
def people(tmp_path_factory, orl) -> Path:
    """ORL s1..s12, four images each, plus one blank image in s1, s2 and s3."""
    root = tmp_path_factory.mktemp("fta") / "people"
    for s in range(1, 13):
        (root / f"s{s}").mkdir(parents=True)
        for k in range(1, 5):
            shutil.copy(orl / f"s{s}" / f"{k}.pgm", root / f"s{s}" / f"{k}.pgm")
    for s in (1, 2, 3):
        Image.new("L", (92, 112), 128).save(root / f"s{s}" / "blank.png")
    return root


def _cli(*args):
    from verikit.cli.main import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _json(r):
    return json.loads(r.stdout)


def test_benchmark_folder_scores_a_failure_to_acquire_as_a_non_match(notblank, people, tiny_model_dir, tmp_path):
    common = ["benchmark", "folder", people, "--model", tiny_model_dir, "--detector", notblank, "--bootstrap", "20",
              "-f", "json", "-q"]
    r = _cli(*common, "--report", tmp_path / "nonmatch")
    assert r.exit_code == 0, r.output  # nothing was skipped: every pair is in the figures
    doc = _json(r)
    n_files, n_genuine = 12 * 4 + 3, 9 * comb(4, 2) + 3 * comb(5, 2)
    fta_genuine = 3 * 4  # each blank with the four photos of its person
    fta_impostor = 3 * (n_files - 5) - comb(3, 2)  # each blank with every other person's files, blank pairs once
    acq = doc["acquisition"]
    assert acq["no_face"] == 3 and acq["files"] == n_files and acq["fta_rate"] == pytest.approx(3 / n_files)
    assert acq["pairs"] == {"genuine": fta_genuine, "impostor": fta_impostor} and acq["on_no_face"] == "nonmatch"
    v = doc["verification"]
    assert v["n_genuine"] == n_genuine and v["unscored"] == {"genuine": fta_genuine, "impostor": fta_impostor}
    assert doc["skipped"]["files"] == [] and doc["skipped"]["pairs"] == 0
    scores = np.load(tmp_path / "nonmatch" / "scores.npz")
    g, i = scores["genuine"], scores["impostor"]
    assert np.isneginf(g).sum() == fta_genuine and np.isneginf(i).sum() == fta_impostor
    assert [row["tar"] for row in v["tar_at_far"][:2]] == pytest.approx(_sklearn_reading(g, i, (0.1, 0.01)))
    html = (tmp_path / "nonmatch" / "report.html").read_text()
    assert "failure to acquire (no face found): 3 of 51 image(s)" in html and "false non-match" in html

    # --on-no-face drop: the same scored pairs, the others left out and labelled; exit 4
    r = _cli(*common, "--on-no-face", "drop")
    assert r.exit_code == 4
    dropped = _json(r)
    assert dropped["skipped"]["pairs"] == fta_genuine + fta_impostor
    assert dropped["skipped"]["reasons"] == {"no face found (dropped)": 3}
    assert all("(dropped: --on-no-face drop)" in f["reason"] for f in dropped["skipped"]["files"])
    d = dropped["verification"]
    assert d["n_genuine"] == n_genuine - fta_genuine and d["unscored"] == {"genuine": 0, "impostor": 0}
    # a genuine pair the detector could not take is a false non-match: TAR never reads better for it
    assert all(a["tar"] <= b["tar"] for a, b in zip(v["tar_at_far"], d["tar_at_far"]))

    # fallbacks: every pair scored, the blanks embedded from the whole image or a centre crop
    for mode in ("whole", "center"):
        r = _cli(*common, "--on-no-face", mode)
        assert r.exit_code == 0, r.output
        fb = _json(r)
        assert fb["acquisition"]["fallback"] == 3 and fb["acquisition"]["no_face"] == 3
        assert fb["verification"]["unscored"] == {"genuine": 0, "impostor": 0}
        assert fb["verification"]["n_genuine"] == n_genuine


def test_the_table_says_what_failed_to_acquire(notblank, people, tiny_model_dir):
    r = _cli("benchmark", "folder", people, "--model", tiny_model_dir, "--detector", notblank, "--bootstrap", "0",
             "-q")
    assert r.exit_code == 0, r.output
    assert "failure to acquire (no face found): 3 of 51 image(s), FTA rate 5.88%" in r.stdout
    assert "scored as non-match" in r.stdout and "(12 genuine / " in r.stdout
    assert "warning: no face found in 3 image(s)" in r.stderr


def test_on_no_face_needs_a_detector(people, tiny_model_dir):
    r = _cli("benchmark", "folder", people, "--model", tiny_model_dir, "--on-no-face", "whole")
    assert r.exit_code == 2 and "--on-no-face only applies with --detector" in r.output


def test_identification_counts_failures_to_acquire_as_misses(notblank, people, tiny_model_dir, tmp_path):
    # gallery: first photo of s1..s8, and s1's blank; s2's only gallery image is its blank (a failure to enrol)
    gallery = ["path,identity"] + [f"s{s}/1.pgm,s{s}" for s in range(1, 9) if s != 2] + ["s1/blank.png,s1",
                                                                                          "s2/blank.png,s2"]
    probes = [f"s{s}/2.pgm,s{s}" for s in range(1, 13)] + ["s3/blank.png,s3", "s3/blank.png,s11"]
    (tmp_path / "g.csv").write_text("\n".join(gallery) + "\n")
    (tmp_path / "p.csv").write_text("\n".join(probes) + "\n")
    common = ["benchmark", "identify", "--gallery", tmp_path / "g.csv", "--probes", tmp_path / "p.csv", "--root",
              people, "--model", tiny_model_dir, "--detector", notblank, "-f", "json", "-q"]
    r = _cli(*common)
    assert r.exit_code == 0, r.output
    ident = _json(r)["identification"]
    # mated: s1..s8 photos (s2 included: enrolled, but without a template) + the blank probe of s3
    assert ident["n_mated"] == 9 and ident["n_non_mated"] == 5 and ident["n_identities_without_template"] == 1
    assert ident["unscored_probes"] == {"mated": 1, "non_mated": 1} and ident["misses_without_score"] == 2
    assert ident["cmc"][-1] == pytest.approx(7 / 9)  # never found at any rank: s2's probe and s3's blank
    # the same evaluation with the failures dropped reads better, which is why it is not the default
    r = _cli(*common, "--on-no-face", "drop")
    assert r.exit_code == 4
    dropped = _json(r)["identification"]
    assert dropped["n_mated"] == 7 and dropped["cmc"][-1] == 1.0
