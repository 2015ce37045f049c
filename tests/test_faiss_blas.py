"""The exact index hands batches of queries to BLAS (verikit.index.faiss_backend.use_blas_from).

faiss 1.15 scans batches under 128,000 / dim queries one query at a time; verikit lowers the
switch to 4 queries for the dimension it searches. These tests check the setting verikit leaves
and that the matrix-product kernel returns the same neighbours as the per-query one."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from verikit.index.faiss_backend import BLAS_FROM_QUERIES, FaissIndex


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dim", [64, 256])
def test_a_search_sets_the_blas_switch_for_its_dimension(dim):
    before = faiss.cvar.distance_compute_blas_threshold
    try:
        faiss.cvar.distance_compute_blas_threshold = 128000  # faiss 1.15's default
        index = FaissIndex(dim)
        index.add(np.arange(100), _unit(100, dim, 0))
        index.search(_unit(1, dim, 1), 5)
        assert faiss.cvar.distance_compute_blas_threshold == BLAS_FROM_QUERIES * dim
    finally:
        faiss.cvar.distance_compute_blas_threshold = before


def test_batched_and_one_at_a_time_searches_agree():
    """8 queries (the BLAS kernel after the switch) give the neighbours 8 single queries give (the
    per-query kernel), scores equal to float rounding."""
    dim = 128
    vectors, queries = _unit(5000, dim, 2), _unit(8, dim, 3)
    index = FaissIndex(dim)
    index.add(np.arange(5000) * 7 + 3, vectors)
    scores, ids = index.search(queries, 10)
    single = [index.search(q[None], 10) for q in queries]
    assert np.array_equal(ids, np.concatenate([i for _, i in single]))
    assert np.allclose(scores, np.concatenate([s for s, _ in single]), atol=1e-5)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10] * 7 + 3
    assert np.array_equal(ids, exact)
