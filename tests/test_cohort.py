"""Saved normalisation cohorts: same numbers as the formulas, safe files, bound to one model."""

from __future__ import annotations

import numpy as np
import pytest

from verikit.calibrate.cohort import COHORT_FILE, Cohort
from verikit.calibrate.normalization import normalize_pairs
from verikit.errors import CalibrationError, FingerprintMismatchError


def unit(rng, n, d=8):
    v = rng.normal(size=(n, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("method, top_k", [("z", None), ("t", None), ("s", None), ("as", 5)])
def test_one_probe_normalisation_equals_the_pairwise_formula(method, top_k):
    rng = np.random.default_rng(0)
    cohort = Cohort(unit(rng, 30), method, top_k, "fp")
    refs, probe = unit(rng, 4), unit(rng, 1)
    raw = (refs @ probe[0]).astype(np.float64)
    both = np.vstack([refs, probe])
    expected = normalize_pairs(raw, both, np.arange(4), np.full(4, 4), cohort.embeddings, method, top_k=top_k)
    np.testing.assert_allclose(cohort.normalize(raw, refs, probe[0]), expected, rtol=1e-6)
    np.testing.assert_allclose(cohort.normalize_pairs(raw, both, np.arange(4), np.full(4, 4)), expected, rtol=1e-6)


def test_save_load_round_trip_and_model_binding(tmp_path):
    rng = np.random.default_rng(1)
    c = Cohort(unit(rng, 10), "as", 3, "a" * 64)
    c.save(tmp_path)
    back = Cohort.load(tmp_path, fingerprint="a" * 64)
    np.testing.assert_array_equal(back.embeddings, c.embeddings)
    assert (back.method, back.top_k) == ("as", 3)
    with pytest.raises(FingerprintMismatchError, match="re-run `verikit calibrate --norm`"):
        Cohort.load(tmp_path, fingerprint="b" * 64)
    (tmp_path / COHORT_FILE).write_bytes(b"not an npz")
    with pytest.raises(CalibrationError, match="normalisation cohort .* not an .npz archive"):
        Cohort.load(tmp_path)


def test_bad_settings_are_refused():
    with pytest.raises(CalibrationError, match="unknown normalisation"):
        Cohort(np.eye(3, dtype=np.float32), "q", None, "fp")
    with pytest.raises(CalibrationError, match="needs --top-k"):
        Cohort(np.eye(3, dtype=np.float32), "as", None, "fp")


def test_an_identity_never_normalises_against_its_own_templates():
    rng = np.random.default_rng(2)
    others, own = unit(rng, 12), unit(rng, 3)
    probe = unit(rng, 1)[0]
    with_own = Cohort(np.vstack([others, own]), "as", 5, "fp")   # e.g. the gallery as cohort
    without_own = Cohort(others, "as", 5, "fp")
    assert with_own.best_score(probe, own) == pytest.approx(without_own.best_score(probe, own), abs=1e-9)
    assert len(with_own.without(own).embeddings) == 12
