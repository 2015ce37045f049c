"""Score normalisation (Z/T/S/adaptive S-norm) against hand-computed small arrays."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from verikit.calibrate import normalization as N
from verikit.calibrate.normalization import cohort_stats, normalize, normalize_pairs
from verikit.errors import DataError


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


# Two embeddings at 0 and 90 degrees; a cohort at 0, 60, 90, 180 degrees.
E = np.array([_unit(0), _unit(90)])
C = np.array([_unit(0), _unit(60), _unit(90), _unit(180)])
# Cohort scores by hand: e0 -> [1, .5, 0, -1]; e1 -> [0, .866025, 1, 0].
S0 = [1.0, 0.5, 0.0, -1.0]
S1 = [0.0, math.sqrt(3) / 2, 1.0, 0.0]


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def test_docstring_examples_run() -> None:
    assert doctest.testmod(N).failed == 0


def test_cohort_stats_by_hand() -> None:
    st = cohort_stats(E, C)
    for k, xs in enumerate((S0, S1)):
        m, sd = _mean_sd(xs)
        assert st.mean[k] == pytest.approx(m, abs=1e-6)
        assert st.std[k] == pytest.approx(sd, abs=1e-6)


def test_cohort_stats_top_k_by_hand() -> None:
    st = cohort_stats(E, C, top_k=2)
    m0, sd0 = _mean_sd([1.0, 0.5])
    m1, sd1 = _mean_sd([math.sqrt(3) / 2, 1.0])
    assert st.mean.tolist() == pytest.approx([m0, m1], abs=1e-6)
    assert st.std.tolist() == pytest.approx([sd0, sd1], abs=1e-6)
    assert st.top_k == 2


@pytest.mark.parametrize("method", ["z", "t", "s", "as"])
def test_normalize_pairs_by_hand(method: str) -> None:
    raw = 0.0  # cos(0 deg, 90 deg)
    k = 2 if method == "as" else None
    pick = (lambda xs: sorted(xs)[-2:]) if k else (lambda xs: xs)
    m0, sd0 = _mean_sd(pick(S0))
    m1, sd1 = _mean_sd(pick(S1))
    z, t = (raw - m0) / sd0, (raw - m1) / sd1
    expected = {"z": z, "t": t, "s": (z + t) / 2, "as": (z + t) / 2}[method]
    got = normalize_pairs([raw], E, [0], [1], C, method, top_k=k)
    assert got[0] == pytest.approx(expected, abs=1e-5)


def test_z_and_t_swap_with_the_sides_and_s_is_symmetric() -> None:
    z_ab = normalize_pairs([0.0], E, [0], [1], C, "z")
    t_ba = normalize_pairs([0.0], E, [1], [0], C, "t")
    assert z_ab[0] == pytest.approx(t_ba[0])
    s_ab = normalize_pairs([0.0], E, [0], [1], C, "s")
    s_ba = normalize_pairs([0.0], E, [1], [0], C, "s")
    assert s_ab[0] == pytest.approx(s_ba[0])


def test_normalisation_is_affine_per_side_and_keeps_order_within_one_reference() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    coh = rng.normal(size=(20, 8))
    coh /= np.linalg.norm(coh, axis=1, keepdims=True)
    a = np.zeros(5, int)
    b = np.arange(1, 6)
    raw = np.einsum("ij,ij->i", emb[a], emb[b])
    z = normalize_pairs(raw, emb, a, b, coh, "z")
    # same reference: z-norm is one affine map with positive slope, so the ranking is unchanged
    assert (np.argsort(z) == np.argsort(raw)).all()
    st = cohort_stats(emb, coh)
    assert z == pytest.approx((raw - st.mean[0]) / st.std[0])


def test_errors() -> None:
    with pytest.raises(DataError, match="unknown normalisation"):
        normalize([0.1], [0], [1], [0], [1], "q")
    with pytest.raises(DataError, match="needs top_k"):
        normalize_pairs([0.0], E, [0], [1], C, "as")
    with pytest.raises(DataError, match="top_k must be in"):
        cohort_stats(E, C, top_k=5)
    with pytest.raises(DataError, match="dimension"):
        cohort_stats(E, np.ones((3, 3)) / math.sqrt(3))
    with pytest.raises(DataError, match="zero spread"):
        normalize_pairs([0.0], E, [0], [1], np.array([_unit(0), _unit(0)]), "s")
    with pytest.raises(DataError, match="at least two"):
        cohort_stats(E, C[:1])
    with pytest.raises(DataError, match="NaN"):
        cohort_stats(np.array([[np.nan, 1.0]]), C)
