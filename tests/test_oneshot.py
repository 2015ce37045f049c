"""One-shot runs in Lake's Omniglot layout: making them, reading them, scoring them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from verikit.evaluate.oneshot import (LABELS_FILE, SOURCE_FILE, make_runs, pixel_embed_fn, read_run, read_runs,
                                       score_runs)
from verikit.errors import DataError


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def _background(root: Path, alphabets: dict[str, int], drawers: int = 4) -> Path:
    """``root/<alphabet>/characterNN/<id>_<drawer>.png`` with distinct pixel values per image."""
    k = 0
    for alphabet, n_chars in alphabets.items():
        for c in range(1, n_chars + 1):
            for d in range(1, drawers + 1):
                k += 1
                _png(root / alphabet / f"character{c:02d}" / f"{k:04d}_{d:02d}.png", k % 256)
    return root


def _run(root: Path, way: int, lines: list[str] | None = None) -> Path:
    for i in range(1, way + 1):
        _png(root / "training" / f"class{i:02d}.png", i)
        _png(root / "test" / f"item{i:02d}.png", i)
    if lines is None:
        lines = [f"test/item{i:02d}.png training/class{i:02d}.png" for i in range(1, way + 1)]
    (root / LABELS_FILE).write_text("\n".join(lines) + "\n")
    return root


# -- make_runs -------------------------------------------------------------------------------------
def test_make_runs_layout_drawers_alphabet_and_determinism(tmp_path):
    bg = _background(tmp_path / "bg", {"A": 6, "B": 5, "Small": 3})
    runs = make_runs(bg, ["A", "B", "Small"], 6, tmp_path / "runs", way=5, seed=3)
    assert [r.name for r in runs] == [f"run{i:02d}" for i in range(1, 7)]
    used = []
    for run in runs:
        assert sorted(p.name for p in (run / "training").iterdir()) == [f"class{i:02d}.png" for i in range(1, 6)]
        assert sorted(p.name for p in (run / "test").iterdir()) == [f"item{i:02d}.png" for i in range(1, 6)]
        src = json.loads((run / SOURCE_FILE).read_text())
        assert src["alphabet"] in ("A", "B")  # "Small" has fewer than `way` characters
        assert src["example_drawer"] != src["query_drawer"]
        assert len(set(src["characters"])) == 5
        used.append(src["alphabet"])
        parsed = read_run(run)
        for q, a in zip(parsed.queries, parsed.answers):  # each query's answer is the same character
            char = src["characters"][int(parsed.examples[a].stem[5:]) - 1]
            expected = bg / src["alphabet"] / char
            drawer_q = [p for p in expected.iterdir() if p.stem.endswith("_" + src["query_drawer"])][0]
            assert q.read_bytes() == drawer_q.read_bytes()
    assert used.count("A") == used.count("B") == 3  # round robin over eligible alphabets
    again = make_runs(bg, ["A", "B", "Small"], 6, tmp_path / "again", way=5, seed=3)
    for a, b in zip(runs, again):
        assert (a / LABELS_FILE).read_text() == (b / LABELS_FILE).read_text()
        assert (a / SOURCE_FILE).read_text() == (b / SOURCE_FILE).read_text()
    other = make_runs(bg, ["A", "B"], 6, tmp_path / "other", way=5, seed=4)
    assert any((a / SOURCE_FILE).read_text() != (b / SOURCE_FILE).read_text() for a, b in zip(runs, other))


def test_make_runs_refuses_when_no_alphabet_is_big_enough(tmp_path):
    bg = _background(tmp_path / "bg", {"A": 3})
    with pytest.raises(DataError, match="has 5 characters"):
        make_runs(bg, ["A"], 2, tmp_path / "runs", way=5)
    with pytest.raises(DataError, match="alphabet folder not found"):
        make_runs(bg, ["Nope"], 2, tmp_path / "runs", way=2)


# -- read_runs -------------------------------------------------------------------------------------
def test_read_runs_official_prefixed_paths_and_folder_of_runs(tmp_path):
    _run(tmp_path / "all" / "run01", 3)
    _run(tmp_path / "all" / "run02", 3, [f"run02/test/item{i:02d}.png run02/training/class{4 - i:02d}.png"
                                         for i in range(1, 4)])
    runs = read_runs(tmp_path / "all")
    assert [r.name for r in runs] == ["run01", "run02"]
    assert runs[0].answers == (0, 1, 2) and runs[1].answers == (2, 1, 0)
    assert read_runs(tmp_path / "all" / "run02")[0].answers == (2, 1, 0)


@pytest.mark.parametrize("lines, message", [
    (["test/item01.png"], r"class_labels.txt:1: expected"),
    (["test/item01.png training/class01.png", "test/item09.png training/class02.png"],
     r"class_labels.txt:2: file .*item09"),
    (["test/item01.png training/class01.png", "test/item01.png training/class02.png"], r":2: query .* listed twice"),
    (["training/class01.png training/class02.png"], r":1: query .* itself one of the one-shot examples"),
    (["test/item01.png test/item02.png"], r":1: 'test/item02.png' is not an image in"),
    ([], r"lists no queries"),
])
def test_read_run_errors_are_one_line_and_name_the_line(tmp_path, lines, message):
    run = _run(tmp_path / "run01", 3, lines)
    with pytest.raises(DataError, match=message) as exc:
        read_run(run)
    assert "\n" not in str(exc.value)


def test_read_runs_missing_pieces(tmp_path):
    with pytest.raises(DataError, match="runs folder not found"):
        read_runs(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no one-shot runs under"):
        read_runs(tmp_path / "empty")
    run = _run(tmp_path / "r", 2)
    for p in (run / "training").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="holds 0 image"):
        read_run(run)


# -- score_runs ------------------------------------------------------------------------------------
def test_score_runs_exact_accuracy_on_hand_made_embeddings(tmp_path):
    run_a = read_run(_run(tmp_path / "run01", 4))
    run_b = read_run(_run(tmp_path / "run02", 4))
    examples = np.eye(4)
    table = {}
    for k, p in enumerate(run_a.examples):
        table[p] = examples[k]
    for k, p in enumerate(run_b.examples):
        table[p] = examples[k]
    # run01: 3 of 4 queries nearest their own example (item04 is nearest class01) -> 0.75
    for k, p in enumerate(run_a.queries):
        table[p] = examples[k] + 0.1 if k < 3 else examples[0] + 0.2 * examples[3]
    # run02: all 4 right -> 1.0
    for k, p in enumerate(run_b.queries):
        table[p] = examples[k] * 3 + 0.05
    res = score_runs(lambda paths: np.stack([table[p] for p in paths]), [run_a, run_b], n_boot=200, seed=1)
    assert res.accuracy_per_run == (0.75, 1.0)
    assert res.mean_accuracy == pytest.approx(0.875)
    assert (res.correct, res.trials) == (7, 8)
    lo, hi = res.bootstrap_ci
    assert 0.75 <= lo <= 0.875 <= hi <= 1.0
    assert res.to_dict()["mean_error"] == pytest.approx(0.125)
    # Under L2 the scale of run02's queries matters: its queries (3*e_k + 0.05) stay nearest their own
    # example, but run01's item04 (e_1 + 0.2 e_4) is still nearest class01.
    assert score_runs(lambda ps: np.stack([table[p] for p in ps]), [run_a], similarity="l2").mean_accuracy == 0.75


def test_score_runs_rejects_bad_embeddings(tmp_path):
    run = read_run(_run(tmp_path / "run01", 3))
    with pytest.raises(DataError, match="embed_fn returned shape"):
        score_runs(lambda paths: np.zeros((1, 4)), [run])
    with pytest.raises(DataError, match="no runs"):
        score_runs(lambda paths: np.zeros((0, 4)), [])


# -- augmentation for handwriting -------------------------------------------------------------------
def test_affine_augmentation_keeps_white_paper_white():
    import torch

    from verikit.structures import InputSpec
    from verikit.train.data import augmentation

    torch.manual_seed(0)
    (op,) = augmentation(InputSpec(channels=1, size=(32, 32)), "affine")
    img = torch.full((1, 32, 32), 255, dtype=torch.uint8)
    img[:, 12:20, 14:18] = 0
    outs = [op(img) for _ in range(10)]
    assert all(o.shape == img.shape and o.dtype == torch.uint8 for o in outs)
    assert all(int(o[0, 0, 0]) == 255 and int(o[0, -1, -1]) == 255 for o in outs)  # corners filled white
    assert any(not torch.equal(o, img) for o in outs)


# -- real Omniglot, end to end -----------------------------------------------------------------------
def test_end_to_end_on_real_omniglot(shared_data, tmp_path):
    bg = shared_data / "omniglot" / "images_background"
    if not bg.is_dir():
        pytest.skip(f"Omniglot background set not found at {bg}")
    make_runs(bg, ["Latin", "Greek"], 2, tmp_path, way=5, seed=0)
    runs = read_runs(tmp_path)
    assert len(runs) == 2 and all(r.way == 5 and len(r.queries) == 5 for r in runs)
    res = score_runs(pixel_embed_fn(16), runs, n_boot=50)
    assert len(res.accuracy_per_run) == 2 and 0.0 <= res.mean_accuracy <= 1.0

    from typer.testing import CliRunner

    from verikit.cli.oneshot import oneshot
    import typer

    app = typer.Typer()
    app.command()(oneshot)
    out = CliRunner().invoke(app, [str(tmp_path), "--pixels", "16", "--format", "json", "--bootstrap", "50"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["runs"] == 2 and data["mean_accuracy"] == pytest.approx(res.mean_accuracy)
