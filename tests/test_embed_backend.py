"""The ONNX Runtime inference path (verikit.models.backend / onnx_backend / optimize).

Oracle everywhere: the same model run eagerly by PyTorch. Templates through the export must match
it to a cosine of at least 0.9999 (real photos and synthetic ones); anything that makes the
export untrustworthy (weights changed, file altered, onnxruntime missing) must fall back to eager
or, when ``onnx`` was asked for, fail with one line. Models are tiny random-weight ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the ONNX backend tests need the onnx extra (pip install 'verikit[onnx]')")
pytest.importorskip("onnx", reason="exporting needs the onnx package (the onnx extra)")

from verikit.errors import ModelError  # noqa: E402
from verikit.models.backend import MIN_COSINE, RECORD_FILE  # noqa: E402
from verikit.models.embedder import Embedder  # noqa: E402
from verikit.models.inference import embed_files, embed_images  # noqa: E402
from verikit.models.optimize import optimize  # noqa: E402
from verikit.structures import InputSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _save(out: Path, **kw) -> Path:
    torch.manual_seed(0)
    Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32)), **kw).eval().save(out)
    return out


def _optimized(tmp_path: Path, images=None, **kw) -> Path:
    """A fresh tiny model with an export recorded as the default (min_speedup 0: timing is not under test)."""
    model_dir = _save(tmp_path / "model", **kw)
    result = optimize(model_dir, images, sample=8, batch_size=4, repeats=1, min_speedup=0.0)
    assert result.backend == "onnx" and result.min_cosine >= MIN_COSINE
    return model_dir


@pytest.fixture(scope="module")
def optimized_dir(tmp_path_factory, shared_data) -> Path:
    """One tiny model optimized on real photos (ORL), shared read-only; tests that change it copy it."""
    return _optimized(tmp_path_factory.mktemp("optimized"), shared_data / "orl_faces")


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model_dir, tmp_path / "copy"))


def _rows_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _photos(shared_data: Path) -> list[Path]:
    """Real photos: grey ORL faces and colour dlib faces of various sizes."""
    orl = sorted((shared_data / "orl_faces").rglob("*.pgm"))[:12]
    dlib = sorted(p for p in (shared_data / "dlib_faces").rglob("*") if p.suffix.lower() in (".jpg", ".png"))[:12]
    if len(orl) < 4 or len(dlib) < 4:
        pytest.skip(f"ORL or dlib_faces photos not found under {shared_data}")
    return orl + dlib


def test_templates_on_real_photos_equal_eager(optimized_dir, shared_data):
    photos = _photos(shared_data)
    model_dir = optimized_dir
    record = json.loads((model_dir / RECORD_FILE).read_text())
    assert record["measured"]["sample_source"] == str(shared_data / "orl_faces")
    fast = Embedder.load(model_dir)
    eager = Embedder.load(model_dir, backend="eager")
    assert (fast.backend, eager.backend) == ("onnx", "eager")
    a = embed_files(fast, photos, batch_size=5, num_workers=0)
    b = embed_files(eager, photos, batch_size=5, num_workers=0)
    assert not a.failures and a.paths == b.paths and len(a.paths) == len(photos)
    assert _rows_cosine(a.embeddings, b.embeddings).min() >= MIN_COSINE


def test_templates_on_synthetic_images_equal_eager_at_any_batch_size(tmp_path, synthetic_faces):
    # Mirror TTA (a concatenated batch, split at run time) and pooled templates: the unusual graphs.
    model_dir = _optimized(tmp_path, tta="hflip", embed_from="pooled")
    images = sorted(synthetic_faces.rglob("*.png"))[:7]
    fast, eager = Embedder.load(model_dir, backend="onnx"), Embedder.load(model_dir, backend="eager")
    for batch in (1, 3, 7):  # the export's batch dimension is dynamic, TTA's mirror half included
        a, b = embed_images(fast, images, batch_size=batch), embed_images(eager, images, batch_size=batch)
        assert a.shape == b.shape == (7, eager.embedding_size)
        assert _rows_cosine(a, b).min() >= MIN_COSINE


def test_optimize_never_touches_the_model_files(tmp_path):
    model_dir = _save(tmp_path / "model")
    before = {n: (model_dir / n).read_bytes() for n in ("config.json", "model.safetensors")}
    fingerprint = Embedder.load(model_dir, backend="eager").fingerprint
    result = optimize(model_dir, sample=4, batch_size=2, repeats=1, min_speedup=1e9)  # never "faster"
    assert result.synthetic and result.backend == "eager" and "eager stays the default" in result.reason
    assert {n: (model_dir / n).read_bytes() for n in before} == before
    loaded = Embedder.load(model_dir)
    assert loaded.fingerprint == fingerprint and loaded.backend == "eager"  # recorded eager: auto keeps eager
    assert Embedder.load(model_dir, backend="onnx").backend == "onnx"    # the export is still there to force


def test_reoptimizing_replaces_the_export(optimized_dir, tmp_path):
    model_dir = _copy(optimized_dir, tmp_path)
    first = sorted(p.name for p in model_dir.glob("*.onnx"))
    _save(model_dir, tta="hflip")  # new weights/config, then a new export
    optimize(model_dir, sample=4, batch_size=2, repeats=1, min_speedup=0.0)
    second = sorted(p.name for p in model_dir.glob("*.onnx"))
    assert len(first) == len(second) == 1 and first != second
    assert Embedder.load(model_dir).backend == "onnx"


def test_stale_export_after_the_weights_change_falls_back(optimized_dir, tmp_path, caplog):
    model_dir = _copy(optimized_dir, tmp_path)
    model = Embedder.load(model_dir, backend="eager")
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    model.save(model_dir)  # new weights, old export
    with caplog.at_level("WARNING", logger="verikit.models.backend"):
        loaded = Embedder.load(model_dir)
    assert loaded.backend == "eager"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "stale" in lines[0] and "\n" not in lines[0]
    with pytest.raises(ModelError, match="made from other weights"):
        Embedder.load(model_dir, backend="onnx")


def test_altered_or_corrupt_export_falls_back_or_fails_in_one_line(optimized_dir, tmp_path, caplog):
    model_dir = _copy(optimized_dir, tmp_path)
    onnx_file = next(model_dir.glob("*.onnx"))
    data = bytearray(onnx_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="verikit.models.backend"):
        assert Embedder.load(model_dir).backend == "eager"
    assert any("does not match the hash" in r.getMessage() for r in caplog.records)
    with pytest.raises(ModelError, match="does not match the hash"):
        Embedder.load(model_dir, backend="onnx")

    # Bytes that are not ONNX at all, with a record that vouches for them: onnxruntime refuses them.
    from verikit.models.backend import sha256_hex
    onnx_file.write_bytes(b"not an onnx graph")
    record = json.loads((model_dir / RECORD_FILE).read_text())
    record["onnx_sha256"] = sha256_hex(b"not an onnx graph")
    (model_dir / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(ModelError, match="cannot be loaded by onnxruntime") as err:
        Embedder.load(model_dir, backend="onnx")
    assert "\n" not in str(err.value)
    assert Embedder.load(model_dir).backend == "eager"

    (model_dir / RECORD_FILE).write_text('{"format_version": 1, "backend": "onnx"')  # truncated record
    assert Embedder.load(model_dir).backend == "eager"
    with pytest.raises(ModelError, match="inference record"):
        Embedder.load(model_dir, backend="onnx")


def test_record_cannot_point_outside_the_model_folder(optimized_dir, tmp_path):
    model_dir = _copy(optimized_dir, tmp_path)
    record = json.loads((model_dir / RECORD_FILE).read_text())
    record["onnx_file"] = "../elsewhere.onnx"
    (model_dir / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(ModelError, match="onnx_file"):
        Embedder.load(model_dir, backend="onnx")


def test_training_detaches_the_export(optimized_dir):
    model = Embedder.load(optimized_dir)
    assert model.backend == "onnx"
    model.train()
    model.eval()
    assert model.backend == "eager"  # weights may have moved: never the old graph again


def test_no_export_and_onnx_asked_is_an_error(tmp_path, monkeypatch):
    model_dir = _save(tmp_path / "model")
    assert Embedder.load(model_dir).backend == "eager"
    with pytest.raises(ModelError, match="verikit model optimize"):
        Embedder.load(model_dir, backend="onnx")
    monkeypatch.setenv("VERIKIT_BACKEND", "fast")
    with pytest.raises(ModelError, match=r"\$VERIKIT_BACKEND must be one of auto, eager, onnx"):
        Embedder.load(model_dir)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_missing_onnxruntime_falls_back_once_and_optimize_says_why(optimized_dir):
    model_dir = str(optimized_dir)
    r = _run("import sys\nsys.modules['onnxruntime'] = None  # a real ImportError on import\n"
             "from verikit.models.embedder import Embedder\n"
             f"a = Embedder.load({model_dir!r}); b = Embedder.load({model_dir!r})\n"
             "print(a.backend, b.backend, flush=True)\n"
             "try:\n"
             f"    Embedder.load({model_dir!r}, backend='onnx')\n"
             "except Exception as exc:\n"
             "    print('ERROR', type(exc).__name__, exc, flush=True)\n"
             "print('CLI', file=sys.stderr, flush=True)\n"
             "from verikit.cli.main import main\n"
             f"sys.argv = ['verikit', 'model', 'optimize', {model_dir!r}]\nmain()\n")
    assert r.returncode == 1, r.stderr  # the CLI's exit status for a known error
    out = r.stdout.splitlines()
    assert out[0] == "eager eager"
    assert out[1].startswith("ERROR ModelError onnxruntime is not installed")
    loads, cli = r.stderr.split("CLI\n")
    warnings = [line for line in loads.splitlines() if "onnxruntime is not installed" in line]
    assert len(warnings) == 1 and "eager" in warnings[0]  # said once for two loads
    assert cli.strip().count("\n") == 0 and cli.startswith("error: onnxruntime is not installed")


def test_cli_optimize_json_and_errors(tmp_path):
    model_dir = _save(tmp_path / "model")
    cli = [sys.executable, "-m", "verikit.cli.main"]
    r = subprocess.run(cli + ["model", "optimize", str(model_dir), "--sample", "4", "--batch-size", "2",
                              "--repeats", "1", "--min-speedup", "0", "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["backend"] == "onnx" and report["synthetic"] is True and report["min_cosine"] >= MIN_COSINE
    assert report["onnx_file"] == next(model_dir.glob("*.onnx")).name
    assert "synthetic sample" in r.stderr
    from verikit.errors import DataError
    with pytest.raises(DataError, match="nowhere"):  # checked before the model is even loaded
        optimize(model_dir, tmp_path / "nowhere")
    r = subprocess.run(cli + ["--backend", "fast", "model", "optimize", str(model_dir)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2


def test_cli_backend_option_reaches_the_loaded_model(optimized_dir, tmp_path, synthetic_faces, monkeypatch):
    """`verikit --backend X enroll` (and $VERIKIT_BACKEND) decide what enroll embeds with, for that command only."""
    from typer.testing import CliRunner

    from verikit.cli.main import app

    people = tmp_path / "people"
    shutil.copytree(synthetic_faces / "id1", people / "id1")
    seen = []
    load = Embedder.load

    def watching_load(*args, **kwargs):  # the real load; notes which backend the command got
        model = load(*args, **kwargs)
        seen.append(model.backend)
        return model

    monkeypatch.setattr(Embedder, "load", watching_load)
    monkeypatch.delenv("VERIKIT_BACKEND", raising=False)
    runner = CliRunner()
    for args, expected in (([], "onnx"), (["--backend", "eager"], "eager"), ([], "onnx")):
        r = runner.invoke(app, [*args, "enroll", "--from-folder", str(people), "--model", str(optimized_dir),
                                "--gallery", str(tmp_path / f"g{len(seen)}"), "--format", "json"])
        assert r.exit_code == 0, r.output
        assert seen[-1] == expected
    assert "VERIKIT_BACKEND" not in __import__("os").environ  # restored after the command


def test_help_imports_neither_torch_nor_onnxruntime():
    code = ("import sys\nfrom verikit.cli.main import main\nsys.argv = ['verikit', 'model', 'optimize', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules])")
    r = _run(code)
    assert r.stdout.strip().endswith("[]") and "--images" in r.stdout


def test_onnx_runtime_threads_follow_torch(optimized_dir):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert Embedder.load(optimized_dir)._runner.threads == 1
        torch.set_num_threads(2)
        assert Embedder.load(optimized_dir)._runner.threads == 2
    finally:
        torch.set_num_threads(before)


def test_copies_and_pickles_of_a_loaded_model_run_eagerly(optimized_dir):
    import copy
    import io

    model = Embedder.load(optimized_dir)
    clone = copy.deepcopy(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    assert model.backend == "onnx" and clone.backend == "eager"
    x = torch.rand(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(clone(x), model(x))
