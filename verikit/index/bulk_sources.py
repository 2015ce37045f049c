"""Content hashes of enrolled source files: what lets a bulk enroll resume.

A side table, created on first use, keyed by template id and deleted with its template (a foreign
key with ON DELETE CASCADE: the gallery's connections enable foreign keys), so removing an identity
erases its hashes in the same transaction, and the removal's secure_delete zeroes them like the
templates. The source path itself is the template's ``source`` column, indexed here for the
resume lookup.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Iterable, Sequence

TABLE = """
CREATE TABLE IF NOT EXISTS template_sources (
    template_id INTEGER PRIMARY KEY REFERENCES templates(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_by_source ON templates(source);
"""


def _exists(conn: Any) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='template_sources'").fetchone() is not None


def record(tx: Any, pairs: Iterable[tuple[int, str]]) -> None:
    """Store (template id, sha256) pairs inside the caller's write transaction."""
    if not _exists(tx):
        for statement in TABLE.strip().split(";"):
            if statement.strip():
                tx.execute(statement)
    tx.executemany("INSERT INTO template_sources(template_id, sha256) VALUES (?, ?)", pairs)


def enrolled(conn: sqlite3.Connection, candidates: Sequence[tuple[str | None, str]]) -> set[tuple[str, str]]:
    """The candidates (path, sha256) whose path is a stored source with that same content hash."""
    if not candidates or not _exists(conn):
        return set()
    paths = sorted({p for p, _ in candidates if p is not None})
    rows = conn.execute("SELECT t.source, s.sha256 FROM templates t JOIN template_sources s ON s.template_id = t.id "
                        "WHERE t.source IN (SELECT value FROM json_each(?))", (json.dumps(paths),))
    stored = set(rows)
    return {(p, h) for p, h in candidates if (p, h) in stored}
