"""The fast ROC paths against their oracles, on random scores with ties, every float dtype and
forced coarse bins: :func:`verikit.evaluate.metrics.roc` must equal scikit-learn's
``roc_curve(drop_intermediate=False)`` array for array, and :func:`verikit.evaluate.summary.roc_summary`
(histogram-bucketed) must equal the exact reference functions bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from verikit.evaluate import summary as summary_module
from verikit.evaluate.metrics import auc, eer, roc, tar_at_far

FARS = (0.5, 0.1, 1e-2, 1e-3, 1.0)


@st.composite
def score_sets(draw):
    """Genuine and impostor scores: few distinct values (many ties) or many, any float dtype,
    sometimes a degenerate class (one value repeated)."""
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    other = draw(st.sampled_from([dtype, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_g, n_i = draw(st.integers(1, 120)), draw(st.integers(1, 400))
    decimals = draw(st.integers(0, 4))
    g = np.round(rng.normal(0.5, 0.3, n_g), decimals).astype(dtype)
    i = np.round(rng.normal(0.2, 0.3, n_i), decimals).astype(other)
    if draw(st.booleans()) and draw(st.booleans()):
        i[:] = i[0]
    return g, i


@given(score_sets())
def test_roc_is_identical_to_sklearn_roc_curve(scores):
    from sklearn.metrics import roc_curve

    g, i = scores
    common = np.result_type(g.dtype, i.dtype)
    y = np.r_[np.ones(g.size), np.zeros(i.size)]
    fpr, tpr, thresholds = roc_curve(y, np.r_[g.astype(common), i.astype(common)], drop_intermediate=False)
    curve = roc(g, i)
    assert np.array_equal(curve.fmr, fpr)
    assert np.array_equal(curve.tmr, tpr)
    assert np.array_equal(curve.thresholds, thresholds)


@pytest.mark.parametrize("bins", [4, 64, None])
@given(scores=score_sets())
def test_roc_summary_equals_the_exact_reference(bins, scores):
    g, i = scores
    old = summary_module.BINS
    summary_module.BINS = bins or old  # coarse bins: many scores share one, the exact paths must cope
    try:
        s = summary_module.roc_summary(g, i, FARS, points=40)
    finally:
        summary_module.BINS = old
    assert s.auc == auc(g, i)
    assert (s.eer, s.eer_threshold) == eer(g, i)
    assert s.tars == tuple(tar_at_far(g, i, FARS).tolist())
    curve = roc(g, i)
    for f, t, threshold in zip(s.curve_fmr, s.curve_tmr, s.curve_thresholds):
        k = np.flatnonzero(curve.thresholds == threshold) if np.isfinite(threshold) else [0]
        if len(k):  # an observed score: the very point of the full curve
            assert (curve.fmr[k[0]], curve.tmr[k[0]]) == (f, t)
        else:       # a threshold between scores: the point of the next observed score up
            j = np.flatnonzero(curve.thresholds > threshold)[-1]
            assert (curve.fmr[j], curve.tmr[j]) == (f, t)


def test_roc_summary_on_ten_thousand_scores_with_default_bins():
    rng = np.random.default_rng(3)
    g = rng.normal(0.55, 0.15, 2_000).astype(np.float32)
    i = rng.normal(0.05, 0.12, 8_000).astype(np.float32)
    s = summary_module.roc_summary(g, i, FARS)
    assert s.auc == auc(g, i) and (s.eer, s.eer_threshold) == eer(g, i)
    assert s.tars == tuple(tar_at_far(g, i, FARS).tolist())


@pytest.mark.parametrize("bins", [4, None])
@given(scores=score_sets(), seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 0.6))
def test_roc_summary_never_accepts_an_unscored_comparison(bins, scores, seed, share):
    """UNSCORED (-inf, a failure to acquire) stays in the counts, below every threshold: the
    thresholds never go under the lowest real score, and every rate is a brute-force count."""
    from verikit.evaluate.metrics import UNSCORED

    g, i = (a.astype(np.float64) if a.dtype == np.float16 else a.copy() for a in scores)
    rng = np.random.default_rng(seed)
    g[rng.random(g.size) < share] = UNSCORED
    i[rng.random(i.size) < share] = UNSCORED
    real = np.r_[g[np.isfinite(g)], i[np.isfinite(i)]]
    if not real.size:
        with pytest.raises(Exception, match="no comparison could be scored"):
            summary_module.roc_summary(g, i, FARS)
        return
    floor = real.min()
    old = summary_module.BINS
    summary_module.BINS = bins or old
    try:
        s = summary_module.roc_summary(g, i, FARS, points=40)
    finally:
        summary_module.BINS = old
    g64, i64 = g.astype(np.float64), i.astype(np.float64)
    for far, t, tar in zip(FARS, s.thresholds, s.tars):
        assert t >= floor and np.isfinite(t)
        assert tar == np.count_nonzero(g64 >= t) / g.size
        assert np.count_nonzero(i64 >= t) <= far * i.size + 1e-9  # the FMR target holds
        lower = real[real < t]
        if far * i.size >= i.size:  # every impostor may be accepted: the lowest real impostor score (or floor)
            assert t == max(float(i64.min()), floor)
        elif lower.size:  # the next real score down would break the target
            assert np.count_nonzero(i64 >= lower.max()) > far * i.size + 1e-9
    assert s.eer_threshold >= floor
    fmr, fnmr = np.count_nonzero(i64 >= s.eer_threshold) / i.size, np.count_nonzero(g64 < s.eer_threshold) / g.size
    assert s.eer == (fmr + fnmr) / 2
    above = (g64[:, None] > i64[None, :]).sum() + 0.5 * (g64[:, None] == i64[None, :]).sum()
    assert s.auc == pytest.approx(above / (g.size * i.size), abs=1e-12)
    assert np.all(s.curve_thresholds >= floor) and s.curve_fmr.max() <= np.count_nonzero(np.isfinite(i)) / i.size
