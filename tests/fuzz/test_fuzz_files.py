"""Property-based fuzzing of every file verikit reads: malformed versions of each, thrown at its loader.

Each test starts from a VALID file made by verikit itself, mutates it (a value replaced by any JSON
value -- NaN, infinities, huge integers, strings, nested lists and objects --, a key deleted or
added, the whole document replaced, the bytes truncated or garbled; for ``.npz`` files arrays of
other dtypes, shapes and NaNs) and loads it. The only outcomes allowed:

* a one-line :class:`verikit.errors.VerikitError` of the loader's own kind that names the file, or
* a correct load, checked by an oracle written here (no silent acceptance of a value the code
  cannot interpret: a NaN threshold, a zero count, an interval upside down, arrays that do not fit).

Anything else (a traceback of another exception, a hang: pytest-timeout) fails the test. Two
properties go through the real command line's error boundary as well. Profiles are in the root
conftest.py: ``ci`` (the default, seconds) and ``fuzz`` (``make fuzz``, thousands of examples).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from verikit.errors import (CalibrationError, DataError, FingerprintMismatchError, ModelError, PluginError,
                            VerikitError)
from verikit.similarity import THRESHOLD_TOLERANCE

LOW, HIGH = -1 - THRESHOLD_TOLERANCE, 1 + THRESHOLD_TOLERANCE  # the cosine score range, give or take rounding

pytestmark = pytest.mark.fuzz

# -- strategies ---------------------------------------------------------------------------------------

LEAVES = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
          | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
          | st.sampled_from([0, 1, -1, 0.5, 1e308, -0.0, "", "cosine", "NaN", "a" * 64]))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=8)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for k, v in enumerate(doc[:6]):
            out += _paths(v, prefix + (k,))
    return out


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple) -> Any:
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif isinstance(parent, list) and parent:
        parent.pop(path[-1])
    return doc


@st.composite
def mutated_json(draw, base: Any) -> bytes:
    """``base`` (a parsed JSON document) with 1-3 mutations, as the bytes of a file."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        if op == "set":
            doc = _set(doc, path, draw(VALUES))
        elif op == "delete" and path:
            doc = _delete(doc, path)
        elif op == "add":
            target = doc
            for key in path:
                target = target[key]
            if isinstance(target, dict):
                target[draw(st.text(max_size=10))] = draw(VALUES)
            elif isinstance(target, list):
                target.append(draw(VALUES))
    raw = json.dumps(doc, allow_nan=True).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "garble", "bytes"]))
    if damage == "truncate" and raw:
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif damage == "garble" and raw:
        k = draw(st.integers(0, len(raw) - 1))
        raw = raw[:k] + draw(st.binary(min_size=1, max_size=4)) + raw[k + 1:]
    elif damage == "bytes":
        raw = draw(st.binary(max_size=64))
    return raw


ARRAYS = st.one_of(
    st.builds(lambda shape, seed: np.random.default_rng(seed).normal(size=shape).astype(np.float32),
              st.lists(st.integers(0, 5), max_size=3).map(tuple), st.integers(0, 99)),
    st.builds(lambda shape: np.full(shape, np.nan), st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple)),
    st.builds(lambda n: np.arange(n, dtype=np.int64) - 2, st.integers(0, 6)),
    st.builds(lambda s: np.array(s), st.text(max_size=8)),
    st.builds(lambda xs: np.array(xs, dtype=str), st.lists(st.text(max_size=4), max_size=4)),
    st.builds(lambda b: np.array(b), st.booleans()),
    st.builds(lambda v: np.array(v), st.floats(allow_nan=True, allow_infinity=True)),
)


@st.composite
def mutated_npz(draw, base: dict[str, np.ndarray]) -> dict[str, np.ndarray] | bytes:
    """``base`` arrays with keys dropped, added or replaced (any dtype, shape, NaN), or raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=64))
    arrays = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "nan"]))
        key = draw(st.sampled_from(sorted(arrays) or ["x"]))
        if op == "replace":
            arrays[key] = draw(ARRAYS)
        elif op == "delete":
            arrays.pop(key, None)
        elif op == "add":
            arrays[draw(st.sampled_from(["extra", "keys", "method", "x"]))] = draw(ARRAYS)
        elif op == "nan" and key in arrays and arrays[key].dtype.kind == "f" and arrays[key].size:
            a = arrays[key].copy()
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            arrays[key] = a
    return arrays


def write_npz(path: Path, content: dict[str, np.ndarray] | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "wb") as f:
            np.savez(f, **content)


# -- the property every loader must have -------------------------------------------------------------

def loads_or_refuses(load: Callable[[], Any], error: type[VerikitError] | tuple, path: Path) -> Any:
    """``load()``'s result, or None after a one-line ``error`` that names ``path``; anything else fails."""
    try:
        return load()
    except error as exc:
        message = str(exc)
        assert "\n" not in message and message.strip(), repr(message)
        assert str(path) in message or path.name in message, message
        return None


def fuzz(share: int = 1) -> settings:
    """The active profile (ci or fuzz), with ``1/share`` of its examples for the slower properties
    (a model build or a whole command per example)."""
    return settings(max_examples=max(8, settings.default.max_examples // share),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


FUZZ = fuzz()


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# -- config.json -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_config(tiny_model_dir) -> dict:
    return json.loads((tiny_model_dir / "config.json").read_text())


@FUZZ
@given(data=st.data())
def test_model_config(data, model_config, tmp_path):
    from verikit.models.embedder import ModelConfig
    from verikit.similarity import parse_measure
    from verikit.structures import NECKS, POOLINGS

    raw = data.draw(mutated_json(model_config))
    path = tmp_path / "config.json"
    cfg = loads_or_refuses(lambda: ModelConfig.from_json_bytes(raw, str(path)), ModelError, path)
    if cfg is None:
        return
    assert isinstance(cfg.embedding_size, int) and not isinstance(cfg.embedding_size, bool)
    assert 2 <= cfg.embedding_size <= 1 << 16 and cfg.pooling in POOLINGS and cfg.neck in NECKS
    spec = cfg.input_spec
    assert spec.channels in (1, 3) and all(isinstance(s, int) and 8 <= s <= 4096 for s in spec.size)
    assert all(finite(m) for m in spec.mean) and all(finite(s) and s > 0 for s in spec.std)
    parse_measure(cfg.similarity)
    assert not {"pretrained", "weights"} & set(cfg.backbone_options)
    # what loaded round-trips through its own file unchanged
    assert ModelConfig.from_json_bytes(cfg.to_json_bytes(), "again").to_json_bytes() == cfg.to_json_bytes()


@fuzz(share=3)
@given(data=st.data())
def test_model_directory_loads_or_refuses_in_one_line(data, tiny_model_dir, model_config, tmp_path_factory):
    """The whole Embedder.load (architecture built from the file): never reaches a hub, never a traceback."""
    from verikit.models.embedder import Embedder

    d = tmp_path_factory.mktemp("model")
    (d / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    (d / "config.json").write_bytes(data.draw(mutated_json(model_config)))
    model = loads_or_refuses(lambda: Embedder.load(d), VerikitError, d / "config.json")
    if model is not None:
        assert model.embedding_size >= 2


# -- calibration.json --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def calibration_doc(tmp_path_factory) -> dict:
    from verikit.calibrate.threshold import calibrate

    rng = np.random.default_rng(0)
    cal = calibrate(rng.uniform(0.3, 1, 60), rng.uniform(-0.5, 0.6, 600), 0.05, "a" * 64, similarity="cosine",
                    data={"path": "val", "identities": 6, "pipeline": {"crop_margin": 0.2, "options": {}}})
    return cal.to_dict()


def check_calibration(cal) -> None:
    """What a loaded calibration must satisfy for verify/search to decide correctly with it."""
    assert finite(cal.threshold) and LOW <= cal.threshold <= HIGH
    assert 0 < cal.target_fmr <= 1 and cal.n_genuine >= 1 and cal.n_impostor >= 1
    for rate, (lo, hi) in ((cal.measured_fmr, cal.fmr_interval), (cal.measured_fnmr, cal.fnmr_interval)):
        assert 0 <= lo <= rate <= hi <= 1 or math.isclose(rate, lo) or math.isclose(rate, hi)
    assert list(cal.impostor_tail) == sorted(cal.impostor_tail, reverse=True)
    assert 0 <= cal.estimated_fmr(0.5) <= 1


@FUZZ
@given(data=st.data())
def test_calibration(data, calibration_doc, tmp_path):
    from verikit.calibrate.threshold import Calibration

    path = tmp_path / "calibration.json"
    path.write_bytes(data.draw(mutated_json(calibration_doc)))
    cal = loads_or_refuses(lambda: Calibration.load(path, fingerprint="a" * 64, measure="cosine"),
                           (CalibrationError, FingerprintMismatchError), path)
    if cal is not None and cal.normalization is None:
        check_calibration(cal)


HOSTILE_THRESHOLDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.none(), st.booleans(), st.text(max_size=5),
    st.lists(st.floats(-1, 1), max_size=2), st.integers(-3, 3), st.sampled_from([-1.0, 1.0, -1.0005, 1.002, 0.0]))


@pytest.fixture(scope="module")
def search_setup(tmp_path_factory, tiny_model_dir, synthetic_faces):
    """A copy of the tiny model (its calibration.json is rewritten per example) and a gallery of it."""
    import shutil

    from verikit.models.embedder import Embedder
    from verikit.pipeline.operations import enroll, open_gallery_for

    model_dir = tmp_path_factory.mktemp("fuzz-model")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, model_dir / name)
    model = Embedder.load(model_dir)
    gallery = tmp_path_factory.mktemp("fuzz-gallery") / "g"
    with open_gallery_for(model, gallery, create=True) as g:
        enroll(model, g, {f"id{k}": [synthetic_faces / f"id{k}" / f"{j}.png" for j in range(3)] for k in (0, 1)})
    return model_dir, gallery, model.fingerprint, synthetic_faces / "id3" / "3.png"


def cli(*args: Any) -> tuple[int, str, str]:
    """Run the real ``verikit`` entry point (its error boundary included) in this process."""
    from verikit.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["verikit", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


@fuzz(share=8)
@given(threshold=HOSTILE_THRESHOLDS)
@example(threshold=float("nan")).via("the issue's case")
@example(threshold=None).via("the issue's case")
@example(threshold=True).via("the issue's case")
@example(threshold="0.5").via("the issue's case")
@example(threshold=[0.5]).via("the issue's case")
@example(threshold=float("inf")).via("the issue's case")
@example(threshold=-5).via("outside the cosine range")
@example(threshold=0.25).via("a valid threshold")
def test_search_never_accepts_because_of_a_bad_calibration(threshold, search_setup, calibration_doc):
    """Through the CLI: a calibration whose threshold is not a number in the cosine range is refused
    (exit 1, one line naming the file) -- never an identity for a stranger, never "no calibration"."""
    model_dir, gallery, fingerprint, stranger = search_setup
    doc = {**calibration_doc, "model_fingerprint": fingerprint, "threshold": threshold}
    path = model_dir / "calibration.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    code, out, err = cli("search", stranger, "--model", model_dir, "--gallery", gallery, "--format", "json")
    valid = finite(threshold) and LOW <= threshold <= HIGH
    if not valid:
        assert code == 1 and err.count("\n") == 1 and str(path) in err and "threshold" in err, (code, err)
        assert out == "" and "no calibration" not in err
    else:
        assert code == 0, err
        result = json.loads(out)[0]
        assert result["threshold"] == round(float(threshold), 6)
        top = result["hits"][0]["score"]  # rounded to 6 places: decide only away from the threshold
        if abs(top - float(threshold)) > 1e-5:
            assert (result["identity"] is None) == (top < float(threshold))


@fuzz(share=10)
@given(threshold=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["nan", "inf", "-inf"])))
@example(threshold="nan").via("the issue's case")
@example(threshold=1.5).via("outside the cosine range")
@example(threshold=0.5).via("a valid threshold")
def test_threshold_option_and_python_api(threshold, search_setup):
    """``--threshold`` and ``verikit.verify(threshold=...)``: NaN/inf and values outside the score range are
    refused with one line naming the threshold; a finite in-range value decides."""
    import verikit

    model_dir, gallery, _, probe = search_setup
    (model_dir / "calibration.json").unlink(missing_ok=True)
    code, _, err = cli("verify", probe, "--claim", "id0", "--model", model_dir, "--gallery", gallery,
                       "--threshold", threshold)
    value = float(threshold)
    if not math.isfinite(value):
        assert code == 2 and "--threshold" in err
    elif not LOW <= value <= HIGH:
        assert code == 1 and err.count("\n") == 1 and "threshold" in err and "[-1, 1]" in err
    else:
        assert code in (0,), err
    model = verikit.Embedder.load(model_dir)
    with verikit.open_gallery(model, gallery) as g:
        if math.isfinite(value) and LOW <= value <= HIGH:
            assert isinstance(verikit.verify(model, g, probe, claim="id0", threshold=value).match, bool)
        else:
            with pytest.raises(DataError, match="threshold"):
                verikit.verify(model, g, probe, claim="id0", threshold=value)


# -- cohort.npz --------------------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_cohort(data, tmp_path):
    from verikit.calibrate.cohort import COHORT_FILE, Cohort

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4)).astype(np.float32)
    base = {"embeddings": emb / np.linalg.norm(emb, axis=1, keepdims=True), "method": np.array("as"),
            "top_k": np.array(3), "model_fingerprint": np.array("a" * 64)}
    write_npz(tmp_path / COHORT_FILE, data.draw(mutated_npz(base)))
    cohort = loads_or_refuses(lambda: Cohort.load(tmp_path), CalibrationError, tmp_path / COHORT_FILE)
    if cohort is not None:
        e = cohort.embeddings
        assert e.ndim == 2 and len(e) >= 2 and np.isfinite(e).all() and cohort.method in ("z", "t", "s", "as")
        assert cohort.method != "as" or 1 <= cohort.top_k <= len(e)


# -- pair_head.json ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair_head_dir(tmp_path_factory) -> Path:
    import torch

    from verikit.models.pair_head import PairHead, SavedPairHead

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("pairhead")
    SavedPairHead(PairHead(8, 4), "b" * 64, threshold=0.7, info={"val_eer": 0.1}).save(d)
    return d


@FUZZ
@given(data=st.data())
def test_pair_head(data, pair_head_dir, tmp_path):
    from verikit.models.pair_head import PAIR_HEAD_CONFIG, PAIR_HEAD_WEIGHTS, SavedPairHead

    (tmp_path / PAIR_HEAD_WEIGHTS).write_bytes((pair_head_dir / PAIR_HEAD_WEIGHTS).read_bytes())
    base = json.loads((pair_head_dir / PAIR_HEAD_CONFIG).read_text())
    (tmp_path / PAIR_HEAD_CONFIG).write_bytes(data.draw(mutated_json(base)))
    head = loads_or_refuses(lambda: SavedPairHead.load(tmp_path), ModelError, tmp_path / PAIR_HEAD_CONFIG)
    if head is not None:
        assert head.threshold is None or (finite(head.threshold) and 0 <= head.threshold <= 1)
        v = np.ones((1, head.head.embedding_size), np.float32)
        assert 0 <= head.head.best_score(v[0], v) <= 1


# -- classifier.safetensors --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def svm_files(tmp_path_factory) -> dict[str, Path]:
    from verikit.classify.svm import SvmClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    y = [f"p{k % 3}" for k in range(30)]
    d = tmp_path_factory.mktemp("svm")
    return {k: SvmClassifier.fit(x, y, kernel=k, model_fingerprint="c" * 64).save(d / f"{k}.safetensors")
            for k in ("linear", "rbf")}


@FUZZ
@given(data=st.data(), kernel=st.sampled_from(["linear", "rbf"]))
def test_svm_classifier(data, kernel, svm_files, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import save

    from verikit.classify.svm import SvmClassifier

    with safe_open(str(svm_files[kernel]), framework="numpy") as f:
        header = json.loads(f.metadata()["verikit"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    raw_header = data.draw(mutated_json(header)) if data.draw(st.booleans()) else json.dumps(header).encode()
    new_arrays = data.draw(mutated_npz(arrays)) if data.draw(st.booleans()) else arrays
    path = tmp_path / "c.safetensors"
    if isinstance(new_arrays, bytes):
        path.write_bytes(new_arrays)
    else:
        plain = {k: np.ascontiguousarray(v) for k, v in new_arrays.items() if v.dtype.kind in "fiub"}
        try:
            path.write_bytes(save(plain, metadata={"verikit": raw_header.decode("utf-8", "replace")}))
        except Exception:  # noqa: BLE001 - safetensors cannot write it: nothing to load
            return
    clf = loads_or_refuses(lambda: SvmClassifier.load(path), ModelError, path)
    if clf is not None:
        dim = clf.arrays["coef" if clf.kernel == "linear" else "support_vectors"].shape[1]
        names, scores = clf.predict(np.zeros((2, dim)))
        assert set(names) <= set(clf.classes) and np.isfinite(scores).all()


# -- --config (training settings) --------------------------------------------------------------------

@FUZZ
@given(data=st.data(), suffix=st.sampled_from([".json", ".yaml"]))
def test_training_config_file(data, suffix, tmp_path):
    from verikit.train.config import TrainConfig, check_config, config_from_dict, config_to_dict, read_config_file

    base = config_to_dict(TrainConfig())
    path = tmp_path / f"train{suffix}"
    path.write_bytes(data.draw(mutated_json(base)))  # JSON is YAML too
    cfg = loads_or_refuses(lambda: config_from_dict(read_config_file(path), source=str(path)), DataError, path)
    if cfg is not None:
        check_config(cfg)  # what loads is what the loop accepts
        assert cfg.epochs >= 1 and cfg.batch_size >= 2 and cfg.lr > 0 and math.isfinite(cfg.lr)
        assert cfg.margin is None or math.isfinite(cfg.margin)
        assert len(cfg.image_size) == 2 and min(cfg.image_size) >= 8


# -- result.json and scores.npz ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from verikit.evaluate.benchmark import SCHEMA_VERSION, ScoreSet
    from verikit.evaluate.evaluation import evaluate_verification
    from verikit.report.results import write_run

    rng = np.random.default_rng(0)
    g, i = rng.normal(0.6, 0.2, 40), rng.normal(0.1, 0.2, 300)
    gs, ia, ib = rng.integers(0, 5, 40), rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    result = {"schema_version": SCHEMA_VERSION, "kind": "verikit.benchmark", "name": "fuzz", "created_at": "",
              "verikit_version": "0", "model": {"path": None, "fingerprint": "d" * 64}, "pipeline": None,
              "protocol": {"kind": "folder", "sha256": "e" * 64}, "normalization": None,
              "embedding": {"files": 1, "from_cache": 0, "failed": 0}, "skipped": {"files": [], "pairs": 0},
              "verification": evaluate_verification(g, i, gs, (ia, ib), n_boot=20), "folds": None,
              "identification": None}
    d = tmp_path_factory.mktemp("run")
    write_run(d, result, ScoreSet(g.astype(np.float32), i.astype(np.float32), gs, ia, ib,
                                  tuple(f"s{k}" for k in range(5)), "e" * 64))
    return d


@FUZZ
@given(data=st.data())
def test_benchmark_result(data, run_dir, tmp_path):
    from verikit.report.results import RESULT_FILE, load_run

    base = json.loads((run_dir / RESULT_FILE).read_text())
    base["scores_file"] = None
    path = tmp_path / RESULT_FILE
    path.write_bytes(data.draw(mutated_json(base)))
    run = loads_or_refuses(lambda: load_run(path), DataError, path)
    if run is not None:
        v = run.result["verification"]
        if v is not None:
            assert len(v["roc"]["fmr"]) == len(v["roc"]["tmr"]) and all(0 <= x <= 1 for x in v["roc"]["fmr"])
            assert 0 <= v["eer"]["value"] <= 1


@FUZZ
@given(data=st.data())
def test_scores_file(data, run_dir, tmp_path):
    from verikit.evaluate.benchmark import ScoreSet

    with np.load(run_dir / "scores.npz") as z:
        base = {k: z[k] for k in z.files}
    path = tmp_path / "scores.npz"
    write_npz(path, data.draw(mutated_npz(base)))
    scores = loads_or_refuses(lambda: ScoreSet.load(path), DataError, path)
    if scores is not None:
        assert len(scores.genuine) == len(scores.genuine_subject)
        assert len(scores.impostor) == len(scores.impostor_subject_a) == len(scores.impostor_subject_b)
        assert np.isfinite(scores.genuine).all() and np.isfinite(scores.impostor).all()


# -- the embedding cache -----------------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_embedding_cache(data, tmp_path_factory):
    from verikit.evaluate.embedding_cache import EmbeddingCache

    tmp_path = tmp_path_factory.mktemp("cache")
    fingerprint = "f" * 64
    cache = EmbeddingCache(tmp_path, fingerprint)
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    cache.add([image], np.ones((1, 4), np.float32))
    path = cache.save()
    with np.load(path) as z:
        base = {k: z[k] for k in z.files}
    write_npz(path, data.draw(mutated_npz(base)))
    loaded = loads_or_refuses(lambda: EmbeddingCache(tmp_path, fingerprint), DataError, path)
    if loaded is not None:
        look = loaded.lookup([image])
        assert all(np.isfinite(v).all() for v in look.found.values())
        assert len(look.found) + len(look.no_face) + len(look.missing) == 1


# -- segmenter.json, progress.json -------------------------------------------------------------------

@FUZZ
@given(data=st.data())
def test_segmenter_description(data, tmp_path):
    from verikit.segment import SIDECAR_FILE
    from verikit.segment.weights import read_sidecar, write_sidecar

    write_sidecar(tmp_path, "smp:unet", {"encoder": "resnet18"}, {"epochs": 1})
    base = json.loads((tmp_path / SIDECAR_FILE).read_text())
    (tmp_path / SIDECAR_FILE).write_bytes(data.draw(mutated_json(base)))
    meta = loads_or_refuses(lambda: read_sidecar(str(tmp_path / "segmenter.safetensors")), PluginError,
                            tmp_path / SIDECAR_FILE)
    if meta is not None:
        assert isinstance(meta["options"], dict) and isinstance(meta["spec"], str) and meta["spec"]


@fuzz(share=2)
@given(data=st.data())
def test_checkpoint_progress(data, tmp_path_factory):
    import torch

    from verikit.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    out = tmp_path_factory.mktemp("ckpt")
    history = [{"epoch": 1, "loss": 0.5, "images_per_s": 10.0, "val_eer": None, "seconds": 1.0}]
    save_checkpoint(out, Checkpoint(epoch=1, model={"w": torch.zeros(2)}, states={},
                                    progress={"history": history, "config": {"epochs": 3}}))
    path = out / "checkpoint" / "progress.json"
    base = json.loads(path.read_text())
    path.write_bytes(data.draw(mutated_json(base)))
    ckpt = loads_or_refuses(lambda: load_checkpoint(out), DataError, path)
    if ckpt is not None:
        assert ckpt.epoch >= 0 and isinstance(ckpt.progress["config"], dict)
        assert all(row["epoch"] >= 1 for row in ckpt.progress["history"])
