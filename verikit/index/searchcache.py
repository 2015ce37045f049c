"""What a search reads from SQLite besides the index, kept in memory while the database is unchanged.

After the index answers, a search reads two things from ``gallery.sqlite`` in its snapshot: the
identity name of each hit (template id -> name) and, for a quantised index, the stored vectors of
its widened shortlist for the exact re-rank. One query at a time, those reads cost more than the
index itself (measured at 50k x 256: ~150 us for ten names, ~600 us for 160 vectors). This module
keeps them in memory, each under a key that the search's one freshness statement already reads
(:func:`verikit.index.store.db_state_and_version`), so a change by any process invalidates them:

* **names** are keyed on SQLite's ``PRAGMA data_version`` (moves when ANY other connection, in this
  process or another, commits anything) and this connection's ``total_changes`` (moves with its own
  writes). So a rename, a removal or an enroll anywhere empties the map before the next search
  uses it; nothing about what changed is inferred.
* **vectors** are keyed on the same, plus the template state (generation, count, id hash, id
  sequence). verikit never updates a template (ids are never reused), so only adding or removing
  templates could make the copy wrong; keying on any commit also covers a template rewritten by
  another tool, at the cost of a reload after a rename. A removal anywhere drops the copy that holds
  the removed vectors on this process's next call, as it drops them from this process's index (a
  removal by this process drops it at once).

Loading either in full costs a scan, so it is bought only when it pays (the ski-rental rule): while
a key is fresh, each search reads what it needs from SQLite as before and adds the time that took;
once that sum reaches the measured (or estimated) cost of a full load, the full copy is loaded.
A gallery that changes between every few searches therefore costs at most about twice what it
cost before; one that stays unchanged pays one load and then no reads at all. Memory: the names
map holds two int64 arrays per template plus one string per identity (about 3 MB at 50k templates
and identities); the vector copy holds ``templates x dim x 4`` bytes (51 MB at 50k x 256) and is
skipped above :func:`vector_cache_bytes` (``VERIKIT_RERANK_CACHE_MB``, default 256; 0 turns it off), where the
re-rank keeps reading from SQLite.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from typing import Any

import numpy as np

from ..errors import GalleryError
from .store import decode_vectors

DEFAULT_VECTOR_CACHE_MB = 256  # quantised indexes are chosen to save memory: a 1M x 256 float copy (1 GB) is not kept by default
VECTOR_CACHE_BYTES: int | None = None  # set (tests, embedders) to override the environment


def vector_cache_bytes() -> int:
    """The most bytes a re-rank vector copy may take: ``VERIKIT_RERANK_CACHE_MB`` (default
    :data:`DEFAULT_VECTOR_CACHE_MB`; 0 turns the copy off), read when a copy is considered."""
    if VECTOR_CACHE_BYTES is not None:
        return VECTOR_CACHE_BYTES
    raw = os.environ.get("VERIKIT_RERANK_CACHE_MB", "").strip()
    if not raw:
        return DEFAULT_VECTOR_CACHE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not (math.isfinite(mb) and mb >= 0):
        raise GalleryError(f"VERIKIT_RERANK_CACHE_MB={raw!r}: expected a number of megabytes >= 0 (0 turns the copy off)")
    return int(mb * (1 << 20))
# Before the first full load is measured: a guess per row, on the high side (a load is bought later).
_NAME_LOAD_S_PER_ROW = 2e-6
_VECTOR_LOAD_S_PER_ROW = 10e-6


_SENTINEL = np.iinfo(np.int64).max  # ends the sorted id arrays: larger than any template id


class _Rental:
    """The ski-rental bookkeeping of one cache: time spent on partial reads under the current key,
    against the cost of one full load (estimated per row until one has been measured)."""

    def __init__(self, per_row: float) -> None:
        self.key: Any = None
        self.spent = 0.0
        self.per_row = per_row
        self.loaded = False

    def reset(self, key: Any) -> bool:
        """Start over under ``key`` if it is new; True when it was (the caller drops its copy)."""
        if key == self.key:
            return False
        self.key, self.spent, self.loaded = key, 0.0, False
        return True

    def pays(self, rows: int) -> bool:
        return self.spent >= self.per_row * max(rows, 1)


class SearchCache:
    """The names map and vector copy of one :class:`~verikit.index.gallery.Gallery` (one connection).

    Used only inside the search's read snapshot, after :meth:`at` was given that snapshot's keys;
    the owning Gallery's lock serialises its use.
    """

    def __init__(self, dim: int, where: str) -> None:
        self.dim, self.where = dim, where
        self._names = _Rental(_NAME_LOAD_S_PER_ROW)
        self._tids = np.zeros(0, np.int64)      # every template id, sorted (when loaded)
        self._owner = np.zeros(0, np.int64)     # the identity id of each
        self._name_of: dict[int, str] = {}      # identity id -> name
        self._vectors = _Rental(_VECTOR_LOAD_S_PER_ROW)
        self._vtids = np.zeros(0, np.int64)
        self._vecs = np.zeros((0, dim), np.float32)
        self._count = 0

    def at(self, version: tuple[int, int], template_state: tuple[int, int, int, int]) -> None:
        """Bind to the snapshot about to be searched: drop what a change has made wrong."""
        if self._names.reset(version):
            self._tids, self._owner, self._name_of = np.zeros(0, np.int64), np.zeros(0, np.int64), {}
        if self._vectors.reset((version, template_state)):
            self._vtids, self._vecs = np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        self._count = template_state[1]

    def clear(self) -> None:
        """Forget everything (the index and the database disagreed: read afresh)."""
        self._names.reset(None)
        self._vectors.reset(None)
        self.at((-1, -1), (-1, -1, -1, -1))

    @staticmethod
    def _load(load: Any, rental: _Rental, conn: sqlite3.Connection) -> None:
        """A full load that meets a damaged row (or counts that disagree) gives up the copy for this
        key: searches then read only their own rows, so one bad template or name fails only the
        searches that reach it, as without the cache (and is named there)."""
        try:
            load(conn)
        except (GalleryError, sqlite3.DatabaseError, UnicodeDecodeError):
            pass
        if not rental.loaded:
            rental.spent = -math.inf

    # -- names -------------------------------------------------------------------------------------
    def names(self, conn: sqlite3.Connection, ids: np.ndarray) -> dict[int, str]:
        """Template id -> identity name for the ``ids`` (any shape; -1 pads) that exist."""
        if not self._names.loaded and self._names.pays(self._count):
            self._load(self._load_names, self._names, conn)
        if not self._names.loaded:
            t = time.perf_counter()
            found = names_of(conn, np.unique(ids[ids >= 0]))
            self._names.spent += time.perf_counter() - t
            return found
        flat = ids.ravel()
        pos = np.searchsorted(self._tids, flat)  # within the arrays: they end with a sentinel
        held = self._tids[pos] == flat
        # An owner missing from identities (damage) maps to None, which the caller treats like an id
        # the join left out.
        get = self._name_of.get
        return {i: get(o) for i, o, h in zip(flat.tolist(), self._owner[pos].tolist(), held.tolist()) if h}

    def _load_names(self, conn: sqlite3.Connection) -> None:
        t = time.perf_counter()
        # SQLite scans the (identity_id, id) index for this (it covers it): no template row, with its
        # vector, is read.
        rows = conn.execute("SELECT id, identity_id FROM templates").fetchall()
        tids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        owner = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        order = np.argsort(tids, kind="stable")
        self._tids = np.append(tids[order], _SENTINEL)  # every searchsorted position is then an index
        self._owner = np.append(owner[order], -1)
        self._name_of = dict(conn.execute("SELECT id, name FROM identities"))
        self._names.loaded = True
        self._names.per_row = (time.perf_counter() - t) / max(len(rows), 1)

    # -- vectors ---------------------------------------------------------------------------------
    def gather(self, conn: sqlite3.Connection, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """:func:`gather` from the copy when it is loaded (or loading it now pays)."""
        if (not self._vectors.loaded and self._vectors.pays(self._count)
                and self._count * self.dim * 4 <= vector_cache_bytes()):  # the setting is read only when a load is due
            self._load(self._load_vectors, self._vectors, conn)
        if not self._vectors.loaded:
            t = time.perf_counter()
            found = gather(conn, ids, self.dim, self.where)
            self._vectors.spent += time.perf_counter() - t
            return found
        valid = ids >= 0
        pos = np.searchsorted(self._vtids, ids)  # within the arrays: they end with a sentinel
        if not ((self._vtids[pos] == ids) | ~valid).all():
            return None
        return self._vecs, pos

    def _load_vectors(self, conn: sqlite3.Connection) -> None:
        t = time.perf_counter()
        vecs = np.empty((self._count + 1, self.dim), np.float32)  # + the sentinel's row
        tids = np.empty(self._count + 1, np.int64)
        n = 0
        cur = conn.execute("SELECT id, vector FROM templates ORDER BY id")
        try:
            while rows := cur.fetchmany(65_536):
                if n + len(rows) > self._count:  # more rows than the meta table counts: read as before
                    return
                tids[n:n + len(rows)] = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                vecs[n:n + len(rows)] = decode_vectors(rows, self.dim, self.where)  # each checked
                n += len(rows)
        finally:
            cur.close()
        tids[n], vecs[n] = _SENTINEL, 0.0
        self._vtids, self._vecs = tids[:n + 1], vecs[:n + 1]
        self._vectors.loaded = True
        self._vectors.per_row = (time.perf_counter() - t) / max(n, 1)


def names_of(conn: sqlite3.Connection, template_ids: np.ndarray) -> dict[int, str]:
    """Template id -> identity name, read in one statement (ids that do not exist are left out)."""
    import json

    if len(template_ids) == 0:
        return {}
    rows = conn.execute("SELECT t.id, i.name FROM templates t JOIN identities i ON i.id = t.identity_id "
                        "WHERE t.id IN (SELECT value FROM json_each(?))", (json.dumps(template_ids.tolist()),))
    return dict(rows)


def gather(conn: sqlite3.Connection, ids: np.ndarray, dim: int, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(vectors, pos)``: the stored (checked) vectors of ``ids`` (any shape; -1 pads) read in one
    statement, with ``vectors[pos]`` the vector of each id (pos is meaningless where ids < 0);
    None when one of them is not in the database."""
    import json

    wanted = np.unique(ids[ids >= 0])
    if len(wanted) == 0:
        return np.zeros((0, dim), np.float32), np.zeros_like(ids)
    rows = conn.execute("SELECT id, vector FROM templates WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
                        (json.dumps(wanted.tolist()),)).fetchall()
    if len(rows) != len(wanted):
        return None
    return decode_vectors(rows, dim, where), np.searchsorted(wanted, np.maximum(ids, 0))
