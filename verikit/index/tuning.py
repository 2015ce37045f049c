"""Measuring recall, and choosing the search parameter of an approximate index to meet a target.

Recall@k is measured against the exact answer on held-out gallery vectors: a sample of stored
templates is used as queries, each excluded from its own answer (so it is held out of the
gallery it searches), and the exact top-k over every other template is computed by a full scan
of the templates in SQLite. The smallest ``nprobe`` (IVF) or ``efSearch`` (HNSW) whose measured
recall@k meets the target is kept; quantised layouts first try a shortlist widened 4x and then
16x, re-ranked exactly. The figure recorded is the measured one, with the number of queries, so
its precision is known (500 queries x k=10 answers: standard error ~0.3% at recall 0.95).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Callable, Iterable

import numpy as np

from .ranking import rerank
from .store import decode_vectors

N_QUERIES = 500
RERANK_WIDTHS = (4, 16)


def sample_queries(conn: sqlite3.Connection, n: int, dim: int, where: str, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Up to n stored templates (ids, vectors), drawn uniformly by id without a full scan."""
    lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM templates").fetchone()
    if lo is None:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    rng = np.random.default_rng(seed)
    found: dict[int, np.ndarray] = {}
    for _ in range(8):  # ids have gaps after removals: draw again for what is missing
        want = n - len(found)
        if want <= 0:
            break
        draw = np.unique(rng.integers(int(lo), int(hi) + 1, size=min(4 * want, int(hi) - int(lo) + 1)))
        draw = [int(i) for i in draw if int(i) not in found]
        rows = conn.execute("SELECT id, vector FROM templates WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                            (json.dumps(draw),)).fetchall()
        if rows:
            vecs = decode_vectors(rows, dim, where)
            for (i, _), v in zip(rows, vecs):
                if len(found) < n:
                    found[int(i)] = v
    ids = np.array(sorted(found), dtype=np.int64)
    return ids, (np.stack([found[int(i)] for i in ids]) if len(ids) else np.zeros((0, dim), np.float32))


def exact_neighbours(chunks: Iterable[tuple[np.ndarray, np.ndarray]], qids: np.ndarray, q: np.ndarray, k: int
                     ) -> np.ndarray:
    """(Q, k) ids of each query's exact top-k by inner product over all chunks, itself excluded;
    -1 where there are fewer than k others."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for ids, vecs in chunks:
        s = q @ vecs.T
        s[np.equal.outer(qids, ids)] = -np.inf  # held out: a query is not its own neighbour
        take = min(k, s.shape[1])
        part = np.argpartition(-s, take - 1, axis=1)[:, :take]
        cs = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        ci = np.concatenate([best_i, ids[part]], axis=1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    best_i[~np.isfinite(best_s)] = -1
    return best_i


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (ids >= 0 in ``truth``) that ``found`` (same rows) contains."""
    hits = total = 0
    for f, t in zip(found, truth):
        t = t[t >= 0]
        total += len(t)
        hits += len(np.intersect1d(f[f >= 0], t))
    return hits / total if total else 1.0


def approximate_neighbours(conn: sqlite3.Connection, backend: Any, qids: np.ndarray, q: np.ndarray, k: int,
                           dim: int, where: str) -> np.ndarray:
    """(Q, k) ids through the index as the gallery searches it (shortlist + re-rank), self excluded."""
    want = k + 1
    width = backend.rerank
    fetch = min(backend.ntotal, want * width) if width else want
    scores, ids = backend.search(q, fetch)
    if width:
        reranked = rerank(conn, q, scores, ids, want, dim, where)
        if reranked is not None:
            scores, ids = reranked
    out = np.full((len(q), k), -1, np.int64)
    for r, (row, own) in enumerate(zip(ids, qids)):
        row = row[(row >= 0) & (row != own)][:k]
        out[r, :len(row)] = row
    return out


def tune(conn: sqlite3.Connection, backend: Any, templates: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
         dim: int, where: str, *, n_queries: int = N_QUERIES, seed: int = 0) -> dict[str, Any]:
    """Measure recall@k of ``backend`` (a :class:`~verikit.index.approximate.ManagedIndex` in an
    approximate layout), set its search parameter to the cheapest value meeting the spec's target,
    and return the tuning record (also stored on the backend)."""
    spec = backend.spec
    started = time.perf_counter()
    n = backend.ntotal
    k = max(1, min(spec.k, n - 1))
    qids, q = sample_queries(conn, min(n_queries, n), dim, where, seed)
    truth = exact_neighbours(templates(), qids, q, k)
    widths = RERANK_WIDTHS if spec.quantised else (0,)
    best: tuple[float, int, int] | None = None
    chosen = None
    for width in widths:
        backend.tuning = {"rerank": width}
        for value in backend.param_values():
            backend.set_param(value)
            measured = recall_at_k(approximate_neighbours(conn, backend, qids, q, k, dim, where), truth)
            if best is None or measured > best[0]:
                best = (measured, value, width)
            if measured >= spec.recall:
                chosen = (measured, value, width)
                break
        if chosen is not None:
            break
    measured, value, width = chosen or best or (1.0, backend.param_values()[-1], 0)
    backend.set_param(value)
    tuning = {"layout": backend.layout, "param": backend.param_name(), "value": int(value), "rerank": int(width),
              "k": k, "target": spec.recall, "recall": round(float(measured), 4), "met": chosen is not None,
              "queries": int(len(qids)), "trained_at": int(n), "tuned_in_s": round(time.perf_counter() - started, 2)}
    backend.tuning = tuning
    return tuning
