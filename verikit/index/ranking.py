"""1:N ranking: from the index's nearest templates (or every template) to the best identities.

Both functions run inside the caller's read snapshot, so the names they read belong to the same
database state the index was caught up to.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from ..errors import GalleryError
from ..structures import Hit
from .derived import CHUNK
from .searchcache import SearchCache, gather, names_of
from .store import decode_vectors


def most_templates(conn: sqlite3.Connection) -> int:
    """The most templates any identity has (1 for an empty gallery). It changes only when templates
    are added or removed, so a caller may keep it for as long as the template state is unchanged."""
    return int(conn.execute("SELECT COALESCE(MAX(n_templates), 1) FROM identities").fetchone()[0])


def index_search(conn: sqlite3.Connection, backend: Any, measure: Any, q: np.ndarray, top_k: int,
                 per_identity: int | None = None, cache: SearchCache | None = None) -> list[list[Hit]] | None:
    """Top-k identities per query through the index; None when the index names a template the
    database does not hold (the caller rebuilds the index and asks again). ``per_identity``:
    :func:`most_templates` for this snapshot when the caller has it (read here otherwise).
    ``cache``: the caller's :class:`~verikit.index.searchcache.SearchCache`, bound to this snapshot
    (names and re-rank vectors are read from SQLite without one)."""
    n_total = backend.ntotal
    if n_total == 0:
        return [[] for _ in range(len(q))]
    if per_identity is None:
        per_identity = most_templates(conn)
    # The k-th distinct identity's best template ranks at most (k-1)*T + 1 among templates,
    # where T is the most templates any identity has: fetching that many is exact.
    fetch = min(n_total, (top_k - 1) * max(per_identity, 1) + 1)
    width = int(getattr(backend, "rerank", 0) or 0)
    if width:  # a quantised index: widen its shortlist and rank that exactly by the stored templates
        scores, ids = backend.search(q, min(n_total, fetch * width))
        reranked = rerank(conn, q, scores, ids, fetch, backend.dim, "the gallery", cache)
        if reranked is None:
            return None
        scores, ids = reranked
    else:
        scores, ids = backend.search(q, fetch)
    names = cache.names(conn, ids) if cache is not None else names_of(conn, np.unique(ids[ids >= 0]))
    converted = np.asarray(measure.from_cosine(scores), dtype=np.float64)  # one call, not one per hit
    results = []
    for row_scores, row_ids in zip(converted.tolist(), ids.tolist()):  # Python numbers: a fast inner loop
        hits: list[Hit] = []
        seen: set[str] = set()
        for s, i in zip(row_scores, row_ids):
            if i < 0:
                break
            name = names.get(i)
            if name is None:
                return None
            if name not in seen:
                seen.add(name)
                hits.append(Hit(name, s))
                if len(hits) == top_k:
                    break
        results.append(hits)
    return results


def rerank(conn: sqlite3.Connection, q: np.ndarray, scores: np.ndarray, ids: np.ndarray, keep: int, dim: int,
           where: str, cache: SearchCache | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Re-score each query's shortlist ``ids`` exactly with the templates stored in SQLite (or the
    ``cache``'s copy of them) and keep the best ``keep`` (scores, ids; -1 pads). None when a
    shortlisted id is not in the database."""
    gathered = cache.gather(conn, ids) if cache is not None else gather(conn, ids, dim, where)
    if gathered is None:
        return None
    vecs, pos = gathered
    out_s = np.full((len(q), keep), -np.inf, np.float32)
    out_i = np.full((len(q), keep), -1, np.int64)
    for start in range(0, len(q), 256):  # bounded memory: 256 x shortlist x dim at a time
        sl = slice(start, start + 256)
        rows = ids[sl]
        if len(vecs):  # pos indexes vecs everywhere (its value where ids < 0 is masked just below)
            exact = np.einsum("qd,qsd->qs", q[sl], vecs[pos[sl]])
            exact[rows < 0] = -np.inf
        else:
            exact = np.full(rows.shape, -np.inf, np.float32)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :keep]
        top = np.take_along_axis(exact, order, 1)
        out_s[sl, :order.shape[1]] = top
        out_i[sl, :order.shape[1]] = np.where(top > -np.inf, np.take_along_axis(rows, order, 1), -1)
    return out_s, out_i


def exact_search(conn: sqlite3.Connection, measure: Any, q: np.ndarray, top_k: int, dim: int, where: str
                 ) -> list[list[Hit]]:
    """Brute force over every stored template with the gallery's measure: for L1, whose ranking
    an inner-product index cannot give. Exact; cost grows linearly with the gallery."""
    idents = {i: n for i, n in conn.execute("SELECT id, name FROM identities")}
    order = np.array(sorted(idents), dtype=np.int64)
    best = np.full((len(q), len(order)), -np.inf)
    cur = conn.execute("SELECT identity_id, id, vector FROM templates ORDER BY id")
    try:
        while rows := cur.fetchmany(CHUNK):
            owners = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            owner = np.searchsorted(order, owners)
            if len(order) == 0 or (owner >= len(order)).any() or (order[np.minimum(owner, len(order) - 1)] != owners).any():
                raise GalleryError(f"{where}: a template belongs to no enrolled identity: gallery.sqlite is damaged; "
                                   "restore it from a backup")
            scores = measure.scores(q, decode_vectors([r[1:] for r in rows], dim, where))
            for k in range(len(q)):  # best template per identity
                np.maximum.at(best[k], owner, scores[k])
    finally:
        cur.close()
    results = []
    for row in best:
        top = np.argsort(-row, kind="stable")[:top_k]
        results.append([Hit(idents[int(order[j])], float(row[j])) for j in top if np.isfinite(row[j])])
    return results


