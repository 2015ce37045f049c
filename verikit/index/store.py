"""The gallery's SQLite file: how it is opened, checked, migrated and changed.

This module owns ``gallery.sqlite``, the source of truth of a gallery (see docs/concurrency.md):

* the connection settings every process uses (WAL, FULL sync, secure_delete, a bounded busy wait);
* the schema (version 2) and the migration of version-1 galleries;
* a cheap damage check on open (the header's page count against the file size, confirmed by
  ``PRAGMA quick_check`` only when they disagree);
* the declared schema of the ``meta`` table (:class:`GalleryMeta`, pydantic), checked on open;
* write transactions that keep ``generation`` and the template aggregates (count, id hash)
  in step with every change of the templates, and record removed template ids (tombstones) so a
  process holding an index can catch up without rescanning the table;
* decoding template blobs, each checked (4 * dim bytes, finite) where it is read;
* turning sqlite errors into one-line :class:`~verikit.errors.GalleryError` messages.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import struct
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import GalleryError
from ._validation import one_line_validation_error
from .state import id_hash

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0

_TABLES = """
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
    detail TEXT NOT NULL DEFAULT '{}',
    subject INTEGER
);
"""
# Version 2 adds the tombstones of removed templates (ids only: no biometric data) and the
# audit subject (the identity id an event concerns, so removal can redact its whole history).
_V2_TABLES = """
CREATE TABLE removed_templates (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE INDEX removed_by_generation ON removed_templates(generation);
"""


class GalleryMeta(BaseModel):
    """The declared schema of the ``meta`` table (every value is stored as text).

    Keys it does not declare (the pipeline settings and whatever ``extra_meta`` recorded) are
    kept as they are; their owners validate them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: int = Field(ge=1, le=SCHEMA_VERSION)
    dim: int = Field(gt=0, le=1 << 16)
    fingerprint: str = Field(min_length=1)
    index: str = Field(min_length=1)
    generation: int = Field(ge=0)
    uid: str = Field(pattern=r"^[0-9a-f]{32}$")
    created_at: float = Field(allow_inf_nan=False)
    model_path: str = ""
    similarity: str = "cosine"
    # Version 2: the aggregates every write keeps in step with the templates table.
    templates: Optional[int] = Field(default=None, ge=0)
    template_id_hash: Optional[int] = Field(default=None, ge=0, lt=1 << 64)
    erasure_pending: int = Field(default=0, ge=0)  # generation of a removal not yet erased; 0: none

    @field_validator("similarity")
    @classmethod
    def _known_measure(cls, value: str) -> str:
        from ..similarity import parse_measure

        try:
            return parse_measure(value).spec
        except Exception as exc:  # parse_measure's own error, re-raised as a field error
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _v2_aggregates(self) -> "GalleryMeta":
        if self.schema_version == 2 and (self.templates is None or self.template_id_hash is None):
            missing = "templates" if self.templates is None else "template_id_hash"
            raise ValueError(f"schema 2 requires '{missing}'")
        return self


def read_meta(conn: sqlite3.Connection, where: str) -> GalleryMeta:
    """The ``meta`` table, validated; a violation is one GalleryError line naming the field."""
    raw = dict(conn.execute("SELECT key, value FROM meta"))
    try:
        return GalleryMeta.model_validate(raw)
    except ValidationError as exc:
        raise GalleryError(one_line_validation_error(exc, f"{where} (table meta)")) from None


# -- opening -------------------------------------------------------------------------------------
MMAP_BYTES = 1 << 40  # as much as SQLite's compile-time cap allows (2 GiB by default)


def connect(db: Path, *, timeout: float = BUSY_TIMEOUT_S, wal: bool = True) -> sqlite3.Connection:
    """A connection with the settings every process uses on a gallery.

    Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT for writes, BEGIN ...
    COMMIT around a read that must see one snapshot). ``check_same_thread=False`` because a
    :class:`Gallery` serialises its own use of the connection with a lock.
    """
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=timeout, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")  # readers never block on an enrolling writer
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA secure_delete = ON")  # freed pages and cells are overwritten with zeros
    # Reads through a memory map instead of one read() per page: re-ranking a quantised index's
    # shortlist reads hundreds of scattered templates per query, and this halves that cost
    # (measured: 1.4 vs 2.4 ms for 160 rows). Writes still go through write(); SQLite drops a
    # stale mapping when another connection changed the file (WAL read transactions check).
    conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
    return conn


def damage_in_file(db: Path) -> tuple[str | None, bool]:
    """A cheap look for a truncated or mangled database file: ``(problem, certain)``, problem None
    when it looks whole.

    Reads the 100-byte header only. SQLite writes whole pages, so the file size is a multiple of
    the page size; and the header's page count (when its change counter says it is valid) times
    the page size must fit in the file. That last one can also be seen for an instant while
    another process checkpoints (SQLite writes page 1 first), so it is not ``certain``: the
    caller confirms it with ``quick_check`` before refusing.
    """
    try:
        size = db.stat().st_size
        with open(db, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})", True
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        return "is not an SQLite database", True
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"has an invalid page size ({page_size})", True
    change_counter, pages, valid_for = (struct.unpack(">I", header[o:o + 4])[0] for o in (24, 28, 92))
    if size % page_size:
        return f"is {size} bytes, not a whole number of {page_size}-byte pages (truncated)", True
    if pages and change_counter == valid_for and size < pages * page_size:
        return f"is {size} bytes but its header says {pages * page_size} (truncated)", False
    return None, True


def quick_check(conn: sqlite3.Connection) -> str | None:
    """``PRAGMA quick_check``: None when the database is sound, else SQLite's first complaint."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)")]
    except SQLITE_ERRORS as exc:
        return sqlite_message(exc)
    return None if rows == ["ok"] else "; ".join(rows)


# -- creating and migrating ----------------------------------------------------------------------
def create_file(tmp_db: Path, meta: dict[str, str]) -> None:
    """Write a new, empty version-2 gallery database at ``tmp_db`` (the caller renames it)."""
    conn = connect(tmp_db, wal=False)  # a rollback journal while creating: no -wal beside the temp file
    try:
        conn.executescript(_TABLES + _V2_TABLES)
        rows = {"schema_version": str(SCHEMA_VERSION), "templates": "0", "template_id_hash": "0",
                "erasure_pending": "0", **meta}
        conn.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
        conn.execute("INSERT INTO audit(at, action, detail) VALUES (?, 'create', ?)",
                     (time.time(), json.dumps({k: meta[k] for k in ("dim", "index", "fingerprint")})))
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: every later connection uses WAL
    finally:
        conn.close()


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a version-1 gallery to version 2 in one transaction (idempotent across processes).

    Adds the tombstone table, the audit subject column (filled for events of identities still
    enrolled under the same name) and the template aggregates.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None or version[0] != "1":  # another process migrated it meanwhile
            conn.execute("ROLLBACK")
            return
        for statement in filter(str.strip, _V2_TABLES.split(";")):  # not executescript: it COMMITs
            conn.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS")
                         .replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
        if "subject" not in {r[1] for r in conn.execute("PRAGMA table_info(audit)")}:
            conn.execute("ALTER TABLE audit ADD COLUMN subject INTEGER")
        conn.execute("UPDATE audit SET subject = (SELECT id FROM identities WHERE name = audit.identity)")
        ids = np.array([r[0] for r in conn.execute("SELECT id FROM templates")], dtype=np.int64)
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                         [("templates", str(len(ids))), ("template_id_hash", str(id_hash(ids))),
                          ("erasure_pending", "0"), ("schema_version", "2")])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# -- changing --------------------------------------------------------------------------------------
_STOPPED: set[str] = set()


def marker(point: str) -> None:
    """Test hook for crash and concurrency tests (one environment lookup when unused).

    With ``VERIKIT_TEST_MARKERS`` set, print ``verikit-marker: <point>`` on stderr at named points
    of a write (``write-begun``, ``write-before-commit``, ``write-committed``, ``index-saved``) and
    after ``Gallery.open`` (``opened``), so a
    test can act on that signal; with ``VERIKIT_TEST_STOP_AT=<point>`` the process also stops
    itself there (SIGSTOP, the first time), so a test can SIGKILL it at exactly that point, never after a delay.
    """
    if "VERIKIT_TEST_MARKERS" not in os.environ and "VERIKIT_TEST_STOP_AT" not in os.environ:
        return
    import signal
    import sys

    print(f"verikit-marker: {point}", file=sys.stderr, flush=True)
    if os.environ.get("VERIKIT_TEST_STOP_AT") == point and point not in _STOPPED:
        # Only the first time: a test resumes the process once (SIGCONT), so a later pass through
        # the same point (a second open in the same process) must not stop it for good.
        _STOPPED.add(point)
        os.kill(os.getpid(), signal.SIGSTOP)


class WriteTransaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error; the one way a gallery is changed.

    Holding SQLite's write lock, it reads the state it builds on (generation, template count,
    id hash, the id sequence). Changes of templates are declared with :meth:`added` and
    :meth:`removed`; at commit ``generation`` moves by one and the aggregates with it, and the
    removed ids are recorded as tombstones of that generation. A rename or a metadata edit
    declares nothing, so the generation (what a saved index must match) stays.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.generation_before = -1
        self.generation = -1
        self._count = 0
        self._hash = 0
        self._removed: list[np.ndarray] = []
        self._changed = False
        self.extra_meta: dict[str, str] = {}

    def __enter__(self) -> "WriteTransaction":
        self.conn.execute("BEGIN IMMEDIATE")
        marker("write-begun")
        try:
            meta = dict(self.conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('generation', 'templates', 'template_id_hash')"))
            self.generation_before = self.generation = int(meta["generation"])
            self._count, self._hash = int(meta["templates"]), int(meta["template_id_hash"])
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return self

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)

    @property
    def next_template_id(self) -> int:
        """The id AUTOINCREMENT would give next (we hold the write lock, so it is ours)."""
        seq = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='templates'").fetchone()
        return (seq[0] if seq else 0) + 1

    def added(self, ids: np.ndarray) -> None:
        self._count += len(ids)
        self._hash = (self._hash + id_hash(ids)) % (1 << 64)
        self._changed = True
        self.generation = self.generation_before + 1

    def removed(self, ids: np.ndarray) -> None:
        self._count -= len(ids)
        self._hash = (self._hash - id_hash(ids)) % (1 << 64)
        self._removed.append(np.asarray(ids, dtype=np.int64))
        self._changed = True
        self.generation = self.generation_before + 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.conn.execute("ROLLBACK")
            return
        try:
            if self._changed:
                rows = {"generation": str(self.generation), "templates": str(self._count),
                        "template_id_hash": str(self._hash)}
                self.conn.executemany("UPDATE meta SET value=? WHERE key=?", [(v, k) for k, v in rows.items()])
                for ids in self._removed:
                    self.conn.executemany("INSERT OR REPLACE INTO removed_templates(id, generation) VALUES (?, ?)",
                                          ((int(i), self.generation) for i in ids))
            if self.extra_meta:
                self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", self.extra_meta.items())
            marker("write-before-commit")
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        marker("write-committed")


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Every statement inside sees one committed state of the database (a WAL read snapshot).

    Kept short on purpose: a read transaction left open would stop checkpoints from erasing
    removed templates (docs/concurrency.md).
    """
    if conn.in_transaction:  # already inside one (a nested call): it is the same snapshot
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


_STATE_SQL = ("SELECT (SELECT value FROM meta WHERE key='generation'), (SELECT value FROM meta WHERE key='templates'), "
              "(SELECT value FROM meta WHERE key='template_id_hash'), "
              "(SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name='templates')")
# The same, plus SQLite's data_version: it moves whenever ANOTHER connection (of any process) has
# committed since this connection's last read transaction, and is read in the same snapshot.
_STATE_VERSION_SQL = _STATE_SQL + ", (SELECT data_version FROM pragma_data_version())"


def db_state(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
    """(generation, template count, template id hash, id sequence): what an index must match.
    One statement, so the per-search check costs one round trip."""
    return _state(conn.execute(_STATE_SQL).fetchone())


def db_state_and_version(conn: sqlite3.Connection) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """:func:`db_state` and ``(data_version, conn.total_changes)`` in one statement: the second
    pair is unchanged between two read snapshots of this connection only when no connection (other
    ones: data_version; this one: total_changes) changed the database in between. Call it as
    the first statement of a read snapshot, so both describe that snapshot."""
    row = conn.execute(_STATE_VERSION_SQL).fetchone()
    return _state(row), (int(row[4]), conn.total_changes)


def _state(row: Any) -> tuple[int, int, int, int]:
    try:
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])
    except (ValueError, TypeError) as exc:
        raise GalleryError(f"the meta table lost its generation or template aggregates ({exc}): gallery.sqlite is "
                           "damaged; restore it from a backup") from None


# -- reading templates -----------------------------------------------------------------------------
def decode_vectors(rows: Sequence[tuple[Any, ...]], dim: int, where: str) -> np.ndarray:
    """The vectors of ``rows`` (template id first, blob last) as (n, dim) float32, each checked:
    exactly 4 * dim bytes and finite. A bad one is a GalleryError naming the template."""
    size = 4 * dim
    blobs = [r[-1] for r in rows]
    # Checked in C when all is well (a search re-ranks hundreds of rows per query); the loop in
    # _name_bad_blob only runs to name the damaged template.
    if blobs and (set(map(type, blobs)) != {bytes} or set(map(len, blobs)) != {size}):
        _name_bad_blob(rows, size, dim, where)
    vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(rows), dim)
    finite = np.isfinite(vecs).all(axis=1)
    if not finite.all():
        bad = rows[int(np.argmin(finite))][0]
        raise GalleryError(f"{where}: template {bad} is damaged (NaN or infinite values); remove its "
                           "identity or restore the gallery from a backup")
    return vecs


def _name_bad_blob(rows: Sequence[tuple[Any, ...]], size: int, dim: int, where: str) -> None:
    for r in rows:
        blob = r[-1]
        if not isinstance(blob, bytes) or len(blob) != size:
            got = f"{len(blob)} bytes" if isinstance(blob, (bytes, str)) else type(blob).__name__
            raise GalleryError(f"{where}: template {r[0]} is damaged ({got}, expected {size} bytes for "
                               f"dimension {dim}); remove its identity or restore the gallery from a backup")


# -- errors ------------------------------------------------------------------------------------------
_BUSY = re.compile(r"locked|busy", re.I)


SQLITE_ERRORS = (sqlite3.Error, UnicodeDecodeError)  # a damaged page can make sqlite's own message undecodable


def sqlite_message(exc: BaseException) -> str:
    """SQLite's message on one line (decoded leniently: a damaged page can make it invalid UTF-8)."""
    if isinstance(exc, UnicodeDecodeError):  # text sqlite returned (a message or a value) is not UTF-8
        raw = exc.object.decode("utf-8", "backslashreplace") if isinstance(exc.object, bytes) else "text is not UTF-8"
        return " ".join(raw.split())
    return " ".join(str(exc).split()) or type(exc).__name__


def as_gallery_error(exc: BaseException, where: str) -> GalleryError:
    """One line for an sqlite error: busy (say what to do), damaged (say so), or the message."""
    msg = sqlite_message(exc)
    if isinstance(exc, sqlite3.OperationalError):
        if _BUSY.search(msg):
            return GalleryError(f"{where} is busy: another process held its write lock for more than "
                                f"{BUSY_TIMEOUT_S:.0f} s ({msg}); try again")
        return GalleryError(f"{where}: {msg}")
    return GalleryError(f"{where}: gallery.sqlite is damaged ({msg}); restore it from a backup, or run "
                        "`verikit gallery check` to see what is wrong")


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
