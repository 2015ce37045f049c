"""Evaluation on real scores (ORL faces embedded by a tiny random-weight model) against
scikit-learn, the benchmark/report CLI end to end, and the HTML page in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from verikit.evaluate.evaluation import evaluate_verification, fold_accuracy
from verikit.evaluate.metrics import eer, roc, tar_at_far
from verikit.evaluate.summary import roc_summary

FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
runner = CliRunner()


# --------------------------------------------------------------------------- real scores


@pytest.fixture(scope="module")
def orl_scores(orl, tiny_model_dir):
    """All-pairs genuine/impostor cosine scores of the 400 ORL images, with subjects."""
    from verikit.evaluate.pairs import all_pairs_scores
    from verikit.io import scan_identity_folders
    from verikit.models.embedder import Embedder
    from verikit.models.inference import embed_files

    scan = scan_identity_folders(orl)
    out = embed_files(Embedder.load(tiny_model_dir), [p for _, p in scan.items], num_workers=0)
    labels = [n for n, _ in scan.items]
    codes = np.unique(labels, return_inverse=True)[1]
    g, i = all_pairs_scores(out.embeddings, labels)
    a, b = np.triu_indices(len(labels), 1)
    same = codes[a] == codes[b]
    return g, i, codes[a][same], (codes[a][~same], codes[b][~same])


def test_real_scores_match_sklearn(orl_scores) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    g, i, _, _ = orl_scores
    assert g.size == 40 * 45 and i.size == 400 * 399 // 2 - g.size
    y = np.r_[np.ones(g.size), np.zeros(i.size)]
    s = np.r_[g, i]
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    curve = roc(g, i)
    # the same curve, point by point (sklearn's first threshold is +inf too)
    assert np.array_equal(curve.fmr, fpr) and np.allclose(curve.tmr, tpr, rtol=0, atol=1e-12)
    assert np.array_equal(curve.thresholds[1:], thr[1:].astype(curve.thresholds.dtype))
    summary = roc_summary(g, i, FARS)
    assert summary.auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    # TAR at FAR = TPR at the largest FPR <= FAR, read off sklearn's curve
    expected = [tpr[np.searchsorted(fpr, f, side="right") - 1] for f in FARS]
    assert np.allclose(summary.tars, expected, rtol=0, atol=1e-12)
    assert np.array_equal(summary.tars, tar_at_far(g, i, FARS))
    # EER: the nearest operating point on sklearn's curve
    k = np.argmin(np.abs(fpr[1:] - (1 - tpr[1:]))) + 1
    assert summary.eer == pytest.approx((fpr[k] + 1 - tpr[k]) / 2, abs=1e-12)
    assert (summary.eer, summary.eer_threshold) == eer(g, i)
    # the thinned curve consists of exact points of the full curve
    for f, t in zip(summary.curve_fmr, summary.curve_tmr):
        assert np.any((curve.fmr == f) & (curve.tmr == t))


def test_evaluate_verification_on_real_scores(orl_scores) -> None:
    g, i, sg, si = orl_scores
    v = evaluate_verification(g, i, sg, si, fars=FARS, n_boot=100, seed=1)
    json.dumps(v)  # JSON-ready
    assert v["n_subjects"] == 40 and v["n_genuine"] == g.size
    floor = 30 / i.size
    for row, tar in zip(v["tar_at_far"], tar_at_far(g, i, FARS)):
        assert row["tar"] == tar
        assert row["supported"] == (row["far"] >= floor)
        assert row["measured_far"] <= row["far"]
        lo, hi = row["tar_interval"]
        assert lo <= row["tar"] <= hi
        blo, bhi = row["tar_bootstrap_ci"]
        assert 0 <= blo <= bhi <= 1
    assert [r["supported"] for r in v["tar_at_far"]] == [True, True, True, False, False, False]
    # subject intervals are wider than the pair-independent Wilson ones at the supported FARs
    wider = [r["tar_bootstrap_ci"][1] - r["tar_bootstrap_ci"][0] > r["tar_interval"][1] - r["tar_interval"][0]
             for r in v["tar_at_far"][:2]]
    assert all(wider)
    assert v["eer"]["bootstrap_ci"][0] <= v["eer"]["value"] <= v["eer"]["bootstrap_ci"][1]
    again = evaluate_verification(g, i, sg, si, fars=FARS, n_boot=100, seed=1)
    assert again["tar_at_far"] == v["tar_at_far"]  # seeded


def test_fold_accuracy_against_brute_force(orl_scores) -> None:
    g, i, _, _ = orl_scores
    rng = np.random.default_rng(0)
    s = np.r_[g[:300], rng.choice(i, 300, replace=False)].astype(np.float64)
    y = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    fold = rng.permutation(np.arange(600) % 10)
    r = fold_accuracy(s, y, fold)
    for k in range(10):
        train, test = fold != k, fold == k
        cands = np.r_[np.unique(s[train]), np.inf]
        best = max(np.mean((s[train] >= c) == y[train]) for c in cands)
        t = r["threshold"][k]
        assert np.mean((s[train] >= t) == y[train]) == best
        assert r["accuracy"][k] == np.mean((s[test] >= t) == y[test])
    acc = np.array(r["accuracy"])
    assert r["mean"] == pytest.approx(acc.mean()) and r["std_error"] == pytest.approx(acc.std(ddof=1) / 10 ** 0.5)


# --------------------------------------------------------------------------- CLI end to end


def _cli(*args: str):
    from verikit.cli.main import app

    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, orl) -> Path:
    """ORL s1..s8 (test set) and s9..s12 (cohort), copied so mtimes are ours."""
    root = tmp_path_factory.mktemp("orl8")
    for k in range(1, 13):
        shutil.copytree(orl / f"s{k}", root / ("test" if k <= 8 else "cohort") / f"s{k}")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, small_set, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("run") / "a"
    r = _cli("benchmark", "folder", small_set / "test", "--model", tiny_model_dir, "--report", out,
             "--cache", out.parent / "cache", "--bootstrap", "50", "--name", "tiny-a", "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    return out


def test_benchmark_folder_writes_report_and_cache_reruns_without_embedding(folder_run, small_set, tiny_model_dir,
                                                                            monkeypatch) -> None:
    doc = json.loads((folder_run / "result.json").read_text())
    assert doc["schema_version"] == 1 and doc["kind"] == "verikit.benchmark" and doc["name"] == "tiny-a"
    assert doc["protocol"]["pairs"] == 80 * 79 // 2 and doc["embedding"]["from_cache"] == 0
    assert doc["verification"]["n_subjects"] == 8
    for stem in ("roc", "det", "scores"):
        for ext in ("png", "svg"):
            assert (folder_run / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    html = (folder_run / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html and "http" not in html.split("<body>")[1]
    # re-run from the cache: embed_files must not be called
    import verikit.models.inference as inference

    def boom(*a, **k):
        raise AssertionError("embedded although every file was cached")

    monkeypatch.setattr(inference, "embed_files", boom)
    r = _cli("benchmark", "folder", small_set / "test", "--model", tiny_model_dir, "--cache",
             folder_run.parent / "cache", "--bootstrap", "50", "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["embedding"]["from_cache"] == 80
    assert again["verification"]["tar_at_far"] == doc["verification"]["tar_at_far"]


def test_benchmark_pairs_csv_and_normalisation(tmp_path, small_set, tiny_model_dir) -> None:
    root = small_set / "test"
    lines = ["path_a,path_b,label"]
    for s in range(1, 9):
        lines += [f"s{s}/1.pgm,s{s}/{k}.pgm,same" for k in range(2, 6)]
        lines += [f"s{s}/1.pgm,s{(s % 8) + 1}/{k}.pgm,different" for k in range(2, 6)]
    csv = tmp_path / "pairs.csv"
    csv.write_text("\n".join(lines) + "\n")
    r = _cli("benchmark", "pairs", "--pairs", csv, "--root", root, "--model", tiny_model_dir,
             "--bootstrap", "0", "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    raw = json.loads(r.stdout)
    assert raw["protocol"]["genuine"] == 32 and raw["protocol"]["impostor"] == 32
    assert raw["verification"]["tar_at_far"][0]["tar_bootstrap_ci"] is None
    r = _cli("benchmark", "pairs", "--pairs", csv, "--root", root, "--model", tiny_model_dir, "--norm", "as",
             "--cohort", small_set / "cohort", "--top-k", "10", "--bootstrap", "0", "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    normed = json.loads(r.stdout)
    assert normed["normalization"] == {"method": "as", "cohort_size": 40, "top_k": 10}
    assert normed["verification"]["roc"] != raw["verification"]["roc"]
    from verikit.errors import DataError

    with pytest.raises(DataError, match="--norm needs --cohort"):
        _cli("benchmark", "pairs", "--pairs", csv, "--root", root, "--model", tiny_model_dir, "--norm", "z")


def _lfw_tree(tmp_path: Path, orl: Path) -> tuple[Path, Path]:
    """An LFW-layout copy of ORL s1..s20 and a View 2 pairs.txt (10 folds x 3 + 3 pairs)."""
    root = tmp_path / "lfw"
    for s in range(1, 21):
        (root / f"P{s}").mkdir(parents=True)
        for k in range(1, 11):
            shutil.copy(orl / f"s{s}" / f"{k}.pgm", root / f"P{s}" / f"P{s}_{k:04d}.jpg")
    rows = ["10\t3"]
    for f in range(10):
        a, b = 2 * f + 1, 2 * f + 2
        rows += [f"P{a}\t1\t{k}" for k in (2, 3, 4)]
        rows += [f"P{a}\t{k}\tP{b}\t{k}" for k in (1, 2, 3)]
    (tmp_path / "pairs.txt").write_text("\n".join(rows) + "\n")
    return root, tmp_path / "pairs.txt"


def test_benchmark_lfw_ten_folds(tmp_path, orl, tiny_model_dir) -> None:
    root, pairs = _lfw_tree(tmp_path, orl)
    r = _cli("benchmark", "lfw", "--pairs", pairs, "--root", root, "--model", tiny_model_dir, "--bootstrap", "20",
             "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    f = doc["folds"]
    assert f["folds"] == 10 and len(f["accuracy"]) == 10
    assert all(a * 6 == round(a * 6) for a in f["accuracy"])  # 6 pairs per fold
    assert f["mean"] == pytest.approx(np.mean(f["accuracy"]))
    r = _cli("benchmark", "lfw", "--pairs", pairs, "--root", root, "--model", tiny_model_dir, "-q")
    assert r.exit_code == 0 and "10-fold accuracy" in r.stdout


def test_benchmark_identify(tmp_path, small_set, tiny_model_dir) -> None:
    root = small_set / "test"
    (tmp_path / "g.csv").write_text("path,identity\n" + "".join(f"s{s}/1.pgm,s{s}\n" for s in range(1, 7)))
    (tmp_path / "p.csv").write_text("".join(f"s{s}/{k}.pgm,s{s}\n" for s in range(1, 9) for k in (2, 3)))
    r = _cli("benchmark", "identify", "--gallery", tmp_path / "g.csv", "--probes", tmp_path / "p.csv", "--root", root,
             "--model", tiny_model_dir, "--report", tmp_path / "rep", "--format", "json", "-q")
    assert r.exit_code == 0, r.output
    ident = json.loads(r.stdout)["identification"]
    assert ident["n_mated"] == 12 and ident["n_non_mated"] == 4 and len(ident["cmc"]) == 6
    assert ident["cmc"][-1] == 1.0 and (tmp_path / "rep" / "figures" / "cmc.svg").is_file()
    # One template per identity: each probe's AP is 1/rank, so mAP is the mean reciprocal rank.
    steps = np.diff(np.r_[0.0, ident["cmc"]])
    assert ident["map"] == pytest.approx(float(np.sum(steps / np.arange(1, len(steps) + 1))), abs=1e-9)


def test_report_combines_runs_with_a_paired_test(tmp_path, folder_run, small_set) -> None:
    import torch

    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    torch.manual_seed(1)
    other = tmp_path / "model-b"
    Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval().save(other)
    r = _cli("benchmark", "folder", small_set / "test", "--model", other, "--report", tmp_path / "b",
             "--bootstrap", "20", "--name", "tiny-b", "-q")
    assert r.exit_code == 0, r.output
    r = _cli("report", folder_run / "result.json", tmp_path / "b", "--out", tmp_path / "both", "--far", "0.1",
             "--bootstrap", "100", "--format", "json")
    assert r.exit_code == 0, r.output
    comp = json.loads(r.stdout)["comparisons"]
    assert len(comp) == 1 and comp[0]["skipped"] is None
    assert comp[0]["a"] == "tiny-b" and comp[0]["b"] == "tiny-a" and 0 <= comp[0]["p_value"] <= 1
    assert comp[0]["ci"][0] <= comp[0]["difference"] <= comp[0]["ci"][1]
    doc = json.loads((tmp_path / "both" / "report.json").read_text())
    assert doc["schema_version"] == 1 and [x["name"] for x in doc["runs"]] == ["tiny-a", "tiny-b"]
    html = (tmp_path / "both" / "report.html").read_text()
    assert "tiny-a vs" not in html and "tiny-b vs tiny-a" in html


def test_report_refuses_other_files(tmp_path, folder_run) -> None:
    bad = tmp_path / "bad.json"
    doc = json.loads((folder_run / "result.json").read_text())
    bad.write_text(json.dumps({**doc, "schema_version": 99}))
    env = {**os.environ, "VERIKIT_DEBUG": ""}
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "report", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "field 'schema_version' must be 1, got 99" in r.stderr
    bad.write_text("{not json")
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "report", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "not valid JSON" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- the page in a browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(tmp_path, folder_run) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (CI installs it in .ci/run)")
    page = (folder_run / "report.html").resolve()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    r = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert dom.count("<table>") >= 3 and dom.count("<img") == 3 and "TAR at FAR" in dom
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    shot = tmp_path / "page.png"
    r = subprocess.run(flags + ["--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 20_000
    assert not [line for line in r.stderr.splitlines() if "CONSOLE" in line]
