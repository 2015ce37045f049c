"""The verikit command line, run as a user runs it (a subprocess), on synthetic images and a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_pattern_image


def run(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "verikit.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=300)


def ok(*args, **kw) -> subprocess.CompletedProcess:
    r = run(*args, **kw)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr}"
    return r


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, synthetic_faces, tiny_model_dir):
    """A gallery with id0..id3 enrolled from the synthetic folder (images 0-2; image 3 is the probe)."""
    root = tmp_path_factory.mktemp("cli")
    enroll_dir = root / "enroll"
    for ident in ["id0", "id1", "id2", "id3"]:
        for k in range(3):
            dst = enroll_dir / ident / f"{k}.png"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes((synthetic_faces / ident / f"{k}.png").read_bytes())
    gallery = root / "gallery"
    r = ok("enroll", "--from-folder", enroll_dir, "--model", tiny_model_dir, "--gallery", gallery, "--format", "json")
    return gallery, json.loads(r.stdout)


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys\nfrom verikit.cli.main import main\nsys.argv = ['verikit', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().endswith("NO-TORCH") and "enroll" in r.stdout


def test_every_command_has_help_with_an_example():
    for cmd in ["enroll", "verify", "search", "train", "calibrate", "demo"]:
        r = ok(cmd, "--help")
        assert "Usage" in r.stdout
    assert "Example" in ok("verify", "--help").stdout


def test_enroll_from_folder_reports_identities(enrolled):
    _, report = enrolled
    assert report["enrolled"] == {"id0": 3, "id1": 3, "id2": 3, "id3": 3}
    assert report["gallery"] == {"path": report["gallery"]["path"], "identities": 4, "templates": 12}


def test_gallery_list_show_info(enrolled, tiny_model_dir):
    gallery, _ = enrolled
    people = json.loads(ok("gallery", "list", "-g", gallery, "-f", "json").stdout)
    assert [(p["name"], p["templates"]) for p in people] == [("id0", 3), ("id1", 3), ("id2", 3), ("id3", 3)]
    shown = json.loads(ok("gallery", "show", "id1", "-g", gallery, "-f", "json").stdout)
    assert len(shown["sources"]) == 3 and shown["sources"][0].endswith("0.png")
    info = json.loads(ok("gallery", "info", "-g", gallery, "-f", "json").stdout)
    assert info["identities"] == 4 and info["indexed_vectors"] == 12 and info["index"] == "faiss:Flat"
    assert info["model_path"] == str(Path(tiny_model_dir).resolve())


def test_verify_prints_score_threshold_decision(enrolled, synthetic_faces):
    gallery, _ = enrolled
    probe = synthetic_faces / "id2" / "3.png"
    d = json.loads(ok("verify", probe, "--claim", "id2", "-g", gallery, "-t", "-1", "-f", "json").stdout)
    assert set(d) == {"probe", "claim", "score", "threshold", "match"} and d["match"] is True
    assert -1 <= d["score"] <= 1
    # The model came from the gallery's record; --exit-code turns "no match" into status 3. A
    # threshold of 1 (the top of the cosine range) matches only an identical image.
    r = run("verify", probe, "--claim", "id2", "-g", gallery, "-t", "1", "--exit-code")
    assert r.returncode == 3 and "NO MATCH" in r.stdout
    assert run("verify", probe, "--claim", "id2", "-g", gallery, "-t", "1").returncode == 0


def test_search_ranks_and_says_unknown_below_threshold(enrolled, synthetic_faces):
    gallery, _ = enrolled
    probes = [synthetic_faces / f"id{i}" / "3.png" for i in range(4)]
    res = json.loads(ok("search", *probes, "-k", "2", "-g", gallery, "-t", "-1", "-f", "json").stdout)
    assert len(res) == 4 and all(len(r["hits"]) == 2 for r in res)
    assert all(r["identity"] == r["hits"][0]["identity"] for r in res)
    assert all(r["hits"][0]["score"] >= r["hits"][1]["score"] for r in res)
    high = json.loads(ok("search", probes[0], "-g", gallery, "-t", "1", "-f", "json").stdout)
    assert high[0]["identity"] is None
    assert run("search", probes[0], "-g", gallery, "-t", "1", "--exit-code").returncode == 3
    table = ok("search", probes[0], "-g", gallery, "-t", "1").stdout
    assert "unknown" in table


def test_calibrate_then_verify_uses_the_calibrated_threshold(tmp_path, synthetic_faces, tiny_model_dir, enrolled):
    model = tmp_path / "model"
    model.mkdir()
    for f in tiny_model_dir.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    r = ok("calibrate", synthetic_faces, "--model", model, "--target-fmr", "0.1", "-f", "json")
    cal = json.loads(r.stdout)
    assert cal["n_genuine"] == 4 * 6 and cal["n_impostor"] == 6 * 16 and cal["measured_fmr"] <= 0.1
    assert "cannot support FMR" in r.stderr  # 96 impostor pairs are too few for 0.1: said, not hidden
    gallery = tmp_path / "g"
    ok("enroll", "id1", synthetic_faces / "id1" / "0.png", "--model", model, "--gallery", gallery)
    d = json.loads(ok("verify", synthetic_faces / "id1" / "3.png", "--claim", "id1", "-g", gallery, "-f", "json").stdout)
    assert d["threshold"] == pytest.approx(cal["threshold"], abs=1e-6) and "estimated_fmr" in d


def test_rename_remove_and_audit(tmp_path, synthetic_faces, tiny_model_dir):
    g = tmp_path / "g"
    ok("enroll", "a", synthetic_faces / "id0" / "0.png", "-m", tiny_model_dir, "-g", g)
    ok("enroll", "b", synthetic_faces / "id1" / "0.png", "-m", tiny_model_dir, "-g", g)
    ok("gallery", "rename", "a", "alice", "-g", g)
    ok("gallery", "remove", "b", "--yes", "-g", g)
    assert [p["name"] for p in json.loads(ok("gallery", "list", "-g", g, "-f", "json").stdout)] == ["alice"]
    log = json.loads(ok("gallery", "audit", "-g", g, "-f", "json").stdout)
    assert [e["action"] for e in log][:3] == ["remove", "rename", "enroll"]
    r = run("gallery", "remove", "alice", "-g", g, env={}, cwd=None)  # no --yes and no terminal: refuses
    assert r.returncode != 0
    assert "alice" in ok("gallery", "list", "-g", g).stdout


def test_bad_inputs_fail_with_one_line_and_change_nothing(tmp_path, enrolled, synthetic_faces, tiny_model_dir):
    gallery, _ = enrolled
    before = ok("gallery", "info", "-g", gallery, "-f", "json").stdout
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    one_line_error(run("verify", corrupt, "--claim", "id0", "-g", gallery, "-t", "0.5"), "broken.jpg")
    one_line_error(run("verify", text, "--claim", "id0", "-g", gallery, "-t", "0.5"), "notes.txt")
    one_line_error(run("search", tmp_path / "nope.png", "-g", gallery), "nope.png", "no such file")
    one_line_error(run("verify", synthetic_faces / "id0" / "3.png", "--claim", "ghost", "-g", gallery, "-t", "0.5"),
                   "'ghost' is not enrolled")
    one_line_error(run("verify", synthetic_faces / "id0" / "3.png", "--claim", "id0", "-g", gallery),
                   "no threshold", "verikit calibrate")
    one_line_error(run("gallery", "list", "-g", tmp_path / "no-gallery"), "no gallery at")
    one_line_error(run("enroll", "x", corrupt, "-m", tiny_model_dir, "-g", gallery), "nothing enrolled", "broken.jpg")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run("enroll", "--from-folder", empty, "-m", tiny_model_dir, "-g", gallery), "no images found")
    assert ok("gallery", "info", "-g", gallery, "-f", "json").stdout == before
    # VERIKIT_DEBUG=1 shows the traceback for the same error.
    r = run("verify", corrupt, "--claim", "id0", "-g", gallery, "-t", "0.5", env={"VERIKIT_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_batch_enroll_skips_bad_files_and_says_so_in_the_exit_status(tmp_path, synthetic_faces, tiny_model_dir):
    folder = tmp_path / "people"
    make_pattern_image(folder / "p1" / "a.png", 1, 0)
    make_pattern_image(folder / "p2" / "a.png", 2, 0)
    (folder / "p2" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    r = run("enroll", "--from-folder", folder, "-m", tiny_model_dir, "-g", tmp_path / "g", "-f", "json")
    assert r.returncode == 4, r.stderr
    report = json.loads(r.stdout)
    assert report["enrolled"] == {"p1": 1, "p2": 1}
    assert report["failures"][0]["path"].endswith("b.png") and "b.png" in r.stderr


def test_a_gallery_refuses_a_different_model(tmp_path, enrolled, synthetic_faces):
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    other = tmp_path / "other-model"
    Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval().save(other)
    gallery, _ = enrolled
    one_line_error(run("search", synthetic_faces / "id0" / "3.png", "-g", gallery, "-m", other),
                   "was enrolled with model", "use the model it was built with")
    one_line_error(run("enroll", "z", synthetic_faces / "id0" / "3.png", "-g", gallery, "-m", other),
                   "was enrolled with model")


def test_plugins_lists_the_builtins():
    rows = json.loads(ok("plugins", "-f", "json").stdout)
    names = {(r["kind"], r["name"]) for r in rows}
    assert ("backbone", "timm") in names and ("index_backend", "faiss") in names


def test_calibrate_with_score_normalisation_then_verify_and_search_normalise_too(tmp_path, synthetic_faces,
                                                                                tiny_model_dir):
    from verikit.calibrate.cohort import Cohort
    from verikit.index.gallery import Gallery
    from verikit.io import load_image
    from verikit.models.embedder import Embedder
    from verikit.models.inference import embed_images

    model = tmp_path / "model"
    model.mkdir()
    for f in tiny_model_dir.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    cohort_dir = tmp_path / "cohort"
    for i in range(10, 14):
        for k in range(3):
            make_pattern_image(cohort_dir / f"c{i}" / f"{k}.png", i, k)
    cal = json.loads(ok("calibrate", synthetic_faces, "-m", model, "--target-fmr", "0.2", "--norm", "s",
                        "--cohort", cohort_dir, "-f", "json").stdout)
    assert cal["normalization"] == {"method": "s", "top_k": None, "cohort_size": 12}
    gallery = tmp_path / "g"
    for i in range(3):
        ok("enroll", f"id{i}", synthetic_faces / f"id{i}" / "0.png", synthetic_faces / f"id{i}" / "1.png",
           "-m", model, "-g", gallery)
    probe = synthetic_faces / "id1" / "3.png"
    d = json.loads(ok("verify", probe, "--claim", "id1", "-g", gallery, "-f", "json").stdout)
    # Oracle: the normalised best-template score computed directly from the saved cohort.
    net = Embedder.load(model)
    cohort = Cohort.load(model, fingerprint=net.fingerprint)
    emb = embed_images(net, [load_image(probe)])[0]
    with Gallery.open(gallery) as g:
        expected = {n: cohort.best_score(emb, g.templates(n)) for n in ("id0", "id1", "id2")}
    assert d["score"] == pytest.approx(expected["id1"], abs=1e-4)
    assert d["threshold"] == pytest.approx(cal["threshold"], abs=1e-6)
    hits = json.loads(ok("search", probe, "-g", gallery, "-k", "3", "-f", "json").stdout)[0]["hits"]
    assert [h["identity"] for h in hits] == sorted(expected, key=lambda n: -expected[n])
    assert [h["score"] for h in hits] == pytest.approx(sorted(expected.values(), reverse=True), abs=1e-4)
    # The gallery itself as the cohort: its 6 templates.
    r = ok("calibrate", synthetic_faces, "-m", model, "--target-fmr", "0.2", "--norm", "z", "--cohort", gallery,
           "-f", "json")
    assert json.loads(r.stdout)["normalization"]["cohort_size"] == 6
    assert "in both the cohort and the validation set" in r.stderr  # id0-id2 are in both here: said
