"""Tests for verikit.evaluate.metrics and verikit.evaluate.pairs (hand cases, sklearn, brute force)."""

from __future__ import annotations

import dataclasses
import doctest
import math

import numpy as np
import pytest

from verikit.evaluate import metrics as M
from verikit.evaluate import pairs as P
from verikit.evaluate.metrics import (
    OpenSetRates,
    RocCurve,
    auc,
    clopper_pearson_interval,
    cmc,
    det,
    dir_at_fpir,
    eer,
    fmr_fnmr_at,
    min_supported_fmr,
    open_set_rates,
    probit,
    rank1,
    roc,
    tar_at_far,
    threshold_at_fmr,
    wilson_interval,
)
from verikit.evaluate.pairs import all_pairs_scores, cross_scores
from verikit.errors import DataError

# Hand case with ties inside and across classes.
G = [0.9, 0.8, 0.8, 0.5]
I = [0.8, 0.5, 0.3, 0.3]


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    e = rng.normal(size=(n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def _brute_fmr(imp: np.ndarray, t: float) -> float:
    return float(np.mean(np.asarray(imp, dtype=np.float64) >= t))


# --------------------------------------------------------------------------- doctests


@pytest.mark.parametrize("module", [M, P], ids=["metrics", "pairs"])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_every_public_function_has_an_example() -> None:
    for module in (M, P):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type):
                assert ">>>" in (obj.__doc__ or ""), f"{module.__name__}.{name} has no example"


# --------------------------------------------------------------------------- ROC family, hand cases


def test_roc_hand_case_with_ties() -> None:
    r = roc(G, I)
    assert r.thresholds.tolist() == [math.inf, 0.9, 0.8, 0.5, 0.3]
    assert r.fmr.tolist() == [0.0, 0.0, 0.25, 0.5, 1.0]
    assert r.tmr.tolist() == [0.0, 0.25, 0.75, 1.0, 1.0]
    assert r.fnmr.tolist() == [1.0, 0.75, 0.25, 0.0, 0.0]
    assert len(r) == 5


def test_roc_curve_is_frozen_and_read_only() -> None:
    r = roc(G, I)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.fmr = np.zeros(5)  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.fmr[0] = 1.0
    built = RocCurve(thresholds=[np.inf, 1.0], fmr=[0.0, 1.0], tmr=[0.0, 1.0])
    assert built.thresholds.dtype == np.float64
    with pytest.raises(DataError):
        RocCurve(thresholds=[np.inf, 1.0], fmr=[0.0], tmr=[0.0, 1.0])


def test_auc_hand_case_ties_count_half() -> None:
    # 0.9 beats 4; each 0.8 beats 3 and ties 1; 0.5 beats 2 and ties 1 -> 13.5 / 16
    assert auc(G, I) == 13.5 / 16
    assert auc([1.0], [0.0]) == 1.0
    assert auc([0.0], [1.0]) == 0.0
    assert auc([0.5, 0.5], [0.5]) == 0.5


def test_fmr_fnmr_at_hand_case() -> None:
    assert fmr_fnmr_at(G, I, 0.8) == (0.25, 0.25)
    assert fmr_fnmr_at(G, I, 0.5) == (0.5, 0.0)
    assert fmr_fnmr_at(G, I, 0.81) == (0.0, 0.75)
    assert fmr_fnmr_at(G, I, math.inf) == (0.0, 1.0)
    assert fmr_fnmr_at(G, I, -math.inf) == (1.0, 0.0)


@pytest.mark.parametrize(
    ("target", "expected_fmr", "lower_score"),
    [(0.1, 0.0, 0.8), (0.25, 0.25, 0.5), (0.5, 0.5, 0.3), (0.75, 0.5, 0.3), (0.99, 0.5, 0.3)],
)
def test_threshold_at_fmr_hand_case(target: float, expected_fmr: float, lower_score: float) -> None:
    t = threshold_at_fmr(I, target)
    assert t == np.nextafter(lower_score, np.inf)  # just above the (k+1)-th largest score
    assert _brute_fmr(np.array(I), t) == expected_fmr


def test_threshold_at_fmr_full_acceptance_returns_min() -> None:
    assert threshold_at_fmr(I, 1.0) == 0.3
    assert _brute_fmr(np.array(I), threshold_at_fmr(I, 1.0)) == 1.0


def test_threshold_at_fmr_k_is_robust_to_float_rounding() -> None:
    imp = np.arange(100, dtype=np.float64)
    assert 0.29 * 100 < 29  # floor would give 28
    t = threshold_at_fmr(imp, 0.29)
    assert np.count_nonzero(imp >= t) == 29


def test_threshold_at_fmr_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 60))
        dtype = np.float32 if trial % 3 == 0 else np.float64
        imp = np.round(rng.normal(size=n), int(rng.integers(0, 3))).astype(dtype)  # many ties
        observed = np.unique(imp.astype(np.float64))
        targets = list(rng.uniform(1e-3, 1.0, size=4)) + [k / n for k in range(1, n + 1, max(1, n // 5))]
        for target in targets:
            t = threshold_at_fmr(imp, target)
            fmr = _brute_fmr(imp, t)
            assert fmr <= target
            # the same decision whether the scores are compared as float32 or float64
            assert np.count_nonzero(imp >= t) == np.count_nonzero(imp.astype(np.float64) >= t)
            lower = observed[observed < t]
            if lower.size:
                assert _brute_fmr(imp, float(lower.max())) > target  # any lower observed score fails
            else:
                assert target >= 1.0 or fmr == 1.0


def test_threshold_at_fmr_uses_partition_not_sort(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("full sort used")

    monkeypatch.setattr(M.np, "sort", forbidden)
    monkeypatch.setattr(M.np, "argsort", forbidden)
    assert threshold_at_fmr(I, 0.25) == np.nextafter(0.5, 1.0)


def test_tar_at_far_hand_case() -> None:
    tar = tar_at_far(G, I, [0.1, 0.25, 0.5, 1.0])
    assert isinstance(tar, np.ndarray)
    assert tar.tolist() == [0.25, 0.75, 1.0, 1.0]
    assert tar_at_far(G, I, 0.25).tolist() == [0.75]


def test_tar_at_far_consistent_with_fmr_fnmr_at() -> None:
    rng = np.random.default_rng(1)
    g = np.round(rng.normal(1.0, 1.0, 500), 2)
    imp = np.round(rng.normal(0.0, 1.0, 3000), 2).astype(np.float32)
    fars = [1e-3, 3e-3, 0.01, 0.05, 0.1, 0.5, 1.0]
    tar = tar_at_far(g, imp, fars)
    for far, value in zip(fars, tar):
        fmr, fnmr = fmr_fnmr_at(g, imp, threshold_at_fmr(imp, far))
        assert fmr <= far
        assert value == pytest.approx(1.0 - fnmr, abs=1e-12)
    assert np.all(np.diff(tar) >= 0)


def test_eer_hand_cases() -> None:
    assert eer(G, I) == (0.25, 0.8)  # FMR = FNMR = 0.25 at 0.8
    # one common score: the only observed threshold, never +inf
    assert eer([0.5], [0.5]) == (0.5, 0.5)
    # nearest operating point: |FMR - FNMR| is smallest at 0.7 (0.5 vs 1/3)
    value, t = eer([0.6, 0.8, 0.9], [0.5, 0.7])
    assert t == 0.7
    assert value == pytest.approx((0.5 + 1 / 3) / 2)


def test_eer_separated_classes() -> None:
    rng = np.random.default_rng(2)
    g = rng.uniform(0.6, 1.0, 300)
    imp = rng.uniform(-0.2, 0.4, 2000)
    value, t = eer(g, imp)
    assert value == 0.0
    assert imp.max() < t <= g.min()
    assert fmr_fnmr_at(g, imp, t) == (0.0, 0.0)


def test_eer_identical_distributions() -> None:
    rng = np.random.default_rng(3)
    value, _ = eer(rng.normal(size=4000), rng.normal(size=4000))
    assert value == pytest.approx(0.5, abs=0.04)


def test_eer_is_nearest_observed_operating_point() -> None:
    rng = np.random.default_rng(4)
    for _ in range(20):
        g = np.round(rng.normal(1.0, 1.0, int(rng.integers(1, 40))), 1)
        imp = np.round(rng.normal(0.0, 1.0, int(rng.integers(1, 40))), 1)
        value, t = eer(g, imp)
        gaps = {}
        for s in np.unique(np.concatenate([g, imp])):
            fmr, fnmr = fmr_fnmr_at(g, imp, s)
            gaps[float(s)] = (abs(fmr - fnmr), (fmr + fnmr) / 2)
        best_gap = min(gap for gap, _ in gaps.values())
        assert gaps[t][0] == pytest.approx(best_gap, abs=1e-12)
        assert value == pytest.approx(gaps[t][1], abs=1e-12)


def test_det_hand_case_and_probit() -> None:
    fmr, fnmr = det(G, I)
    assert fmr.tolist() == [0.0, 0.0, 0.25, 0.5, 1.0]
    assert fnmr.tolist() == [1.0, 0.75, 0.25, 0.0, 0.0]
    assert probit(0.5) == 0.0
    assert probit(0.975) == pytest.approx(1.959964, abs=1e-6)
    z = probit(fmr)
    assert z.shape == fmr.shape and np.isfinite(z).all()
    assert z[0] == pytest.approx(-5.997807, abs=1e-5)  # clipped at 1e-9
    assert probit(0.0, eps=1e-3) == pytest.approx(-3.090232, abs=1e-6)
    with pytest.raises(DataError):
        probit([0.5, 1.5])
    with pytest.raises(DataError):
        probit(0.5, eps=0.0)


# --------------------------------------------------------------------------- ROC family vs sklearn


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_roc_and_auc_match_sklearn(dtype) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(5)
    g = np.round(rng.normal(0.5, 0.2, 2000), 2).astype(dtype)
    imp = np.round(rng.normal(0.1, 0.2, 8000), 2).astype(dtype)
    y = np.r_[np.ones(g.size), np.zeros(imp.size)]
    s = np.r_[g, imp]
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    r = roc(g, imp)
    # sklearn's first threshold is +inf (>= 1.3) or max + 1; the rest are the distinct scores
    assert r.thresholds[0] == math.inf
    np.testing.assert_array_equal(r.thresholds[1:], thr[1:].astype(np.float64))
    np.testing.assert_allclose(r.fmr, fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.tmr, tpr, rtol=0, atol=1e-12)
    assert np.all(np.diff(r.thresholds) < 0)
    assert np.all(np.diff(r.fmr) >= 0) and np.all(np.diff(r.tmr) >= 0)
    assert auc(g, imp) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fmr, fnmr = det(g, imp)
    np.testing.assert_allclose(fmr, r.fmr, atol=1e-15)
    np.testing.assert_allclose(fnmr, r.fnmr, atol=1e-12)


def test_roc_matches_fmr_fnmr_at_each_threshold() -> None:
    rng = np.random.default_rng(6)
    g = np.round(rng.normal(0.5, 0.3, 60), 1)
    imp = np.round(rng.normal(0.0, 0.3, 90), 1)
    r = roc(g, imp)
    for t, fmr, tmr in zip(r.thresholds, r.fmr, r.tmr):
        bf, bn = fmr_fnmr_at(g, imp, t)
        assert fmr == bf and tmr == pytest.approx(1.0 - bn, abs=1e-15)


# --------------------------------------------------------------------------- identification


def _cmc_loop(sim, probes, gallery, max_rank):
    ranks = []
    for p, row in enumerate(sim):
        best: dict = {}
        for j, lab in enumerate(gallery):
            best[lab] = max(best.get(lab, -math.inf), row[j])
        true = best[probes[p]]
        ranks.append(sum(1 for v in best.values() if v >= true))
    return np.array([sum(1 for k in ranks if k <= r) / len(ranks) for r in range(1, max_rank + 1)])


def test_cmc_hand_case_with_repeated_templates_and_ties() -> None:
    sim = np.array([
        [0.9, 0.2, 0.95, 0.1],  # a: max(0.9, 0.95)=0.95 beats b 0.2, c 0.1 -> rank 1
        [0.7, 0.6, 0.1, 0.8],  # b: 0.6; a 0.7 and c 0.8 above -> rank 3
        [0.5, 0.1, 0.3, 0.5],  # c: 0.5 ties a 0.5 -> rank 2 (ties count against)
    ])
    probes = ["a", "b", "c"]
    gallery = ["a", "b", "a", "c"]
    assert cmc(sim, probes, gallery).tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cmc(sim, probes, gallery, max_rank=1).tolist() == pytest.approx([1 / 3])
    assert cmc(sim, probes, gallery, max_rank=5).tolist() == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])
    assert rank1(sim, probes, gallery) == pytest.approx(1 / 3)


def test_cmc_matches_python_loop() -> None:
    rng = np.random.default_rng(7)
    n_ids = 12
    gallery = list(rng.integers(0, n_ids, 30)) + list(range(n_ids))  # repeats, every id present
    probes = list(rng.integers(0, n_ids, 25))
    sim = np.round(rng.uniform(size=(len(probes), len(gallery))), 1)  # lots of ties
    expected = _cmc_loop(sim, probes, gallery, n_ids)
    np.testing.assert_allclose(cmc(sim, probes, gallery), expected)
    np.testing.assert_allclose(cmc(sim, np.array(probes), np.array(gallery), max_rank=4), expected[:4])
    assert rank1(sim, probes, gallery) == pytest.approx(expected[0])


def test_cmc_closed_set_rejects_unknown_probe() -> None:
    with pytest.raises(DataError, match="closed-set"):
        cmc([[0.1, 0.2]], ["z"], ["a", "b"])
    with pytest.raises(DataError):
        rank1([[0.1, 0.2]], ["z"], ["a", "b"])


def test_open_set_rates_hand_case() -> None:
    sim = np.array([
        [0.9, 0.1, 0.2],  # mated a: correct, 0.9
        [0.4, 0.3, 0.35],  # mated b: top is a -> miss
        [0.6, 0.6, 0.1],  # mated a: ties with b at the top -> miss
        [0.2, 0.55, 0.1],  # mated b: correct, 0.55
        [0.2, 0.7, 0.1],  # non-mated x: top 0.7
        [0.3, 0.2, 0.45],  # non-mated y: top 0.45
    ])
    probes = ["a", "b", "a", "b", "x", "y"]
    gallery = ["a", "b", "b"]  # b has two templates
    r = open_set_rates(sim, probes, gallery, 0.5)
    assert isinstance(r, OpenSetRates)
    assert (r.dir, r.fpir, r.fnir) == (0.5, 0.5, 0.5)
    assert (r.n_mated, r.n_non_mated, r.threshold) == (4, 2, 0.5)
    r = open_set_rates(sim, probes, gallery, 0.6)
    assert (r.dir, r.fpir, r.fnir) == (0.25, 0.5, 0.75)
    r = open_set_rates(sim, probes, gallery, 0.8)
    assert (r.dir, r.fpir) == (0.25, 0.0)
    r = open_set_rates(sim, probes, gallery, -math.inf)
    assert (r.dir, r.fpir) == (0.5, 1.0)


def test_open_set_rates_empty_populations_are_nan() -> None:
    r = open_set_rates([[0.9, 0.1]], ["a"], ["a", "b"], 0.5)
    assert r.dir == 1.0 and math.isnan(r.fpir)
    r = open_set_rates([[0.9, 0.1]], ["x"], ["a", "b"], 0.5)
    assert r.fpir == 1.0 and math.isnan(r.dir) and math.isnan(r.fnir)


def test_dir_at_fpir() -> None:
    rng = np.random.default_rng(8)
    gallery = list(range(10))
    probes = list(rng.integers(0, 20, 200))  # labels >= 10 are non-mated
    sim = rng.uniform(size=(200, 10))
    for p, lab in enumerate(probes):
        if lab < 10:
            sim[p, lab] += 0.5
    for target in (0.01, 0.1, 0.5, 1.0):
        r = dir_at_fpir(sim, probes, gallery, target)
        assert r.fpir <= target
        assert r == open_set_rates(sim, probes, gallery, r.threshold)
        n_top = sim[[lab >= 10 for lab in probes]].max(axis=1)
        assert r.threshold == threshold_at_fmr(n_top, target)
    with pytest.raises(DataError):
        dir_at_fpir(sim[:1], [0], gallery, 0.1)


# --------------------------------------------------------------------------- uncertainty


def test_wilson_known_values() -> None:
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.7225, abs=1e-4)
    lo90, hi90 = wilson_interval(8, 10, confidence=0.90)
    assert 0.490 < lo90 and hi90 < 0.943


def test_clopper_pearson_known_values() -> None:
    lo, hi = clopper_pearson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4439, 0.9748)
    lo, hi = clopper_pearson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12)
    lo, hi = clopper_pearson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10), abs=1e-12)


def test_interval_coverage_simulation() -> None:
    rng = np.random.default_rng(9)
    n, p = 400, 0.05
    draws = rng.binomial(n, p, size=2000)
    cache_w: dict = {}
    cache_cp: dict = {}
    w = cp = 0
    for k in draws.tolist():
        lo, hi = cache_w.setdefault(k, wilson_interval(k, n))
        w += lo <= p <= hi
        lo, hi = cache_cp.setdefault(k, clopper_pearson_interval(k, n))
        cp += lo <= p <= hi
    assert 0.93 <= w / draws.size <= 0.97
    assert 0.94 <= cp / draws.size <= 0.99  # conservative


def test_min_supported_fmr() -> None:
    assert min_supported_fmr(30_000) == 1e-3
    assert min_supported_fmr(np.int64(300)) == 0.1
    assert min_supported_fmr(3_000, rule_of=3) == 1e-3
    assert min_supported_fmr(10) == 3.0  # too few comparisons for any FMR below 1
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(DataError):
            min_supported_fmr(bad)
    with pytest.raises(DataError):
        min_supported_fmr(100, rule_of=0)


@pytest.mark.parametrize("fn", [wilson_interval, clopper_pearson_interval])
@pytest.mark.parametrize(("s", "n", "c"), [(11, 10, 0.95), (-1, 10, 0.95), (0, 0, 0.95), (1, 10, 1.0),
                                           (1, 10, 0.0), (1.5, 10, 0.95), (1, 10, math.nan)])
def test_intervals_reject_bad_input(fn, s, n, c) -> None:
    with pytest.raises(DataError):
        fn(s, n, c)


# --------------------------------------------------------------------------- pairs


def _naive_all_pairs(emb, labels):
    gen, imp = [], []
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            s = float(np.dot(emb[i].astype(np.float64), emb[j].astype(np.float64)))
            (gen if labels[i] == labels[j] else imp).append(s)
    return np.array(gen), np.array(imp)


@pytest.mark.parametrize("block_rows", [1, 2, 3, 4, 7, 8, 512])
def test_all_pairs_scores_matches_double_loop(block_rows: int) -> None:
    rng = np.random.default_rng(10)
    emb = _unit_rows(rng, 9, 5)
    labels = ["a", "b", "a", "c", "b", "b", "d", "a", "c"]
    g, i = all_pairs_scores(emb, labels, block_rows=block_rows)
    eg, ei = _naive_all_pairs(emb, labels)
    assert g.dtype == np.float32 and i.dtype == np.float32
    assert g.size + i.size == 9 * 8 // 2
    np.testing.assert_allclose(g, eg, rtol=0, atol=1e-6)
    np.testing.assert_allclose(i, ei, rtol=0, atol=1e-6)


def test_all_pairs_scores_edge_shapes() -> None:
    rng = np.random.default_rng(11)
    emb = _unit_rows(rng, 2, 3)
    g, i = all_pairs_scores(emb, [1, 1])
    assert g.size == 1 and i.size == 0
    g, i = all_pairs_scores(emb, np.array([1, 2]))
    assert g.size == 0 and i.size == 1
    emb = _unit_rows(rng, 40, 8)
    labels = rng.integers(0, 5, 40)
    g1, i1 = all_pairs_scores(emb.astype(np.float64), labels, block_rows=6)
    eg, ei = _naive_all_pairs(emb, labels)
    np.testing.assert_allclose(g1, eg, atol=1e-6)
    np.testing.assert_allclose(i1, ei, atol=1e-6)


def test_cross_scores_matches_double_loop() -> None:
    rng = np.random.default_rng(12)
    probes, gallery = _unit_rows(rng, 7, 4), _unit_rows(rng, 5, 4)
    pl = [0, 1, 2, 1, 9, 0, 3]
    gl = [1, 0, 1, 3, 4]
    for block_rows in (1, 2, 3, 512):
        g, i = cross_scores(probes, pl, gallery, gl, block_rows=block_rows)
        eg = [probes[a] @ gallery[b] for a in range(7) for b in range(5) if pl[a] == gl[b]]
        ei = [probes[a] @ gallery[b] for a in range(7) for b in range(5) if pl[a] != gl[b]]
        np.testing.assert_allclose(g, eg, atol=1e-6)
        np.testing.assert_allclose(i, ei, atol=1e-6)


def test_pairs_reject_bad_input() -> None:
    rng = np.random.default_rng(13)
    emb = _unit_rows(rng, 4, 3)
    with pytest.raises(DataError, match="L2-normalised"):
        all_pairs_scores(emb * 2, [0, 1, 2, 3])
    with pytest.raises(DataError):
        all_pairs_scores(emb[:1], [0])
    with pytest.raises(DataError):
        all_pairs_scores(emb, [0, 1, 2])
    with pytest.raises(DataError):
        all_pairs_scores(emb[0], [0, 1, 2])
    with pytest.raises(DataError):
        all_pairs_scores(emb, "abcd")
    with pytest.raises(DataError):
        all_pairs_scores(emb, [[0], [1], [2], [3]])  # unhashable labels
    bad = emb.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError):
        all_pairs_scores(bad, [0, 1, 2, 3])
    with pytest.raises(DataError):
        all_pairs_scores(emb, [0, 1, 2, 3], block_rows=0)
    with pytest.raises(DataError):
        cross_scores(emb, [0, 1, 2, 3], _unit_rows(rng, 2, 5), [0, 1])
    with pytest.raises(DataError):
        cross_scores(emb, [0, 1, 2, 3], np.zeros((0, 3)), [])


# --------------------------------------------------------------------------- validation


BAD_SCORES = [
    pytest.param([], id="empty"),
    pytest.param([0.1, float("nan")], id="nan"),
    pytest.param([0.1, float("inf")], id="inf"),
    pytest.param([[0.1, 0.2]], id="2d"),
    pytest.param(0.5, id="scalar"),
    pytest.param(["a", "b"], id="strings"),
    pytest.param([True, False], id="bool"),
    pytest.param(None, id="none"),
    pytest.param([[0.1], [0.2, 0.3]], id="ragged"),
]

SCORE_FUNCTIONS = [
    pytest.param(lambda g, i: roc(g, i), id="roc"),
    pytest.param(lambda g, i: auc(g, i), id="auc"),
    pytest.param(lambda g, i: fmr_fnmr_at(g, i, 0.5), id="fmr_fnmr_at"),
    pytest.param(lambda g, i: threshold_at_fmr(i, 0.5), id="threshold_at_fmr"),
    pytest.param(lambda g, i: tar_at_far(g, i, [0.5]), id="tar_at_far"),
    pytest.param(lambda g, i: eer(g, i), id="eer"),
    pytest.param(lambda g, i: det(g, i), id="det"),
]


@pytest.mark.parametrize("fn", SCORE_FUNCTIONS)
@pytest.mark.parametrize("bad", BAD_SCORES)
def test_score_functions_reject_bad_impostor(fn, bad) -> None:
    with pytest.raises(DataError):
        fn(G, bad)


@pytest.mark.parametrize("bad", BAD_SCORES)
def test_genuine_is_validated(bad) -> None:
    for fn in (roc, auc, eer, det):
        with pytest.raises(DataError):
            fn(bad, I)
    with pytest.raises(DataError):
        fmr_fnmr_at(bad, I, 0.5)
    with pytest.raises(DataError):
        tar_at_far(bad, I, [0.5])


def test_error_messages_are_one_line() -> None:
    with pytest.raises(DataError) as info:
        roc([[0.1, 0.2]], I)
    assert "\n" not in str(info.value) and "genuine" in str(info.value)


@pytest.mark.parametrize("target", [0.0, -0.1, 1.5, math.nan, math.inf, "0.1", None, True])
def test_target_rates_must_be_in_unit_interval(target) -> None:
    with pytest.raises(DataError):
        threshold_at_fmr(I, target)
    if target is not True:  # inside a list numpy turns True into 1.0, a valid rate
        with pytest.raises(DataError):
            tar_at_far(G, I, [0.1, target])


def test_other_argument_validation() -> None:
    with pytest.raises(DataError):
        fmr_fnmr_at(G, I, math.nan)
    with pytest.raises(DataError):
        fmr_fnmr_at(G, I, "0.5")
    with pytest.raises(DataError):
        tar_at_far(G, I, [])
    with pytest.raises(DataError):
        tar_at_far(G, I, [[0.1]])
    with pytest.raises(DataError):
        cmc([0.1, 0.2], ["a"], ["a", "b"])  # 1-D similarity
    with pytest.raises(DataError):
        cmc(np.zeros((0, 2)), [], ["a", "b"])
    with pytest.raises(DataError):
        cmc([[0.1, math.nan]], ["a"], ["a", "b"])
    with pytest.raises(DataError):
        cmc([[0.1, 0.2]], ["a", "b"], ["a", "b"])  # label count mismatch
    with pytest.raises(DataError):
        cmc([[0.1, 0.2]], ["a"], ["a", "b"], max_rank=0)
    with pytest.raises(DataError):
        open_set_rates([[0.1, 0.2]], ["a"], ["a", "b"], math.nan)
    with pytest.raises(DataError):
        dir_at_fpir([[0.1, 0.2]], ["x"], ["a", "b"], 0.0)


def test_integer_and_float32_inputs() -> None:
    assert auc([3, 2, 2], [2, 1]) == pytest.approx((2 + 1.5 + 1.5) / 6)
    r = roc(np.array([0.9, 0.5], dtype=np.float32), np.array([0.5, 0.1], dtype=np.float32))
    assert r.thresholds.dtype == np.float64
    assert r.thresholds[1] == float(np.float32(0.9))
    t = threshold_at_fmr(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32), 0.25)
    assert t == float(np.nextafter(np.float32(0.3), np.float32(1)))


def test_label_containers() -> None:
    sim = [[0.9, 0.1], [0.2, 0.8]]
    assert rank1(sim, ("a", "b"), np.array(["a", "b"])) == 1.0
    assert rank1(sim, [("p", 1), ("p", 2)], [("p", 1), ("p", 2)]) == 1.0  # tuple labels
    for bad in ("ab", {"a", "b"}, {"a": 0, "b": 1}, 5):
        with pytest.raises(DataError):
            rank1(sim, bad, ["a", "b"])


def test_mean_average_precision_matches_sklearn_per_probe_with_ties():
    from sklearn.metrics import average_precision_score

    from verikit.evaluate.metrics import mean_average_precision

    rng = np.random.default_rng(5)
    gallery = rng.integers(0, 6, size=40).tolist()
    probes = rng.integers(0, 7, size=25).tolist()  # label 6 is absent from the gallery: left out
    sim = np.round(rng.random((25, 40)), 1)         # coarse rounding: many ties
    expected = [average_precision_score(np.array(gallery) == p, row) for row, p in zip(sim, probes) if p in gallery]
    assert mean_average_precision(sim, probes, gallery) == pytest.approx(np.mean(expected), abs=1e-12)
    with pytest.raises(DataError, match="no probe has a relevant"):
        mean_average_precision(sim[:1], [99], gallery)
