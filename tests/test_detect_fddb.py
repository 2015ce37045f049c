"""FDDB: its ellipse lists, FDDB's region overlap against an exact integral, FDDB's discrete ROC
against a brute-force matching, and ``verikit benchmark detection`` on an FDDB-layout folder
(several detectors, earlier results, the HTML report); the real FDDB when it is present."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from verikit.cli.main import app
from verikit.errors import DataError
from verikit.evaluate.detection.annotations import load_annotations
from verikit.evaluate.detection.fddb import read_fddb
from verikit.evaluate.detection.regions import ellipse_bounds, ellipse_box_overlaps
from verikit.evaluate.detection.roc import DiscreteROC, fddb_roc, ranked_roc
from verikit.evaluate.detection.run import evaluate_detector
from verikit.registry import detectors
from verikit.structures import Detections

# -- an FDDB-layout folder -----------------------------------------------------------------------------
FOLD_A = """2002/07/19/big/img_1
2
40.0 30.0 1.5707963 60.0 60.0 1
20.5 15.25 0.3 150.0 50.0 1
2002/07/19/big/img_2
1
30.0 20.0 -1.2 50.0 40.0 1
"""
FOLD_B = """2003/01/01/big/img_3
0
"""


def make_fddb(root: Path) -> Path:
    folds = root / "FDDB-folds"
    folds.mkdir(parents=True)
    (folds / "FDDB-fold-01-ellipseList.txt").write_text(FOLD_A)
    (folds / "FDDB-fold-02-ellipseList.txt").write_text(FOLD_B)
    (folds / "FDDB-fold-01.txt").write_text("2002/07/19/big/img_1\n2002/07/19/big/img_2\n")  # image lists: ignored
    for name, size in (("2002/07/19/big/img_1", (200, 120)), ("2002/07/19/big/img_2", (100, 90)),
                       ("2003/01/01/big/img_3", (64, 64))):
        path = root / "originalPics" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 90, 90)).save(path)
    return folds


def test_fddb_ellipse_lists_are_read_with_their_images(tmp_path):
    folds = make_fddb(tmp_path)
    items = load_annotations(folds)  # the folder: every fold, in name order; originalPics found beside it
    assert [i.path for i in items] == [tmp_path / "originalPics" / f"{n}.jpg" for n in
                                       ("2002/07/19/big/img_1", "2002/07/19/big/img_2", "2003/01/01/big/img_3")]
    assert all(i.path.is_file() for i in items)
    assert [len(i.ellipses) for i in items] == [2, 1, 0]
    assert items[0].ellipses[1].tolist() == [20.5, 15.25, 0.3, 150.0, 50.0]
    # the box of a face is its ellipse's bounding box: a vertical major axis of 40 -> 60 wide, 80 tall
    assert np.allclose(items[0].boxes[0], [30, 20, 90, 100], atol=1e-5)
    one = load_annotations(folds / "FDDB-fold-02-ellipseList.txt", images_root=tmp_path / "originalPics")
    assert len(one) == 1 and one[0].path.is_file()


@pytest.mark.parametrize("text, match", [
    ("img_1\nx\n", r"line 2: expected the number of faces of 'img_1', got 'x'"),
    ("img_1\n2\n10 5 0 3 3 1\n", "lists 2 faces but the file ends after 1"),
    ("img_1\n1\n10 5 0 3\n", "line 3: expected 'major_radius minor_radius angle center_x center_y"),
    ("img_1\n1\n-10 5 0 3 3 1\n", "with positive radii"),
    ("img_1\n1\n10 nan 0 3 3 1\n", "with positive radii"),
    ("img_1\n0\nimg_1\n0\n", "listed twice"),
    ("img_1\n", "has no face count"),
])
def test_malformed_ellipse_lists_get_one_line_naming_the_file(tmp_path, text, match):
    path = tmp_path / "FDDB-fold-01-ellipseList.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as err:
        read_fddb(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# -- region overlap against an exact integral ----------------------------------------------------------
def _exact_area(ellipse, rect) -> float:
    """Area of ellipse ∩ axis-aligned rect, integrating the ellipse's vertical chords over x."""
    from scipy.integrate import quad

    a, b, t, cx, cy = ellipse
    x1, y1, x2, y2 = rect
    c, s = math.cos(t), math.sin(t)
    # (u/a)^2 + (v/b)^2 <= 1 with u = dx c + dy s, v = -dx s + dy c: a quadratic in dy for each dx
    qa = (s / a) ** 2 + (c / b) ** 2

    def chord(x: float) -> float:
        dx = x - cx
        qb = 2 * dx * (c * s / a ** 2 - s * c / b ** 2)
        qc = (dx * c / a) ** 2 + (dx * s / b) ** 2 - 1
        disc = qb * qb - 4 * qa * qc
        if disc <= 0:
            return 0.0
        lo, hi = (-qb - math.sqrt(disc)) / (2 * qa) + cy, (-qb + math.sqrt(disc)) / (2 * qa) + cy
        return max(0.0, min(hi, y2) - max(lo, y1))

    ex1, _, ex2, _ = ellipse_bounds(np.array(ellipse))
    lo, hi = max(x1, ex1), min(x2, ex2)
    return quad(chord, lo, hi, limit=200)[0] if hi > lo else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_ellipse_box_overlap_matches_the_exact_area_inside_the_image(seed):
    rng = np.random.default_rng(seed)
    size = (320, 240)
    image = (0.0, 0.0, *size)
    ellipse = (rng.uniform(25, 60), rng.uniform(18, 45), rng.uniform(-math.pi, math.pi),
               rng.uniform(-10, 330), rng.uniform(-10, 250))  # some reach past the image's edge
    ex1, ey1, ex2, ey2 = ellipse_bounds(np.array(ellipse))
    jitter = rng.uniform(-25, 25, 4)
    box = (ex1 + jitter[0], ey1 + jitter[1], ex2 + jitter[2], ey2 + jitter[3])
    clip = lambda r: (max(r[0], 0), max(r[1], 0), min(r[2], size[0]), min(r[3], size[1]))  # noqa: E731
    inter = _exact_area(ellipse, clip(box))
    e_area = _exact_area(ellipse, image)
    r = clip(box)
    r_area = max(0, r[2] - r[0]) * max(0, r[3] - r[1])
    exact = inter / (e_area + r_area - inter)
    ours = ellipse_box_overlaps(np.array([ellipse]), np.array([box]), size)[0, 0]
    assert abs(ours - exact) < 0.015, (ours, exact)  # pixel centres vs the exact regions


def test_overlap_of_an_axis_aligned_ellipse_with_its_bounding_box_is_pi_over_4():
    ellipse = np.array([[60.0, 40.0, 0.0, 100.0, 80.0]])
    assert ellipse_box_overlaps(ellipse, np.array([[40, 40, 160, 120]]), (200, 160))[0, 0] == pytest.approx(math.pi / 4, abs=5e-3)
    # a box clear of the ellipse, and none at all
    assert ellipse_box_overlaps(ellipse, np.array([[0, 0, 30, 30]]), (200, 160))[0, 0] == 0.0
    assert ellipse_box_overlaps(ellipse, np.zeros((0, 4)), (200, 160)).shape == (1, 0)


# -- FDDB's discrete ROC against a brute-force matching ------------------------------------------------
def _brute_force_roc(overlaps, scores, n_faces, min_overlap=0.5):
    """For every distinct score: every one-to-one assignment tried, the best summed overlap kept."""
    thresholds = sorted({float(s) for sc in scores for s in sc}, reverse=True)
    tps, fps = [], []
    for t in thresholds:
        tp = fp = 0
        for ov, sc in zip(overlaps, scores):
            keep = [j for j, s in enumerate(sc) if s >= t]
            best, best_tp = -1.0, 0
            m = ov.shape[0]
            for perm in itertools.permutations(keep + [None] * m, m):  # face i -> detection perm[i] (or none)
                total = sum(ov[i, j] for i, j in enumerate(perm) if j is not None)
                if total > best + 1e-12:
                    best, best_tp = total, sum(ov[i, j] > min_overlap for i, j in enumerate(perm) if j is not None)
            tp += best_tp
            fp += len(keep) - best_tp
        tps.append(tp)
        fps.append(fp)
    return thresholds, tps, fps


def test_fddb_matching_maximises_summed_overlap_not_greedy():
    # det 0 (best score) overlaps face 0 by 0.6 and face 1 by 0.52; det 1 only face 0 by 0.55: greedy
    # matching by score gives one hit, FDDB's maximal matching (0.52 + 0.55) two.
    ov = np.array([[0.6, 0.55], [0.52, 0.0]])
    roc = fddb_roc([ov], [np.array([0.9, 0.8])], n_faces=2)
    assert roc.thresholds.tolist() == [0.9, 0.8]
    assert roc.true_positives.tolist() == [1, 2] and roc.false_positives.tolist() == [0, 0]
    # an overlap of exactly 0.5 is not a hit (FDDB: score > 0.5)
    assert fddb_roc([np.array([[0.5]])], [np.array([1.0])], 1).true_positives.tolist() == [0]


@pytest.mark.parametrize("seed", range(8))
def test_fddb_roc_equals_brute_force_over_images(seed):
    rng = np.random.default_rng(seed)
    overlaps, scores, n_faces = [], [], 0
    for _ in range(4):
        m, n = rng.integers(0, 4), rng.integers(0, 5)
        ov = np.where(rng.random((m, n)) < 0.5, rng.uniform(0.3, 0.9, (m, n)), 0.0)
        overlaps.append(ov)
        scores.append(rng.choice([0.1, 0.2, 0.3, 0.5, 0.9], size=n))  # shared scores: ties across images
        n_faces += m
    roc = fddb_roc(overlaps, scores, n_faces)
    thresholds, tps, fps = _brute_force_roc(overlaps, scores, n_faces)
    assert roc.thresholds.tolist() == thresholds
    assert roc.true_positives.tolist() == tps and roc.false_positives.tolist() == fps


def test_recall_at_false_positives_and_average_precision():
    roc = ranked_roc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]), n_gt=4)
    assert roc.true_positives.tolist() == [1, 1, 2, 2] and roc.false_positives.tolist() == [0, 1, 1, 2]
    assert roc.recall_at_fp(0) == 0.25 and roc.recall_at_fp(1) == 0.5 and roc.recall_at_fp(100) == 0.5
    # precision envelope: 1.0 up to recall 0.25, 2/3 up to 0.5 -> AP = 0.25 + 0.25 * 2/3
    assert roc.average_precision() == pytest.approx(0.25 + 0.25 * 2 / 3)


def test_the_saved_corners_give_the_same_recall_at_every_false_positive_count():
    rng = np.random.default_rng(0)
    is_tp = rng.random(400) < 0.3
    roc = ranked_roc(np.sort(rng.random(400))[::-1], is_tp, n_gt=200)
    d = roc.to_dict()
    assert d["points"] == 400 and len(d["thresholds"]) <= int(is_tp.sum()) + 2
    saved = DiscreteROC(np.array(d["thresholds"]), np.array(d["true_positives"]), np.array(d["false_positives"]), 200)
    assert all(saved.recall_at_fp(f) == roc.recall_at_fp(f) for f in range(0, 300))


# -- the runner and the command -------------------------------------------------------------------------
class FixedBoxes:
    """Returns, per image size, boxes chosen for the FDDB folder above (score descending)."""

    BOXES = {(200, 120): ([[30, 20, 90, 100], [128, 32, 172, 68], [0, 0, 20, 20]], [0.9, 0.7, 0.4]),
             (100, 90): ([[60, 50, 99, 89]], [0.8])}

    def detect(self, images):
        out = []
        for im in images:
            boxes, scores = self.BOXES.get(im.size, ([], []))
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, image_size=im.size))
        return out


def test_evaluate_detector_scores_fddb_ellipses_by_region_overlap(tmp_path):
    items = read_fddb(make_fddb(tmp_path))
    res = evaluate_detector(FixedBoxes(), items)
    # img_1: both faces hit (the box around the first ellipse: pi/4; the second's box tight on it);
    # the corner box and img_2's off-centre box miss
    assert res.metrics.ground_truth == 3 and res.metrics.true_positives == 2 and res.metrics.false_positives == 2
    assert np.allclose(res.roc.thresholds, [0.9, 0.8, 0.7, 0.4])  # float32 scores
    assert res.roc.true_positives.tolist() == [1, 1, 2, 2] and res.roc.false_positives.tolist() == [0, 1, 1, 2]
    d = res.to_dict()
    assert d["recall_at_fp"] == {"false_positives": 1000, "recall": round(2 / 3, 6), "curve_ends_at_fp": 2,
                                 "reached": False}
    assert "FDDB" in d["scoring"] and d["roc"]["faces"] == 3


def test_benchmark_detection_runs_several_detectors_and_reports_them_side_by_side(tmp_path):
    folds = make_fddb(tmp_path)

    def factory(arg=None, *, shift: float = 0.0):
        det = FixedBoxes()
        det.BOXES = {k: ([[v + shift for v in b] for b in boxes], s) for k, (boxes, s) in FixedBoxes.BOXES.items()}
        return det

    runner = CliRunner()
    with detectors.temporary("fixed", factory):
        one = runner.invoke(app, ["benchmark", "detection", "-a", str(folds), "-d", "fixed", "-O", "shift=0.5",
                                  "-f", "json", "-q"])
        assert one.exit_code == 0, one.output
        doc = json.loads(one.stdout)
        assert doc["spec"] == "fixed -O shift=0.5" and doc["true_positives"] == 2 and doc["roc"]["points"] == 4
        assert doc["roc"]["true_positives"] == [1, 2, 2] and doc["roc"]["false_positives"] == [0, 1, 2]  # corners
        (tmp_path / "earlier.json").write_text(one.stdout)
        table = runner.invoke(app, ["benchmark", "detection", "-a", str(folds), "-d", "fixed", "-d", "fixed:b",
                                    "-q", "--result", str(tmp_path / "earlier.json"), "--report", str(tmp_path / "rep")])
        assert table.exit_code == 0, table.output
        # the whole spec with its options is printed for every detector run
        assert "fixed on " in table.stdout and "fixed:b on " in table.stdout and "recall at 1,000 FP 0.6667" in table.stdout
        page = (tmp_path / "rep" / "report.html").read_text()
        assert page.count("<code>fixed") >= 6 and "fixed -O shift=0.5" in page  # summary + provenance rows
        assert (tmp_path / "rep" / "figures" / "roc.png").stat().st_size > 1000
        assert len(json.loads((tmp_path / "rep" / "report.json").read_text())["results"]) == 3
        # a report from earlier results alone: nothing is detected, no annotations needed
        only = runner.invoke(app, ["benchmark", "detection", "--result", str(tmp_path / "earlier.json"),
                                   "--report", str(tmp_path / "rep2"), "-f", "json"])
        assert only.exit_code == 0 and json.loads(only.stdout) == [] and (tmp_path / "rep2" / "report.html").is_file()
        several = runner.invoke(app, ["benchmark", "detection", "-a", str(folds), "-d", "fixed", "-d", "fixed",
                                      "-f", "json", "-q"])
        assert [r["spec"] for r in json.loads(several.stdout)] == ["fixed", "fixed"]
        assert runner.invoke(app, ["benchmark", "detection", "-d", "fixed"]).exit_code == 2  # no --annotations
    # a file that is not a result: one line on stderr, exit 1, nothing written
    (tmp_path / "bad.json").write_text('{"x": 1}')
    bad = subprocess.run([sys.executable, "-m", "verikit.cli.main", "benchmark", "detection", "--result",
                          str(tmp_path / "bad.json"), "--report", str(tmp_path / "rep3")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "is not a result of `verikit benchmark detection" in bad.stderr and not (tmp_path / "rep3").exists()


def test_real_fddb_folds_02_to_10_are_read_as_the_data_readme_counts(shared_data):
    folds = shared_data / "fddb" / "FDDB-folds"
    if not folds.is_dir():
        pytest.skip(f"{folds} not found")
    items = load_annotations(folds)
    assert len(items) == 2555 and sum(len(i.ellipses) for i in items) == 4656
    assert all(i.path.is_file() for i in items[::50])
    # Haar on a few real photos, scored the FDDB way: a consistent, monotone ROC
    res = evaluate_detector(detectors.create("haar", eyes=False), items[:12])
    assert res.scoring.startswith("FDDB") and res.metrics.ground_truth == sum(len(i.ellipses) for i in items[:12])
    assert (np.diff(res.roc.true_positives) >= 0).all() and res.metrics.true_positives >= 6
