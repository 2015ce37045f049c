"""The gallery: enrolled identities, their templates, and the index that searches them.

A gallery is a directory::

    gallery.sqlite   the source of truth: identities, templates (embeddings), metadata,
                     the model fingerprint, an audit log. Changed only inside transactions.
    index.faiss      derived from the templates (verikit.index.derived), never trusted blindly.
    index.json       exactly what index.faiss holds (verikit.index.state).
    index.lock       serialises saving the two index files.

Any number of processes may read and write one gallery at once; docs/concurrency.md states the
model and this module, :mod:`.store` and :mod:`.derived` enforce it. In short: writes are SQLite
transactions (one writer at a time); every process's index is caught up from the database
before it answers, so a long-lived reader sees other processes' changes on its next call; the
index files only ever move forward; a removal erases the templates' bytes from every gallery file
before it returns, or says that it could not yet.

Scores are the similarities of the model's measure (``meta.similarity``, recorded at creation
from the model; ``cosine`` for galleries that predate it; see :mod:`verikit.similarity`). The index
always searches unit vectors by inner product; measures that are monotone in the cosine convert its
scores, and L1 (which is not) is searched exactly by brute force over the stored templates.

A :class:`Gallery` may be shared by the threads of one process: it serialises its own use of its
connection.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

from . import audit, bulk_sources, erasure, ranking
from .agreement import agreement
from ..errors import DataError, FingerprintMismatchError, GalleryError, IdentityNotFoundError, VerikitError
from ..registry import index_backends
from ..similarity import parse_measure
from ..structures import Hit
from .approximate import normalize as normalize_index_spec
from .derived import DerivedIndex
from .names import check_name, lookup_forms
from .searchcache import SearchCache
from .state import INDEX_FILE, INDEX_META_FILE, id_hash
from .store import (SCHEMA_VERSION, SQLITE_ERRORS, GalleryMeta, WriteTransaction, as_gallery_error, connect,
                    sqlite_message,
                    create_file, damage_in_file, db_state, db_state_and_version, decode_vectors, fsync_dir, migrate,
                    quick_check,
                    marker, read_meta, read_snapshot)

DB_FILE = "gallery.sqlite"
__all__ = ["DB_FILE", "INDEX_FILE", "INDEX_META_FILE", "SCHEMA_VERSION", "Gallery", "IdentityInfo"]
DEFAULT_ERASE_TIMEOUT_S = 10.0
_DECLARED_META = set(GalleryMeta.model_fields)
F = TypeVar("F", bound=Callable[..., Any])


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
               "created_at": _utc(self.created_at)}
        if self.sources:
            out["sources"] = list(self.sources)
        return out


def _utc(t: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return "unknown"


def _check_name(name: str) -> str:
    """Kept for callers of the old helper: see :func:`verikit.index.names.check_name`."""
    return check_name(name)


def _guarded(method: F) -> F:
    """Serialise use of the connection (threads) and turn sqlite errors into one-line GalleryErrors."""

    @functools.wraps(method)
    def wrapper(self: "Gallery", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._conn is None:
                raise GalleryError(f"gallery '{self.path}' is closed")
            try:
                return method(self, *args, **kwargs)
            except SQLITE_ERRORS as exc:
                if self._conn is not None and self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise as_gallery_error(exc, f"gallery '{self.path}'") from exc

    return wrapper  # type: ignore[return-value]


def _safe_source(source: str | None) -> str | None:
    """A source path as storable text: undecodable bytes (surrogates) are written as escapes."""
    if source is None:
        return None
    source = str(source)
    try:
        source.encode("utf-8")
        return source
    except UnicodeEncodeError:
        return source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Gallery:
    """Open with :meth:`open` or :meth:`create`; use as a context manager so the index is saved."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        self._where = f"gallery '{self.path}'"
        self._most_templates_at: tuple[tuple[int, int, int, int], int] | None = None
        try:
            meta = read_meta(conn, self._where)
            self._meta = {k: str(v) for k, v in dict(conn.execute("SELECT key, value FROM meta")).items()}
        except SQLITE_ERRORS as exc:
            raise as_gallery_error(exc, self._where) from exc
        self.dim = meta.dim
        self.fingerprint = meta.fingerprint
        self.index_spec = meta.index
        self.uid = meta.uid
        self.measure = parse_measure(meta.similarity)
        self._created_at = meta.created_at
        self._search_cache = SearchCache(self.dim, self._where)  # hit names, re-rank vectors (verikit.index.searchcache)
        try:
            self._index = DerivedIndex(self.path, uid=self.uid, spec=self.index_spec, dim=self.dim, where=self._where)
        except VerikitError as exc:  # the recorded index spec is not usable here: say which gallery
            raise GalleryError(f"{self._where}: its index {self.index_spec!r} cannot be built: {exc}") from exc
        self._sync()

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        return connect(db)

    @classmethod
    def create(cls, path: str | Path, *, dim: int, fingerprint: str, index: str = "faiss:Flat",
               model_path: str | None = None, extra_meta: Mapping[str, str] | None = None,
               similarity: str = "cosine", exist_ok: bool = False) -> "Gallery":
        """Create a new, empty gallery directory (refuses to overwrite one).

        ``similarity`` is the model's measure (``ModelConfig.similarity``): scores use it. With
        ``exist_ok``, a gallery that exists already (or that another process creates at the same
        moment) is opened instead, with the fingerprint check of :meth:`open`.
        """
        similarity = parse_measure(similarity).spec  # refuse an unknown measure before creating anything
        index = normalize_index_spec(index)  # `auto` is recorded as faiss:auto
        path = Path(path)
        if (path / DB_FILE).exists():
            if exist_ok:
                return cls.open(path, fingerprint=fingerprint)
            raise GalleryError(f"a gallery already exists at '{path}'")
        if path.exists() and not path.is_dir():
            raise GalleryError(f"gallery path '{path}' exists and is not a directory")
        clash = _DECLARED_META & set(extra_meta or {})
        if clash:
            raise GalleryError(f"extra_meta may not set the gallery's own keys: {sorted(clash)}")
        index_backends.create(index, dim=int(dim))  # fail now on a bad index spec, not later
        path.mkdir(parents=True, exist_ok=True)
        meta = {"dim": str(int(dim)), "fingerprint": fingerprint, "index": index, "generation": "0",
                "uid": uuid.uuid4().hex, "created_at": str(time.time()), "model_path": model_path or "",
                "similarity": similarity, **(extra_meta or {})}
        # Built under a name of its own, then linked into place: a half-created gallery never appears,
        # and of two processes creating one gallery at the same moment exactly one succeeds.
        tmp_db = path / f".{DB_FILE}.{os.getpid()}.{secrets.token_hex(4)}.creating"
        try:
            create_file(tmp_db, meta)
            try:
                os.link(tmp_db, path / DB_FILE)
            except FileExistsError:
                if not exist_ok:
                    raise GalleryError(f"a gallery already exists at '{path}'") from None
            fsync_dir(path)
        except sqlite3.Error as exc:
            raise as_gallery_error(exc, f"gallery '{path}'") from exc
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(str(tmp_db) + suffix).unlink(missing_ok=True)
        return cls.open(path, fingerprint=fingerprint)

    @classmethod
    def open(cls, path: str | Path, *, fingerprint: str | None = None) -> "Gallery":
        """Open an existing gallery. With ``fingerprint``, refuse a gallery made by another model.

        The file is checked cheaply for damage, its ``meta`` table against its declared schema, and
        a version-1 gallery is upgraded in place.
        """
        path = Path(path)
        db = path / DB_FILE
        if not db.is_file():
            raise GalleryError(f"no gallery at '{path}' (create one with `verikit enroll`)")
        problem, certain = damage_in_file(db)
        if problem is not None and not certain:
            problem = cls._confirm_damage(db, problem)
        if problem is not None:
            raise GalleryError(f"'{db}' is not a readable verikit gallery: it {problem}; restore it from a backup")
        conn = None
        try:
            conn = connect(db)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = row[0] if row else None
            if version == "1":
                migrate(conn)
            elif version != str(SCHEMA_VERSION):
                raise GalleryError(f"gallery '{path}' has schema_version {version!r} in its meta table; this verikit "
                                   f"reads schema {SCHEMA_VERSION} (and upgrades schema 1)")
            stored = read_meta(conn, f"gallery '{path}'").fingerprint
            if fingerprint is not None and stored != fingerprint:
                raise FingerprintMismatchError(
                    f"gallery '{path}' was enrolled with model {stored[:12]}, not this model ({fingerprint[:12]}); "
                    "use the model it was built with, or enroll into a new gallery with this one")
            gallery = cls(path, conn)
        except SQLITE_ERRORS as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError):  # busy, I/O, read-only: not the file's fault
                raise as_gallery_error(exc, f"gallery '{path}'") from exc
            raise GalleryError(f"'{db}' is not a readable verikit gallery: it is damaged ({sqlite_message(exc)}); "
                               "restore it from a backup") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        gallery._retry_erasure()
        marker("opened")
        return gallery

    @staticmethod
    def _confirm_damage(db: Path, problem: str) -> str | None:
        """The header disagreed with the file size: ask SQLite itself (a concurrent checkpoint can
        show the same for an instant, and then quick_check finds nothing)."""
        try:
            conn = connect(db)
        except SQLITE_ERRORS as exc:
            return f"{problem} ({sqlite_message(exc)})"
        try:
            found = quick_check(conn)
        finally:
            conn.close()
        return None if found is None else f"{problem}; quick_check: {found[:200]}"

    # -- the derived index -----------------------------------------------------------------------
    @property
    @_guarded
    def generation(self) -> int:
        return self._meta_int("generation")

    def _meta_int(self, key: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise GalleryError(f"{self._where}: meta '{key}' is missing or not a number: gallery.sqlite is damaged; "
                               "restore it from a backup") from None

    def _sync(self) -> None:
        """Catch the index up with the database (one snapshot); the check every search makes."""
        with read_snapshot(self._conn):
            self._index.sync(self._conn)

    @_guarded
    def rebuild_index(self) -> None:
        """Recreate the index from the templates in SQLite, and save it."""
        with read_snapshot(self._conn):
            self._index.rebuild(self._conn)
        if not self._index.save(self._conn, force=True):
            raise GalleryError(f"{self._where}: the index was rebuilt but could not be saved (is the folder writable, "
                               "the disk full?); searches still use the rebuilt one")

    @_guarded
    def flush(self) -> None:
        """Save the index if it holds a newer state than the saved one."""
        self._index.save(self._conn)

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self.flush()
                self._retry_erasure()
            finally:
                self._search_cache.clear()
                self._index.close()
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------------
    def _validated(self, vectors: np.ndarray, what: str) -> np.ndarray:
        try:
            v = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what}: vectors must be numbers ({exc})") from None
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise DataError(f"{what}: expected vectors of size {self.dim}, got shape {tuple(np.shape(vectors))}")
        if v.shape[0] == 0:
            raise DataError(f"{what}: no vectors given")
        v64 = v.astype(np.float64)  # float64: squares of float32 values cannot overflow
        # np.linalg.norm's own arithmetic; a NaN or infinity anywhere in a row makes its norm one.
        norms = np.sqrt(np.add.reduce(v64 * v64, axis=1, keepdims=True))
        if not np.isfinite(norms).all():
            raise DataError(f"{what}: vectors contain NaN or infinity")
        if (norms < 1e-12).any():
            raise DataError(f"{what}: a zero vector cannot be compared")
        # Unit vectors: the inner-product index then ranks by cosine, which every measure but L1 follows.
        return np.ascontiguousarray(v / norms, dtype=np.float32)

    def add(self, name: str, vectors: np.ndarray, sources: Sequence[str] | None = None,
            metadata: Mapping[str, Any] | None = None) -> int:
        """Enroll templates for one identity (created if new). Returns templates added."""
        stored = check_name(name)
        return self.add_many({name: (vectors, sources)}, metadata={name: metadata} if metadata else None)[stored]

    @_guarded
    def add_many(self, batch: Mapping[str, tuple[np.ndarray, Sequence[str] | None]],
                 metadata: Mapping[str, Mapping[str, Any] | None] | None = None,
                 content_hashes: Mapping[str, Sequence[str]] | None = None) -> dict[str, int]:
        """Enroll several identities in ONE transaction: all of them land, or none do.

        Names are stored in their NFC form (see :mod:`verikit.index.names`); the result is keyed by it.
        ``content_hashes`` (per name, one per vector: the source file's SHA-256) are stored with the
        templates, so a resumed bulk enroll can tell what is already in (:meth:`enrolled_sources`).
        """
        prepared: dict[str, tuple[list[np.ndarray], list[str | None], dict[str, Any]]] = {}
        hashes: dict[str, list[str | None]] = {}
        for name, (vectors, sources) in batch.items():
            stored = check_name(name)
            v = self._validated(vectors, f"identity {stored!r}")
            src = [_safe_source(s) for s in sources] if sources is not None else [None] * len(v)
            if len(src) != len(v):
                raise DataError(f"identity {stored!r}: {len(v)} vectors but {len(src)} sources")
            meta = _json_object((metadata or {}).get(name) or {}, f"metadata of identity {stored!r}")
            vecs, srcs, merged = prepared.setdefault(stored, ([], [], {}))  # two spellings of one name: one identity
            vecs.append(v)
            srcs.extend(src)
            merged.update(meta)
            given = list((content_hashes or {}).get(name) or [None] * len(v))
            if len(given) != len(v):
                raise DataError(f"identity {stored!r}: {len(v)} vectors but {len(given)} content hashes")
            hashes.setdefault(stored, []).extend(given)
        if not prepared:
            return {}
        now = time.time()
        with WriteTransaction(self._conn) as tx:
            # Template ids are given explicitly, continuing AUTOINCREMENT's sequence (we hold the
            # write lock), so the index learns exactly the ids SQLite stores.
            first_id = next_id = tx.next_template_id
            rows = []
            name_of: dict[int, str] = {}
            for name, (vecs, src, meta) in prepared.items():
                v = vecs[0] if len(vecs) == 1 else np.concatenate(vecs)
                row = tx.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()
                if row is None:
                    cur = tx.execute("INSERT INTO identities(name, metadata, created_at) VALUES (?, ?, ?)",
                                     (name, json.dumps(meta), now))
                    ident, action = cur.lastrowid, "enroll"
                else:
                    ident, action = row[0], "add_templates"
                    if meta:
                        self._merge_metadata(tx, ident, meta)
                rows.append((next_id, ident, v, src))
                name_of[next_id] = name
                next_id += len(v)
                tx.execute("UPDATE identities SET n_templates = n_templates + ? WHERE id=?", (len(v), ident))
                self._audit(tx, action, name, {"templates": len(v), "sources": [s for s in src if s][:20]},
                            subject=ident)
            tx.executemany("INSERT INTO templates(id, identity_id, source, vector, created_at) VALUES (?, ?, ?, ?, ?)",
                           ((start + j, ident, s, vec.tobytes(), now)
                            for start, ident, v, src in rows for j, (vec, s) in enumerate(zip(v, src))))
            ids = np.arange(first_id, next_id, dtype=np.int64)
            if content_hashes:
                bulk_sources.record(tx, ((start + j, h) for start, _, v, _ in rows
                                         for j, h in enumerate(hashes[name_of[start]]) if h))
            tx.added(ids)
        # Committed. The index learns the change directly when it was at the state this write built
        # on; otherwise (another process wrote meanwhile) it catches up from the database.
        vectors = np.concatenate([r[2] for r in rows]) if len(rows) > 1 else rows[0][2]
        self._after_write(tx, added=(ids, vectors), seq=next_id - 1)
        return {name: sum(len(x) for x in vecs) for name, (vecs, _, _) in prepared.items()}

    @_guarded
    def enrolled_sources(self, candidates: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (source path, content SHA-256) pairs are already enrolled (bulk enroll's --resume)."""
        return bulk_sources.enrolled(self._conn, [(_safe_source(p), h) for p, h in candidates])

    def _after_write(self, tx: WriteTransaction, **change: Any) -> None:
        try:
            if not self._index.applied(tx.generation_before, tx.generation, **change):
                self._sync()
            elif getattr(self._index.backend, "action", None) is not None:
                self._sync()  # a managed approximate index: this write may have made it due for training
        except Exception:
            self._index.invalidate()  # the commit stands; the next call rebuilds the index from it
            raise

    @_guarded
    def remove(self, name: str, *, erase_timeout: float = DEFAULT_ERASE_TIMEOUT_S, keep_audit: bool = False) -> int:
        """Delete an identity and all its templates (really deleted, not hidden). Returns templates removed.

        Before returning it saves an index without them and erases their bytes from the database
        files (waiting at most ``erase_timeout`` seconds for other processes' read transactions);
        :attr:`erasure_pending` says whether that could not be finished yet (see :meth:`purge`).
        The audit log keeps the events but drops the name and sources (``keep_audit=True`` keeps them).
        """
        with WriteTransaction(self._conn) as tx:
            ident, stored = self._identity_row(name)
            ids = np.array([r[0] for r in tx.execute("SELECT id FROM templates WHERE identity_id=?", (ident,))],
                           dtype=np.int64)
            tx.execute("DELETE FROM templates WHERE identity_id=?", (ident,))
            tx.execute("DELETE FROM identities WHERE id=?", (ident,))
            tx.removed(ids)
            audit.close_history(tx, ident, stored, len(ids), keep_identity=keep_audit)
            tx.extra_meta["erasure_pending"] = str(tx.generation)
        self._search_cache.clear()  # its re-rank copy holds the removed vectors: not one call longer
        try:
            self._after_write(tx, removed=ids)
        finally:  # even if the index could not follow: index.faiss must not keep the removed vectors
            self._index.save_after_removal(self._conn, tx.generation)
        self.purge(erase_timeout)
        return len(ids)

    @property
    @_guarded
    def erasure_pending(self) -> bool:
        """True while removed templates' bytes may still be in gallery.sqlite or its WAL (a reader
        in another process held an old snapshot when they were removed)."""
        return erasure.pending(self._conn) is not None

    @_guarded
    def purge(self, timeout: float = DEFAULT_ERASE_TIMEOUT_S) -> bool:
        """Finish erasing removed templates: checkpoint the WAL into the database file and truncate it,
        waiting at most ``timeout`` seconds for other processes' read transactions to end.

        Returns True when no removed bytes remain in any gallery file (nothing pending).
        """
        return erasure.purge(self._conn, timeout)

    def _retry_erasure(self) -> None:
        """On open and close: finish a pending erasure if nobody is in the way now (never waits)."""
        try:
            if self.erasure_pending:
                self.purge(0)
        except GalleryError:
            pass  # busy or read-only: the mark stays and the next open or `gallery purge` tries again

    @_guarded
    def rename(self, old: str, new: str) -> None:
        new = check_name(new)
        with WriteTransaction(self._conn) as tx:  # no template changes: the saved index stays valid
            ident, stored = self._identity_row(old)
            if new != stored and tx.execute("SELECT 1 FROM identities WHERE name=?", (new,)).fetchone():
                raise GalleryError(f"cannot rename {old!r} to {new!r}: {new!r} is already enrolled")
            tx.execute("UPDATE identities SET name=? WHERE id=?", (new, ident))
            self._audit(tx, "rename", new, {"from": stored}, subject=ident)

    @_guarded
    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> None:
        """Merge ``metadata`` into the identity's metadata (a value of None deletes a key)."""
        metadata = _json_object(metadata, f"metadata of identity {name!r}")
        with WriteTransaction(self._conn) as tx:
            ident, stored = self._identity_row(name)
            self._merge_metadata(tx, ident, metadata)
            self._audit(tx, "set_metadata", stored, {"keys": sorted(metadata)}, subject=ident)

    def _merge_metadata(self, tx: WriteTransaction, ident: int, metadata: Mapping[str, Any]) -> None:
        raw = tx.execute("SELECT metadata FROM identities WHERE id=?", (ident,)).fetchone()[0]
        current = self._metadata_of(raw, ident)
        for k, val in metadata.items():
            if val is None:
                current.pop(k, None)
            else:
                current[k] = val
        tx.execute("UPDATE identities SET metadata=? WHERE id=?", (json.dumps(current), ident))

    def _audit(self, tx: Any, action: str, identity: str | None, detail: Mapping[str, Any],
               subject: int | None = None) -> None:
        audit.record(tx, action, identity, detail, subject)

    # -- reading -----------------------------------------------------------------------------------
    def _identity_row(self, name: str) -> tuple[int, str]:
        """(id, stored name) of an enrolled identity, looked up as given or in NFC form."""
        for form in lookup_forms(name):
            try:
                row = self._conn.execute("SELECT id, name FROM identities WHERE name=?", (form,)).fetchone()
            except UnicodeEncodeError:  # an undecodable name (lone surrogates) is not stored anywhere
                break
            if row is not None:
                return int(row[0]), str(row[1])
        raise IdentityNotFoundError(f"identity {name!r} is not enrolled in gallery '{self.path}'")

    def _identity_id(self, name: str) -> int:
        return self._identity_row(name)[0]

    def _metadata_of(self, raw: Any, ident: Any) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict):
            raise GalleryError(f"{self._where}: the metadata of identity #{ident} is damaged (not a JSON object)")
        return value

    @_guarded
    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0])

    @_guarded
    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self._identity_row(name)
        except IdentityNotFoundError:
            return False
        return True

    @property
    @_guarded
    def n_templates(self) -> int:
        return self._meta_int("templates")

    def _info_of(self, row: tuple[Any, ...]) -> IdentityInfo:
        ident, name, count, meta, created = row
        try:
            return IdentityInfo(str(name), int(count), self._metadata_of(meta, ident), float(created))
        except (TypeError, ValueError):
            raise GalleryError(f"{self._where}: the row of identity #{ident} is damaged; restore the gallery "
                               "from a backup") from None

    @_guarded
    def identities(self) -> list[IdentityInfo]:
        rows = self._conn.execute("SELECT id, name, n_templates, metadata, created_at FROM identities ORDER BY name")
        return [self._info_of(r) for r in rows]

    @_guarded
    def identity(self, name: str) -> IdentityInfo:
        with read_snapshot(self._conn):
            ident, _ = self._identity_row(name)
            row = self._conn.execute("SELECT id, name, n_templates, metadata, created_at FROM identities WHERE id=?",
                                     (ident,)).fetchone()
            sources = tuple(str(s or "") for (s,) in self._conn.execute(
                "SELECT source FROM templates WHERE identity_id=? ORDER BY id", (ident,)))
        info = self._info_of(row)
        return IdentityInfo(info.name, info.n_templates, info.metadata, info.created_at, sources)

    @_guarded
    def templates(self, name: str) -> np.ndarray:
        """The identity's templates, (n, dim) float32 (each checked: right size, finite)."""
        try:  # one statement (one snapshot) in the usual case: the name as stored
            rows = self._conn.execute("SELECT t.id, t.vector FROM templates t JOIN identities i ON i.id = t.identity_id "
                                      "WHERE i.name = ? ORDER BY t.id", (name,)).fetchall()
        except UnicodeEncodeError:
            rows = []
        if not rows:  # another spelling (NFC), no templates, or not enrolled (raises)
            with read_snapshot(self._conn):
                ident, _ = self._identity_row(name)
                rows = self._conn.execute("SELECT id, vector FROM templates WHERE identity_id=? ORDER BY id",
                                          (ident,)).fetchall()
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return decode_vectors(rows, self.dim, self._where)

    @_guarded
    def score(self, query: np.ndarray, name: str) -> float:
        """1:1 score of a probe against an identity: its best template under the gallery's measure
        (exact, read from SQLite in one snapshot: always current, never the index)."""
        q = self._validated(query, "probe")
        templates = self.templates(name)
        if len(templates) == 0:
            raise GalleryError(f"identity {name!r} has no templates in gallery '{self.path}'")
        return float(self.measure.scores(templates, q).max())

    @_guarded
    def search(self, queries: np.ndarray, top_k: int = 5) -> list[list[Hit]]:
        """1:N: for each query the ``top_k`` identities by their best-scoring template.

        The index is first caught up with the database (one small query when nothing changed), and
        the names of its hits are read in the same snapshot, so every hit exists."""
        if top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}")
        q = self._validated(queries, "probe")
        with read_snapshot(self._conn):
            if not self.measure.monotone_in_cosine:
                return ranking.exact_search(self._conn, self.measure, q, top_k, self.dim, self._where)
            # One statement: the index's freshness check, and the keys of what the search cache holds.
            target, version = db_state_and_version(self._conn)
            self._index.sync(self._conn, target)
            self._search_cache.at(version, target)
            results = ranking.index_search(self._conn, self._index.backend, self.measure, q, top_k,
                                           self._most_templates(), self._search_cache)
            if results is None:  # the index named a template the database does not hold: rebuild, once
                self._search_cache.clear()
                self._index.rebuild(self._conn)
                results = ranking.index_search(self._conn, self._index.backend, self.measure, q, top_k)
            if results is None:
                raise GalleryError(f"{self._where}: the index and the database disagree even after a rebuild; "
                                   "gallery.sqlite is damaged")
            return results

    def _most_templates(self) -> int:
        """:func:`ranking.most_templates` for the snapshot the index was just synced to, read once
        per template state (a search is then one statement fewer: it serves one query at a time)."""
        state = self._index.state
        key = None if state is None else (state.generation, state.ntotal, state.id_hash, state.seq)
        if key is None or self._most_templates_at is None or self._most_templates_at[0] != key:
            value = ranking.most_templates(self._conn)
            if key is None:
                return value
            self._most_templates_at = (key, value)
        return self._most_templates_at[1]

    @_guarded
    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        return audit.read(self._conn, limit, self._where)

    @_guarded
    def info(self) -> dict[str, Any]:
        with read_snapshot(self._conn):
            self._index.sync(self._conn)
            return {"path": str(self.path), "identities": len(self), "templates": self.n_templates, "dim": self.dim,
                    "index": self.index_spec, "indexed_vectors": self._index.backend.ntotal,
                    "model_fingerprint": self.fingerprint, "model_path": self._meta.get("model_path") or None,
                    "similarity": self.measure.spec,
                    "generation": self.generation, "schema_version": SCHEMA_VERSION,
                    "erasure_pending": self.erasure_pending,
                    "approximate": _approximate_summary(self._index.tuning),
                    "created_at": _utc(self._created_at)}

    def check(self) -> list[str]:
        """A full check (slow: reads every page and template): SQLite's integrity_check, every
        template blob, and the index against the database. Returns the problems found (empty: sound)."""
        return self.check_report()["problems"]

    @_guarded
    def check_report(self) -> dict[str, Any]:
        """:meth:`check`, with what was compared: ``{"problems": [...], "index": {...}}`` where
        ``index`` says the counts, whether the index's ids were compared with the database's as sets,
        and how many stored vectors were read back and compared (:mod:`verikit.index.agreement`)."""
        problems = [r[0] for r in self._conn.execute("PRAGMA integrity_check(20)") if r[0] != "ok"]
        report: dict[str, Any] = {"problems": problems, "index": None}
        if problems:
            return report
        try:
            with read_snapshot(self._conn):
                n, h = 0, 0
                for ids, _ in self._index.iter_templates(self._conn):  # every blob: size and finiteness
                    n, h = n + len(ids), (h + id_hash(ids)) % (1 << 64)
                _, count, hash_, _ = db_state(self._conn)
                if (n, h) != (count, hash_):
                    problems.append(f"the templates table holds {n} templates but the meta table records {count} "
                                    "(or other ids)")
                wrong = [r[0] for r in self._conn.execute(
                    "SELECT name FROM identities i WHERE n_templates != "
                    "(SELECT COUNT(*) FROM templates t WHERE t.identity_id = i.id) LIMIT 5")]
                if wrong:
                    problems.append(f"template counts of identities {wrong!r} disagree with their templates")
                if not problems:
                    self._index.sync(self._conn)
                    report["index"], disagree = agreement(self._conn, self._index.backend, self.dim, self._where)
                    problems.extend(disagree)
        except GalleryError as exc:
            problems.append(str(exc))
        return report

    @_guarded
    def migrate_index(self, spec: str) -> dict[str, Any]:
        """Move the gallery's derived index to another backend spec (``faiss:Flat`` <-> ``milvus``...).

        SQLite stays the truth, so this builds the new index from the templates, checks it against
        them, records the new spec (one transaction) and only then deletes the old index's data (a
        Milvus collection is dropped; a faiss file is replaced by the new save). Returns the
        agreement report of the new index. Other processes that have the gallery open keep
        answering correctly from their old index until they reopen it."""
        spec = normalize_index_spec(spec)
        if spec == self.index_spec:
            raise GalleryError(f"{self._where} already uses index {spec!r}")
        index_backends.create(spec, dim=self.dim)  # a bad spec fails before anything is built
        new = DerivedIndex(self.path, uid=self.uid, spec=spec, dim=self.dim, where=self._where)
        with read_snapshot(self._conn):
            new.rebuild(self._conn)
            report, problems = agreement(self._conn, new.backend, self.dim, self._where)
        if problems:
            new.close()
            raise GalleryError(f"{self._where}: the new index {spec!r} disagrees with the database: {problems[0]}")
        with WriteTransaction(self._conn) as tx:
            tx.extra_meta["index"] = spec
        old, self._index, self.index_spec = self._index, new, spec
        self._meta["index"] = spec
        self._index.save(self._conn, force=True)
        drop = getattr(old.backend, "drop", None)
        if drop is not None:  # the old index kept outside the gallery files (Milvus) holds the vectors
            drop()
        old.close()
        return report

    @property
    def model_path(self) -> str | None:
        return self._meta.get("model_path") or None

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)


def _approximate_summary(tuning: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What `gallery info` says about a managed approximate index: None while the search is exact,
    except when tuning chose exact search by measurement (``fallback``: the reason and what was tried)."""
    if not tuning:
        return None
    keys = ("layout", "param", "value", "rerank", "k", "target", "recall", "recall_se", "met", "speedup", "queries",
            "held_out", "trained_at",
            "fallback", "reason", "tried")
    return {k: tuning[k] for k in keys if k in tuning}


def _json_object(value: Any, what: str) -> dict[str, Any]:
    """Metadata must be a JSON object with text keys (it is stored as JSON)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise DataError(f"{what} must be a mapping with text keys, got {type(value).__name__}")
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be JSON-serialisable ({exc})") from None
    return dict(value)
