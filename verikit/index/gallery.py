"""The gallery: enrolled identities, their templates, and the index that searches them.

A gallery is a directory::

    gallery.sqlite   the source of truth: identities, templates (embeddings), metadata,
                     the model fingerprint, an audit log. Changed only inside transactions.
    index.faiss      derived from the templates; rebuilt whenever it is missing or stale.
    index.json       which generation of the database the index file reflects.

Scores are the similarities of the model's measure (``meta.similarity``, recorded at creation
from the model; ``cosine`` for galleries that predate it; see :mod:`verikit.similarity`). The index
always searches unit vectors by inner product; measures that are monotone in the cosine convert its
scores, and L1 (which is not) is searched exactly by brute force over the stored templates.

Every change bumps ``generation`` inside the same SQLite transaction that makes it. The index is
saved after the commit (atomically, by rename) with that generation next to it; an index whose
generation differs from the database's is stale and is rebuilt on open. So a crash or kill at any
moment leaves either the old or the new gallery, never a mix, and nothing is lost.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..atomic import write_atomic
from ..errors import DataError, FingerprintMismatchError, GalleryError, IdentityNotFoundError
from ..registry import index_backends
from ..similarity import parse_measure
from ..structures import Hit

SCHEMA_VERSION = 1
DB_FILE, INDEX_FILE, INDEX_META_FILE = "gallery.sqlite", "index.faiss", "index.json"
_REBUILD_CHUNK = 65_536

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    metadata TEXT NOT NULL DEFAULT '{}',
    n_templates INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX identities_by_size ON identities(n_templates);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT,
    vector BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX templates_by_identity ON templates(identity_id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    identity TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass(frozen=True)
class IdentityInfo:
    """One enrolled identity as ``gallery list``/``show`` report it."""

    name: str
    n_templates: int
    metadata: dict[str, Any]
    created_at: float
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "templates": self.n_templates, "metadata": self.metadata,
               "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at))}
        if self.sources:
            out["sources"] = list(self.sources)
        return out


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip() or "\n" in name:
        raise GalleryError(f"invalid identity name {name!r}: use a non-empty name without "
                           "leading/trailing spaces or newlines")
    return name


class Gallery:
    """Open with :meth:`open` or :meth:`create`; use as a context manager so the index is saved."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self.dim = int(meta["dim"])
        self.fingerprint = meta["fingerprint"]
        self.index_spec = meta["index"]
        self.uid = meta["uid"]
        self.measure = parse_measure(meta.get("similarity", "cosine"))
        self._meta = meta
        self._index = index_backends.create(self.index_spec, dim=self.dim)
        self._index_dirty = False
        self._load_or_rebuild_index()

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in _write().
        conn = sqlite3.connect(str(db), isolation_level=None, timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA journal_mode = WAL")  # readers never block on an enrolling writer
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")  # removal overwrites templates, not just unlinks them
        return conn

    @classmethod
    def create(cls, path: str | Path, *, dim: int, fingerprint: str, index: str = "faiss:Flat",
               model_path: str | None = None, extra_meta: Mapping[str, str] | None = None,
               similarity: str = "cosine") -> "Gallery":
        """Create a new, empty gallery directory (refuses to overwrite one).

        ``similarity`` is the model's measure (``ModelConfig.similarity``): scores use it.
        """
        similarity = parse_measure(similarity).spec  # refuse an unknown measure before creating anything
        path = Path(path)
        if (path / DB_FILE).exists():
            raise GalleryError(f"a gallery already exists at '{path}'")
        if path.exists() and not path.is_dir():
            raise GalleryError(f"gallery path '{path}' exists and is not a directory")
        index_backends.create(index, dim=int(dim))  # fail now on a bad index spec, not later
        path.mkdir(parents=True, exist_ok=True)
        # Build in a temporary file and rename: a half-created gallery never appears.
        tmp_db = path / f".{DB_FILE}.creating"
        tmp_db.unlink(missing_ok=True)
        conn = cls._connect(tmp_db)
        try:
            conn.executescript(_SCHEMA)
            meta = {"schema_version": str(SCHEMA_VERSION), "dim": str(int(dim)), "fingerprint": fingerprint,
                    "index": index, "generation": "0", "uid": uuid.uuid4().hex, "created_at": str(time.time()),
                    "model_path": model_path or "", "similarity": similarity, **(extra_meta or {})}
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.execute("INSERT INTO audit(at, action, detail) VALUES (?, 'create', ?)",
                         (time.time(), json.dumps({"dim": dim, "index": index, "fingerprint": fingerprint})))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(str(tmp_db) + suffix).unlink(missing_ok=True)
        os.replace(tmp_db, path / DB_FILE)
        return cls.open(path, fingerprint=fingerprint)

    @classmethod
    def open(cls, path: str | Path, *, fingerprint: str | None = None) -> "Gallery":
        """Open an existing gallery. With ``fingerprint``, refuse a gallery made by another model."""
        path = Path(path)
        db = path / DB_FILE
        if not db.is_file():
            raise GalleryError(f"no gallery at '{path}' (create one with `verikit enroll`)")
        try:
            conn = cls._connect(db)
            version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"'{db}' is not a readable verikit gallery: {exc}") from exc
        if version is None or int(version[0]) != SCHEMA_VERSION:
            conn.close()
            raise GalleryError(f"gallery '{path}' has schema {version and version[0]}; "
                               f"this verikit reads schema {SCHEMA_VERSION}")
        stored = conn.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()[0]
        if fingerprint is not None and stored != fingerprint:
            conn.close()
            raise FingerprintMismatchError(
                f"gallery '{path}' was enrolled with model {stored[:12]}, not this model ({fingerprint[:12]}); "
                "use the model it was built with, or enroll into a new gallery with this one")
        return cls(path, conn)

    # -- the derived index -----------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self._conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])

    def _index_state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / INDEX_META_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _load_or_rebuild_index(self) -> None:
        state = self._index_state()
        fresh = (state is not None and state.get("uid") == self.uid and state.get("index") == self.index_spec
                 and state.get("generation") == self.generation and (self.path / INDEX_FILE).is_file())
        if fresh:
            try:
                self._index.load(self.path / INDEX_FILE)
                return
            except (RuntimeError, GalleryError):
                pass  # unreadable index file: it is derived data, so rebuild it
        self.rebuild_index()

    def _iter_vectors(self, where: str = "", params: Sequence[Any] = ()) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cur = self._conn.execute(f"SELECT id, vector FROM templates {where} ORDER BY id", params)
        while rows := cur.fetchmany(_REBUILD_CHUNK):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            yield ids, vecs

    def rebuild_index(self) -> None:
        """Recreate the index from the templates in SQLite, and save it."""
        self._index = index_backends.create(self.index_spec, dim=self.dim)
        if self._index.needs_training:
            # Approximate indexes learn their partition from the data itself.
            vecs = [v for _, v in self._iter_vectors()]
            if vecs:
                self._index.train(np.concatenate(vecs))
        for ids, vecs in self._iter_vectors():
            self._index.add(ids, vecs)
        self._index_dirty = True
        self.flush()

    def flush(self) -> None:
        """Save the index if it changed since it was last saved."""
        if not self._index_dirty:
            return
        if self._index.needs_training:  # e.g. IVF on an empty gallery: nothing to save yet
            (self.path / INDEX_META_FILE).unlink(missing_ok=True)
            self._index_dirty = False
            return
        self._index.save(self.path / INDEX_FILE)
        state = {"uid": self.uid, "index": self.index_spec, "generation": self.generation,
                 "ntotal": self._index.ntotal}
        write_atomic(self.path / INDEX_META_FILE, json.dumps(state))
        self._index_dirty = False

    def close(self) -> None:
        if self._conn is not None:
            self.flush()
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------
    def _write(self, templates_change: bool = True):
        return _Transaction(self._conn, templates_change)

    def _validated(self, vectors: np.ndarray, what: str) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise DataError(f"{what}: expected vectors of size {self.dim}, got shape {tuple(np.shape(vectors))}")
        if v.shape[0] == 0:
            raise DataError(f"{what}: no vectors given")
        if not np.isfinite(v).all():
            raise DataError(f"{what}: vectors contain NaN or infinity")
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        if (norms < 1e-12).any():
            raise DataError(f"{what}: a zero vector cannot be compared")
        # Unit vectors: the inner-product index then ranks by cosine, which every measure but L1 follows.
        return np.ascontiguousarray(v / norms, dtype=np.float32)

    def add(self, name: str, vectors: np.ndarray, sources: Sequence[str] | None = None,
            metadata: Mapping[str, Any] | None = None) -> int:
        """Enroll templates for one identity (created if new). Returns templates added."""
        return self.add_many({name: (vectors, sources)}, metadata={name: metadata} if metadata else None)[name]

    def add_many(self, batch: Mapping[str, tuple[np.ndarray, Sequence[str] | None]],
                 metadata: Mapping[str, Mapping[str, Any] | None] | None = None) -> dict[str, int]:
        """Enroll several identities in ONE transaction: all of them land, or none do."""
        prepared = []
        for name, (vectors, sources) in batch.items():
            v = self._validated(vectors, f"identity {_check_name(name)!r}")
            src = list(sources) if sources is not None else [None] * len(v)
            if len(src) != len(v):
                raise DataError(f"identity {name!r}: {len(v)} vectors but {len(src)} sources")
            prepared.append((name, v, src))
        now = time.time()
        with self._write() as cur:
            # Template ids are given explicitly, continuing AUTOINCREMENT's sequence (we hold the
            # write lock), so the index learns exactly the ids SQLite stores.
            seq = cur.execute("SELECT seq FROM sqlite_sequence WHERE name='templates'").fetchone()
            first_id = (seq[0] if seq else 0) + 1
            rows = []
            next_id = first_id
            for name, v, src in prepared:
                row = cur.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()
                meta = dict((metadata or {}).get(name) or {})
                if row is None:
                    cur.execute("INSERT INTO identities(name, metadata, created_at) VALUES (?, ?, ?)",
                                (name, json.dumps(meta), now))
                    ident, action = cur.lastrowid, "enroll"
                else:
                    ident, action = row[0], "add_templates"
                    if meta:
                        self._merge_metadata(cur, ident, meta)
                rows.append((next_id, ident, v, src))
                next_id += len(v)
                cur.execute("UPDATE identities SET n_templates = n_templates + ? WHERE id=?", (len(v), ident))
                self._audit(cur, action, name, {"templates": len(v), "sources": [s for s in src if s][:20]})
            cur.executemany("INSERT INTO templates(id, identity_id, source, vector, created_at) VALUES (?, ?, ?, ?, ?)",
                            ((start + j, ident, s, vec.tobytes(), now)
                             for start, ident, v, src in rows for j, (vec, s) in enumerate(zip(v, src))))
        # Committed: mirror into the index. A crash before flush() leaves a stale index, rebuilt on open.
        if self._index.needs_training:
            self.rebuild_index()
        else:
            vectors = prepared[0][1] if len(prepared) == 1 else np.concatenate([v for _, v, _ in prepared])
            self._index.add(np.arange(first_id, next_id, dtype=np.int64), vectors)
            self._index_dirty = True
        return {name: len(v) for name, v, _ in prepared}

    def remove(self, name: str) -> int:
        """Delete an identity and all its templates (really deleted, not hidden). Returns templates removed."""
        ident = self._identity_id(name)
        ids = np.array([r[0] for r in self._conn.execute("SELECT id FROM templates WHERE identity_id=?", (ident,))],
                       dtype=np.int64)
        with self._write() as cur:
            cur.execute("DELETE FROM templates WHERE identity_id=?", (ident,))
            cur.execute("DELETE FROM identities WHERE id=?", (ident,))
            self._audit(cur, "remove", name, {"templates": len(ids)})
        if len(ids) and not self._index.remove(ids):
            self.rebuild_index()  # saves the index itself
        else:
            self._index_dirty = True
        # secure_delete zeroed the freed pages; checkpointing moves that into the main file and
        # empties the WAL, so the removed templates are not left readable anywhere.
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return len(ids)

    def rename(self, old: str, new: str) -> None:
        ident = self._identity_id(old)
        _check_name(new)
        with self._write(templates_change=False) as cur:  # the index maps template ids: still valid
            if cur.execute("SELECT 1 FROM identities WHERE name=?", (new,)).fetchone():
                raise GalleryError(f"cannot rename {old!r} to {new!r}: {new!r} is already enrolled")
            cur.execute("UPDATE identities SET name=? WHERE id=?", (new, ident))
            self._audit(cur, "rename", new, {"from": old})

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the identity's metadata (a value of None deletes a key)."""
        ident = self._identity_id(name)
        with self._write(templates_change=False) as cur:
            self._merge_metadata(cur, ident, metadata)
            self._audit(cur, "set_metadata", name, {"keys": sorted(metadata)})

    def _merge_metadata(self, cur: sqlite3.Cursor, ident: int, metadata: Mapping[str, Any]) -> None:
        current = json.loads(cur.execute("SELECT metadata FROM identities WHERE id=?", (ident,)).fetchone()[0])
        for k, val in metadata.items():
            if val is None:
                current.pop(k, None)
            else:
                current[k] = val
        cur.execute("UPDATE identities SET metadata=? WHERE id=?", (json.dumps(current), ident))

    def _audit(self, cur: sqlite3.Cursor, action: str, identity: str | None, detail: Mapping[str, Any]) -> None:
        cur.execute("INSERT INTO audit(at, action, identity, detail) VALUES (?, ?, ?, ?)",
                    (time.time(), action, identity, json.dumps(detail)))

    # -- reading -----------------------------------------------------------------------------------
    def _identity_id(self, name: str) -> int:
        row = self._conn.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()
        if row is None:
            raise IdentityNotFoundError(f"identity {name!r} is not enrolled in gallery '{self.path}'")
        return int(row[0])

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    def __contains__(self, name: object) -> bool:
        return self._conn.execute("SELECT 1 FROM identities WHERE name=?", (name,)).fetchone() is not None

    @property
    def n_templates(self) -> int:
        return int(self._conn.execute("SELECT COALESCE(SUM(n_templates), 0) FROM identities").fetchone()[0])

    def identities(self) -> list[IdentityInfo]:
        rows = self._conn.execute("SELECT name, n_templates, metadata, created_at FROM identities ORDER BY name")
        return [IdentityInfo(n, c, json.loads(m), t) for n, c, m, t in rows]

    def identity(self, name: str) -> IdentityInfo:
        ident = self._identity_id(name)
        n, c, m, t = self._conn.execute(
            "SELECT name, n_templates, metadata, created_at FROM identities WHERE id=?", (ident,)).fetchone()
        sources = tuple(s or "" for (s,) in self._conn.execute(
            "SELECT source FROM templates WHERE identity_id=? ORDER BY id", (ident,)))
        return IdentityInfo(n, c, json.loads(m), t, sources)

    def templates(self, name: str) -> np.ndarray:
        """The identity's templates, (n, dim) float32."""
        ident = self._identity_id(name)
        chunks = [v for _, v in self._iter_vectors("WHERE identity_id=?", (ident,))]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.dim), np.float32)

    def score(self, query: np.ndarray, name: str) -> float:
        """1:1 score of a probe against an identity: its best template under the gallery's measure (exact)."""
        q = self._validated(query, "probe")
        return float(self.measure.scores(self.templates(name), q).max())

    def search(self, queries: np.ndarray, top_k: int = 5) -> list[list[Hit]]:
        """1:N: for each query the ``top_k`` identities by their best-scoring template."""
        if top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}")
        q = self._validated(queries, "probe")
        n_total = self._index.ntotal
        if n_total == 0:
            return [[] for _ in range(len(q))]
        if not self.measure.monotone_in_cosine:
            return self._exact_search(q, top_k)
        per_identity = int(self._conn.execute("SELECT COALESCE(MAX(n_templates), 1) FROM identities").fetchone()[0])
        # The k-th distinct identity's best template ranks at most (k-1)*T + 1 among templates,
        # where T is the most templates any identity has: fetching that many is exact.
        fetch = min(n_total, (top_k - 1) * per_identity + 1)
        scores, ids = self._index.search(q, fetch)
        names = self._names_of(np.unique(ids[ids >= 0]))
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits: list[Hit] = []
            seen: set[str] = set()
            for s, i in zip(row_scores, row_ids):
                if i < 0:
                    break
                name = names[int(i)]
                if name not in seen:
                    seen.add(name)
                    hits.append(Hit(name, float(self.measure.from_cosine(s))))
                    if len(hits) == top_k:
                        break
            results.append(hits)
        return results

    def _exact_search(self, q: np.ndarray, top_k: int) -> list[list[Hit]]:
        """Brute force over every stored template with the gallery's measure: for L1, whose ranking
        an inner-product index cannot give. Exact; cost grows linearly with the gallery."""
        idents = {i: n for i, n in self._conn.execute("SELECT id, name FROM identities")}
        order = np.array(sorted(idents), dtype=np.int64)
        best = np.full((len(q), len(order)), -np.inf)
        cur = self._conn.execute("SELECT identity_id, vector FROM templates ORDER BY id")
        while rows := cur.fetchmany(_REBUILD_CHUNK):
            owner = np.searchsorted(order, np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
            scores = self.measure.scores(q, vecs)
            for k in range(len(q)):  # best template per identity
                np.maximum.at(best[k], owner, scores[k])
        results = []
        for row in best:
            top = np.argsort(-row, kind="stable")[:top_k]
            results.append([Hit(idents[int(order[j])], float(row[j])) for j in top if np.isfinite(row[j])])
        return results

    def _names_of(self, template_ids: np.ndarray) -> dict[int, str]:
        if len(template_ids) == 0:
            return {}
        rows = self._conn.execute(
            "SELECT t.id, i.name FROM templates t JOIN identities i ON i.id = t.identity_id "
            "WHERE t.id IN (SELECT value FROM json_each(?))", (json.dumps(template_ids.tolist()),))
        return dict(rows)

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT at, action, identity, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [{"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a)), "action": act, "identity": who,
                 "detail": json.loads(d)} for a, act, who, d in rows]

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "identities": len(self), "templates": self.n_templates, "dim": self.dim,
                "index": self.index_spec, "indexed_vectors": self._index.ntotal,
                "model_fingerprint": self.fingerprint, "model_path": self._meta.get("model_path") or None,
                "similarity": self.measure.spec,
                "generation": self.generation, "schema_version": SCHEMA_VERSION,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(self._meta["created_at"])))}

    @property
    def model_path(self) -> str | None:
        return self._meta.get("model_path") or None

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any error.

    The generation (what a saved index must match) moves only when templates change: renaming an
    identity or editing its metadata leaves the index valid and never rewrites it.
    """

    def __init__(self, conn: sqlite3.Connection, templates_change: bool = True) -> None:
        self.conn = conn
        self.templates_change = templates_change

    def __enter__(self) -> sqlite3.Cursor:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn.cursor()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            if self.templates_change:
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
