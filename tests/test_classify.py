"""Closed-set SVM: numpy prediction against scikit-learn's, pickle-free storage, the per-identity
split, the 1-NN baseline and the `verikit classify` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import ok, one_line_error, run
from verikit.classify.protocol import evaluate, nearest_neighbour, split_per_identity
from verikit.classify.svm import SvmClassifier
from verikit.errors import DataError, FingerprintMismatchError, ModelError


def _blobs(n_classes: int, seed: int = 0, n: int = 60, dim: int = 8):
    rng = np.random.default_rng(seed)
    y = np.array([f"c{i % n_classes}" for i in range(n)])
    x = rng.normal(size=(n, dim)) + 0.4 * (np.arange(n) % n_classes)[:, None] * rng.normal(size=dim)
    return x, y, rng.normal(size=(40, dim)) + 0.3


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_rbf_decisions_and_predictions_equal_scikit_learn(n_classes):
    from sklearn.svm import SVC

    x, y, t = _blobs(n_classes)
    clf = SvmClassifier.fit(x, y, kernel="rbf", C=3.0)
    est = SVC(kernel="rbf", C=3.0, gamma=clf.gamma, break_ties=True).fit(x, y)
    if n_classes > 2:  # scikit-learn's binary decision_function is one column, not per class
        np.testing.assert_allclose(clf.decision_function(t), est.decision_function(t), atol=1e-9)
    assert clf.predict(t)[0] == est.predict(t).tolist()


@pytest.mark.parametrize("n_classes", [2, 4])
def test_linear_predictions_equal_scikit_learn(n_classes):
    from sklearn.svm import LinearSVC

    x, y, t = _blobs(n_classes, seed=1)
    clf = SvmClassifier.fit(x, y, kernel="linear", C=0.5)
    est = LinearSVC(C=0.5, random_state=0, max_iter=20_000).fit(x, y)
    assert clf.predict(t)[0] == est.predict(t).tolist()
    dec = est.decision_function(t)
    np.testing.assert_allclose(clf.decision_function(t)[:, -1], dec if dec.ndim == 1 else dec[:, -1], atol=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_saved_classifier_is_safetensors_and_predicts_the_same(tmp_path, kernel):
    from safetensors import safe_open

    x, y, t = _blobs(3, seed=2)
    clf = SvmClassifier.fit(x, y, kernel=kernel, model_fingerprint="abc")
    path = clf.save(tmp_path / "c.safetensors")
    with safe_open(str(path), framework="numpy") as f:  # plain tensors + JSON: nothing executable
        header = json.loads(f.metadata()["verikit"])
    assert header["classes"] == ["c0", "c1", "c2"] and header["kernel"] == kernel
    back = SvmClassifier.load(path, fingerprint="abc")
    assert back.predict(t)[0] == clf.predict(t)[0]
    np.testing.assert_array_equal(back.decision_function(t), clf.decision_function(t))
    with pytest.raises(FingerprintMismatchError, match="classify fit"):
        SvmClassifier.load(path, fingerprint="other")


def test_unreadable_classifier_and_bad_input_are_clear_errors(tmp_path):
    bad = tmp_path / "c.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="unreadable or malformed"):
        SvmClassifier.load(bad)
    with pytest.raises(ModelError, match="no classifier"):
        SvmClassifier.load(tmp_path / "missing.safetensors")
    with pytest.raises(DataError, match="two identities"):
        SvmClassifier.fit(np.eye(3), ["a", "a", "a"])
    with pytest.raises(DataError, match="kernel"):
        SvmClassifier.fit(np.eye(3), ["a", "b", "a"], kernel="poly")
    clf = SvmClassifier.fit(np.eye(3), ["a", "b", "a"])
    with pytest.raises(DataError, match="size 3"):
        clf.predict(np.ones((1, 4)))


def test_split_per_identity_is_disjoint_deterministic_and_keeps_a_training_image():
    people = {"a": [Path(f"a/{k}") for k in range(10)], "b": [Path(f"b/{k}") for k in range(3)],
              "c": [Path("c/0")]}
    train, test = split_per_identity(people, 0.5, seed=3)
    count = lambda items, who: sum(n == who for n, _ in items)  # noqa: E731
    assert (count(train, "a"), count(test, "a")) == (5, 5)
    assert (count(train, "b"), count(test, "b")) == (1, 2)   # 1.5 rounds up, one image stays to train on
    assert (count(train, "c"), count(test, "c")) == (1, 0)
    assert not {p for _, p in train} & {p for _, p in test}
    assert split_per_identity(people, 0.5, seed=3) == (train, test)
    with pytest.raises(DataError):
        split_per_identity(people, 1.0)


def test_nearest_neighbour_uses_the_measure():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    assert nearest_neighbour(train, ["x", "y", "z"], np.array([[0.8, 0.6], [0.1, 0.99]])) == ["z", "y"]
    # 3x the vector: same cosine neighbour, but the dot product prefers the longest one
    train2 = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert nearest_neighbour(train2, ["x", "y"], np.array([[0.9, 0.44]]), "cosine") == ["x"]
    assert nearest_neighbour(train2, ["x", "y"], np.array([[0.9, 0.44]]), "dot") == ["y"]


def test_evaluate_reports_both_accuracies_on_the_same_split():
    x, y, _ = _blobs(3, seed=4, n=90)
    clf, rep = evaluate(x[:60], y[:60].tolist(), x[60:], y[60:].tolist(), kernel="rbf", C=10)
    assert rep.n_train == 60 and rep.n_test == 30 and rep.identities == 3
    assert rep.svm_accuracy == pytest.approx(np.mean(np.array(clf.predict(x[60:])[0]) == y[60:]))
    want_nn = np.mean(np.array(nearest_neighbour(x[:60], y[:60].tolist(), x[60:])) == y[60:])
    assert rep.nn_accuracy == pytest.approx(want_nn)


def test_classify_fit_and_predict_commands(tmp_path, synthetic_faces, tiny_model_dir):
    out = tmp_path / "clf.safetensors"
    r = ok("classify", "fit", synthetic_faces, "--model", tiny_model_dir, "--kernel", "rbf", "-C", "5",
           "--test-fraction", "0.25", "--out", out, "-f", "json", "-q")
    report = json.loads(r.stdout)
    assert report["identities"] == 4 and report["n_train"] == 12 and report["n_test"] == 4
    assert 0 <= report["svm_accuracy"] <= 1 and 0 <= report["nn_accuracy"] <= 1 and out.is_file()
    probe = synthetic_faces / "id2" / "3.png"
    rows = json.loads(ok("classify", "predict", probe, "--model", tiny_model_dir, "--classifier", out,
                         "-f", "json").stdout)
    assert [r["image"] for r in rows] == [str(probe)] and rows[0]["identity"] in {"id0", "id1", "id2", "id3"}
    one_line_error(run("classify", "predict", probe, "--model", tiny_model_dir), "no classifier", "classify fit")
