"""Subject bootstrap, paired test and streaming bounds: exactness against the reference metrics,
and interval coverage by simulation on a synthetic subject model with a known truth."""

from __future__ import annotations

import doctest
from statistics import NormalDist

import numpy as np
import pytest

from verikit.evaluate import bootstrap as B
from verikit.evaluate import streaming as S
from verikit.evaluate.bootstrap import WeightedScores, paired_bootstrap, subject_bootstrap
from verikit.evaluate.metrics import eer, tar_at_far, wilson_interval
from verikit.evaluate.streaming import HistogramRoc
from verikit.errors import DataError

FARS = [0.5, 0.1, 0.01, 1.0]


@pytest.mark.parametrize("module", [B, S])
def test_docstring_examples_run(module) -> None:
    assert doctest.testmod(module).failed == 0


def _tied_case(rng: np.random.Generator, dtype=np.float64):
    """Small score sets on a coarse grid (many ties), random subjects."""
    ng, ni, q = int(rng.integers(1, 40)), int(rng.integers(1, 80)), int(rng.integers(1, 10))
    g = (rng.integers(0, q + 3, ng) / q).astype(dtype)
    i = (rng.integers(0, q, ni) / q).astype(dtype)
    n_s = int(rng.integers(2, 8))
    return g, rng.integers(0, n_s, ng), i, (rng.integers(0, n_s, ni), rng.integers(0, n_s, ni)), n_s


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_weights_reproduce_reference_metrics_exactly(dtype) -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        g, sg, i, si, n_s = _tied_case(rng, dtype)
        w = WeightedScores(g, sg, i, si)
        rep = w.replicate(np.ones(w.n_subjects, np.int64), FARS)
        assert np.array_equal(rep[0], tar_at_far(g, i, FARS))
        wg, wi = w.weights(np.ones(w.n_subjects, np.int64))
        assert w.eer(wg, wi) == eer(g, i)


def test_integer_weights_equal_repeating_the_scores() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        g, sg, i, (sa, sb), n_s = _tied_case(rng)
        w = WeightedScores(g, sg, i, (sa, sb))
        counts = rng.integers(0, 3, w.n_subjects)
        wg_raw, wi_raw = counts[sg], counts[sa] * counts[sb]
        if not wg_raw.any() or not wi_raw.any():
            assert w.replicate(counts, FARS) is None
            continue
        g_rep, i_rep = np.repeat(g, wg_raw), np.repeat(i, wi_raw)
        tar, e = w.replicate(counts, FARS)
        assert np.array_equal(tar, tar_at_far(g_rep, i_rep, FARS))
        assert e == eer(g_rep, i_rep)[0]


def test_weighted_scores_validation() -> None:
    with pytest.raises(DataError, match="genuine_subject"):
        WeightedScores([0.1, 0.2], [0], [0.1], ([0], [1]))
    with pytest.raises(DataError, match="impostor_subjects"):
        WeightedScores([0.1], [0], [0.1, 0.2], ([0], [1]))
    with pytest.raises(DataError, match="non-negative"):
        WeightedScores([0.1], [-1], [0.1], ([0], [1]))
    w = WeightedScores([0.1], [0], [0.1], ([0], [1]))
    with pytest.raises(DataError, match="n_boot"):
        subject_bootstrap(w, [0.1], n_boot=0)


# --------------------------------------------------------------------------- coverage by simulation

# Subject model: genuine score of subject s = MU + u_s + e, impostor score of (s, t) = v_s + v_t + e,
# u, v, e independent normals. Marginals are normal, so the population TAR at FAR and EER are exact:
SD_U, SD_V, SD_E, MU = 0.10, 0.06, 0.08, 0.35
SIG_G = (SD_U ** 2 + SD_E ** 2) ** 0.5
SIG_I = (2 * SD_V ** 2 + SD_E ** 2) ** 0.5
FAR = 0.05
PHI = NormalDist()
TRUE_TAR = 1 - PHI.cdf((SIG_I * PHI.inv_cdf(1 - FAR) - MU) / SIG_G)
TRUE_EER = 1 - PHI.cdf(MU / (SIG_I + SIG_G))


def _simulate(rng: np.random.Generator, n_subjects: int = 30, per_subject: int = 4, per_pair: int = 2):
    u = rng.normal(0, SD_U, n_subjects)
    v = rng.normal(0, SD_V, n_subjects)
    sg = np.repeat(np.arange(n_subjects), per_subject)
    g = MU + u[sg] + rng.normal(0, SD_E, sg.size)
    a, b = np.triu_indices(n_subjects, 1)
    sa, sb = np.repeat(a, per_pair), np.repeat(b, per_pair)
    i = v[sa] + v[sb] + rng.normal(0, SD_E, sa.size)
    return g, sg, i, (sa, sb)


def test_subject_bootstrap_covers_the_truth_and_pair_intervals_do_not() -> None:
    rng = np.random.default_rng(7)
    reps = 120
    hit_tar = hit_eer = hit_wilson = 0
    for r in range(reps):
        g, sg, i, si = _simulate(rng)
        w = WeightedScores(g, sg, i, si)
        res = subject_bootstrap(w, [FAR], n_boot=150, seed=r)
        lo, hi = res.tar_ci[0]
        hit_tar += lo <= TRUE_TAR <= hi
        hit_eer += res.eer_ci[0] <= TRUE_EER <= res.eer_ci[1]
        tar = tar_at_far(g, i, [FAR])[0]
        wl, wh = wilson_interval(int(round(tar * g.size)), g.size)
        hit_wilson += wl <= TRUE_TAR <= wh
    cov_tar, cov_eer, cov_wilson = hit_tar / reps, hit_eer / reps, hit_wilson / reps
    # nominal 95%; 120 replicates -> sd ~2%; percentile bootstrap with 30 subjects runs a little low
    assert cov_tar >= 0.85, cov_tar
    assert cov_eer >= 0.85, cov_eer
    # treating the 120 genuine pairs as independent ignores the subject effect: clearly worse
    assert cov_wilson < cov_tar - 0.1, (cov_wilson, cov_tar)


def test_paired_bootstrap_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(3)
    g, sg, i, si = _simulate(rng, n_subjects=40)
    base = WeightedScores(g, sg, i, si)
    same = paired_bootstrap(base, base, FAR, n_boot=200)
    assert same.difference == 0 and same.ci == (0.0, 0.0) and same.p_value == 1.0
    better = WeightedScores(g + 0.1, sg, i, si)  # every genuine score higher: TAR must rise
    t = paired_bootstrap(better, base, FAR, n_boot=200, seed=1)
    assert t.difference > 0 and t.ci[0] > 0 and t.p_value < 0.05
    assert t.tar_a == tar_at_far(g + 0.1, i, [FAR])[0] and t.tar_b == tar_at_far(g, i, [FAR])[0]
    noisy = WeightedScores(g + rng.normal(0, 0.02, g.size), sg, i, si)  # no systematic change
    n = paired_bootstrap(noisy, base, FAR, n_boot=200, seed=2)
    assert n.ci[0] <= 0 <= n.ci[1] and n.p_value > 0.05
    other = WeightedScores(g, sg + 100, i, si)
    with pytest.raises(DataError, match="different subjects"):
        paired_bootstrap(other, base, FAR)


# --------------------------------------------------------------------------- streaming bounds


def test_histogram_bounds_contain_the_exact_values() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        g = np.clip(rng.normal(0.5, 0.2, int(rng.integers(2, 400))), -1, 1).astype(np.float32)
        i = np.clip(rng.normal(0.0, 0.2, int(rng.integers(2, 3000))), -1, 1).astype(np.float32)
        h = HistogramRoc(bins=int(rng.integers(4, 4000)))
        cut_g, cut_i = int(rng.integers(0, g.size)), int(rng.integers(0, i.size))
        h.update(g[:cut_g], i[:cut_i])
        h.update(g[cut_g:], i[cut_i:])
        for r, exact in zip(h.tar_at_far(FARS), tar_at_far(g, i, FARS)):
            assert r.low <= exact <= r.high
            assert r.value == r.low
        e = h.eer()
        assert e.low <= eer(g, i)[0] <= e.high


def test_histogram_bounds_shrink_with_bins_and_fmr_stays_within_target() -> None:
    rng = np.random.default_rng(6)
    g = np.clip(rng.normal(0.5, 0.2, 5000), -1, 1)
    i = np.clip(rng.normal(0.0, 0.2, 50000), -1, 1)
    widths = []
    for bins in (64, 4096, 1 << 18):
        h = HistogramRoc(bins=bins)
        h.update(g, i)
        r = h.tar_at_far([1e-3])[0]
        assert np.mean(i >= r.threshold) <= 1e-3
        widths.append(r.high - r.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 1e-3


def test_histogram_rejects_out_of_range_and_empty() -> None:
    h = HistogramRoc(bins=10)
    with pytest.raises(DataError, match="outside"):
        h.update(genuine=[1.5])
    with pytest.raises(DataError, match="at least one genuine"):
        h.tar_at_far([0.1])
    with pytest.raises(DataError):
        HistogramRoc(bins=0)
