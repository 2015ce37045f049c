"""Measuring recall, and choosing the search parameter of an approximate index to meet a target.

Recall@k is measured against the exact answer on queries the index has never seen. When the
gallery builds an approximate index it first draws a uniform sample of stored templates
(:func:`held_out_sample`: 500, or a fifth of the gallery when that is fewer) and keeps them OUT of
the index: out of the IVF training sample and out of the index itself (for HNSW, out of the
graph). The index is tuned with them as queries, against the exact top-k over the templates it
does hold (a full scan of the templates in SQLite, the sample excluded), and only then are they
added. A held-out template is then a fresh query in every sense that matters: a gallery template
used as a query while it is still IN the index is not one, because the search finds its own
entry and that entry's neighbours (an HNSW graph links each node to its neighbours, so the greedy
walk lands straight in the query's neighbourhood): at 1M x 256 that inflated HNSW's measured
recall from 0.934 to 0.960. The smallest ``nprobe`` (IVF) or ``efSearch`` (HNSW) whose measured
recall@k meets the target is kept; quantised layouts first try a shortlist widened 4x and then
16x, re-ranked exactly. The figure recorded is the measured one, with the number of queries and
its standard error (``recall_se``, over queries), so its precision is known.

Speed is measured too, on the same queries: the exact scan (a flat inner-product search over every
template, timed chunk by chunk while the exact answer is computed) against the approximate search
as the gallery runs it (shortlist and re-rank included). The record keeps the ratio as
``speedup``. The ``auto`` policy never serves an approximate index that does not pay for giving up
exactness: when no search parameter meets the recall, or the one that does is less than
:data:`MIN_SPEEDUP` times faster than the exact scan (data without neighbourhood structure, such
as isotropic random vectors, needs ``nprobe`` close to ``nlist``), the index falls back to exact
search and the record says why (``fallback``, ``reason``, and what was ``tried``). An explicitly
chosen layout (``faiss:ivf-pq`` ...) is kept as asked, with its measured ``speedup`` on record.
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
HELD_OUT_SHARE = 5  # at most 1/5 of the gallery is held out of the index while it is tuned
RERANK_WIDTHS = (4, 16)
# auto: the approximate search must be at least this many times faster than the exact scan, as
# measured, to replace it. Below that, exactness is worth more than the gain, and on a loaded
# machine timing noise alone can move a ratio near 1 either way.
MIN_SPEEDUP = 1.5
TIMING_REPEATS = 3


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


def held_out_sample(conn: sqlite3.Connection, count: int, dim: int, where: str, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The templates (ids, vectors) a new approximate index of ``count`` templates is tuned with,
    kept out of it until then: :data:`N_QUERIES`, or a fifth of the gallery when that is fewer
    (a small gallery is mostly left in the index it measures), at least one when there are two."""
    n = min(N_QUERIES, count // HELD_OUT_SHARE) if count >= 2 * HELD_OUT_SHARE else min(1, count // 2)
    return sample_queries(conn, n, dim, where, seed)


def exact_neighbours(chunks: Iterable[tuple[np.ndarray, np.ndarray]], qids: np.ndarray, q: np.ndarray, k: int
                     ) -> np.ndarray:
    """(Q, k) ids of each query's exact top-k by inner product over all chunks, every query id
    (``qids``, the held-out sample) excluded; -1 where there are fewer than k others."""
    return exact_scan(chunks, qids, q, k)[0]


def exact_scan(chunks: Iterable[tuple[np.ndarray, np.ndarray]], qids: np.ndarray, q: np.ndarray, k: int
               ) -> tuple[np.ndarray, float]:
    """:func:`exact_neighbours`, and the seconds an exact flat scan of all chunks (less the held-out
    queries, as the index being measured) takes for these queries: each chunk is searched by
    ``faiss.IndexFlatIP`` (the exact index the gallery would otherwise use; its cost is linear in
    the number of templates, so the sum over chunks is the cost of one scan), best of two runs per
    chunk.

    Timed on faiss's per-query kernel, not the matrix product the gallery uses for batches of
    queries (:func:`~verikit.index.faiss_backend.use_blas_from`): the speed ``auto`` weighs an
    approximate index against is the one-query-at-a-time speed of serving, where the matrix
    product does not apply (in batches, exact search is 5-10x faster again)."""
    import faiss

    from .faiss_backend import use_blas_from

    q = np.ascontiguousarray(q, dtype=np.float32)
    use_blas_from(len(q) + 1, q.shape[1])  # this batch stays on the per-query kernel
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    seconds = 0.0
    for ids, vecs in chunks:
        keep = ~np.isin(ids, qids)  # held out: not in the index the queries measure, nor in the truth
        ids, vecs = ids[keep], vecs[keep]
        if not len(ids):
            continue
        flat = faiss.IndexFlatIP(q.shape[1])
        flat.add(np.ascontiguousarray(vecs, dtype=np.float32))
        take = min(k, len(ids))
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            s, pos = flat.search(q, take)
            runs.append(time.perf_counter() - started)
        seconds += min(runs)
        found = ids[np.maximum(pos, 0)]
        s[pos < 0] = -np.inf
        cs = np.concatenate([best_s, s], axis=1)
        ci = np.concatenate([best_i, found], axis=1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    best_i[~np.isfinite(best_s)] = -1
    return best_i, seconds


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (ids >= 0 in ``truth``) that ``found`` (same rows) contains."""
    hits, total = _hits(found, truth)
    return float(hits.sum() / total.sum()) if total.sum() else 1.0


def recall_se(found: np.ndarray, truth: np.ndarray) -> float:
    """Standard error of :func:`recall_at_k` over queries (each query's recall is one observation:
    a query's k answers are not independent of each other)."""
    hits, total = _hits(found, truth)
    per_query = hits[total > 0] / total[total > 0]
    return float(per_query.std(ddof=1) / np.sqrt(len(per_query))) if len(per_query) > 1 else 0.0


def _hits(found: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many of its true neighbours were found, and how many it has."""
    hits, total = np.zeros(len(truth)), np.zeros(len(truth))
    for r, (f, t) in enumerate(zip(found, truth)):
        t = t[t >= 0]
        total[r] = len(t)
        hits[r] = len(np.intersect1d(f[f >= 0], t))
    return hits, total


def approximate_neighbours(conn: sqlite3.Connection, backend: Any, q: np.ndarray, k: int, dim: int, where: str
                           ) -> np.ndarray:
    """(Q, k) ids through the index as the gallery searches it (shortlist + re-rank)."""
    return approximate_search(conn, backend, q, k, dim, where)[0]


def approximate_search(conn: sqlite3.Connection, backend: Any, q: np.ndarray, k: int, dim: int, where: str
                       ) -> tuple[np.ndarray, float]:
    """:func:`approximate_neighbours`, and the seconds the search took (index search and exact
    re-ranking, as in the gallery)."""
    width = backend.rerank
    fetch = min(backend.ntotal, k * width) if width else k
    started = time.perf_counter()
    scores, ids = backend.search(q, fetch)
    if width:
        reranked = rerank(conn, q, scores, ids, k, dim, where)
        if reranked is not None:
            scores, ids = reranked
    seconds = time.perf_counter() - started
    out = np.full((len(q), k), -1, np.int64)
    out[:, :min(k, ids.shape[1])] = ids[:, :k]
    return out, seconds


def tune(conn: sqlite3.Connection, backend: Any, templates: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]],
         dim: int, where: str, held: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Measure recall@k and speed of ``backend`` (a :class:`~verikit.index.approximate.ManagedIndex`
    in an approximate layout holding every template but the ``held`` ones, (ids, vectors) from
    :func:`held_out_sample`), set its search parameter to the cheapest value meeting the spec's
    target, add the held-out templates, and return the tuning record (also stored on the backend).
    Under ``auto``, an index that misses the target or is not :data:`MIN_SPEEDUP` times faster than
    the exact scan is refilled as an exact one (see the module docstring)."""
    spec = backend.spec
    started = time.perf_counter()
    qids, q = held
    n = backend.ntotal + len(qids)
    k = max(1, min(spec.k, backend.ntotal))
    truth, exact_s = exact_scan(templates(), qids, q, k)
    exact_s = max(exact_s, 1e-9)
    widths = RERANK_WIDTHS if spec.quantised else (0,)
    auto = spec.kind == "auto"

    def timed() -> tuple[np.ndarray, float]:
        return approximate_search(conn, backend, q, k, dim, where)

    best: tuple[float, int, int, float, np.ndarray] | None = None
    chosen = None
    stopped = False
    for width in widths:
        backend.tuning = {"rerank": width}
        for value in backend.param_values():
            backend.set_param(value)
            found, seconds = timed()
            measured = recall_at_k(found, truth)
            if best is None or measured > best[0]:
                best = (measured, value, width, seconds, found)
            if measured >= spec.recall:
                chosen = (measured, value, width, seconds, found)
                break
            if auto and seconds >= exact_s:
                stopped = True  # already as slow as the exact scan: a larger value only costs more
                break
        if chosen is not None:
            break
    measured, value, width, seconds, found = chosen or best or (1.0, backend.param_values()[-1], 0, exact_s, truth)
    backend.tuning = {"rerank": width}
    backend.set_param(value)
    for _ in range(TIMING_REPEATS - 1):  # the speed the decision rests on: best of a few runs
        seconds = min(seconds, timed()[1])
    speedup = exact_s / max(seconds, 1e-9)
    tuning = {"layout": backend.layout, "param": backend.param_name(), "value": int(value), "rerank": int(width),
              "k": k, "target": spec.recall, "recall": round(float(measured), 4),
              "recall_se": round(recall_se(found, truth), 4), "met": chosen is not None,
              "speedup": round(float(speedup), 2), "queries": int(len(qids)), "held_out": True, "trained_at": int(n),
              "tuned_in_s": round(time.perf_counter() - started, 2)}
    backend.tuning = tuning
    if auto and (chosen is None or speedup < MIN_SPEEDUP):
        why = (f"{backend.layout} {'became as slow as the exact scan before it met' if stopped else 'never met'} "
               f"recall@{k} {spec.recall:g} (best {tuning['recall']:g} at {tuning['param']}={value}, "
               f"{speedup:.2f}x the exact scan's speed)"
               if chosen is None else
               f"{backend.layout} needed {tuning['param']}={value} for recall@{k} {tuning['recall']:g} "
               f"(target {spec.recall:g}) and was then {speedup:.2f}x the exact scan's speed "
               f"(auto needs at least {MIN_SPEEDUP:g}x)")
        tried = {key: tuning[key] for key in ("layout", "param", "value", "rerank", "recall", "met", "speedup")}
        record = {"layout": "Flat", "fallback": "exact", "reason": f"{why}: searching exactly",
                  "k": k, "target": spec.recall, "recall": 1.0, "met": True, "queries": int(len(qids)),
                  "trained_at": int(n), "tried": tried, "tuned_in_s": round(time.perf_counter() - started, 2)}
        backend.use_exact(templates(), record)  # every template, the held-out ones included
        return record
    if len(qids):
        backend.add(qids, q)  # measured: now the held-out templates join the index
    return tuning
