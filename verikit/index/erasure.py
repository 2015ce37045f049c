"""Erasing removed templates from the gallery's files (docs/concurrency.md, "Removal and erasure").

secure_delete zeroes what a removal frees, but in WAL mode those zeroed pages first go to the
WAL while the database file still holds the old ones. A ``wal_checkpoint(TRUNCATE)`` copies them
into the database file and empties the WAL; it cannot finish while another connection reads an
older snapshot. ``meta.erasure_pending`` (the generation of the last removal not yet erased, or
0) keeps that fact across processes until a checkpoint succeeds.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Iterator

from .store import BUSY_TIMEOUT_S, WriteTransaction


def pending(conn: sqlite3.Connection) -> str | None:
    """The generation of a removal whose bytes may remain, or None."""
    row = conn.execute("SELECT value FROM meta WHERE key='erasure_pending'").fetchone()
    return None if row is None or row[0] in ("", "0") else str(row[0])


@contextmanager
def busy_timeout(conn: sqlite3.Connection, seconds: float) -> Iterator[None]:
    """Wait at most ``seconds`` for other processes' locks (instead of BUSY_TIMEOUT_S)."""
    conn.execute(f"PRAGMA busy_timeout = {max(0, int(seconds * 1000))}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")


def checkpoint(conn: sqlite3.Connection) -> bool:
    """``wal_checkpoint(TRUNCATE)``: True when the WAL is empty and every change (secure_delete's
    zeros included) is in the database file; False when a reader or writer was in the way."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return busy == 0


def purge(conn: sqlite3.Connection, timeout: float) -> bool:
    """Finish a pending erasure, waiting at most ``timeout`` s; True when nothing is pending."""
    mark = pending(conn)
    if mark is None:
        return True
    with busy_timeout(conn, timeout):
        if not checkpoint(conn):
            return False
        # Erased. Clear the mark only if no removal came after the one it names (that one's own
        # purge, or the next open, deals with it).
        try:
            with WriteTransaction(conn) as tx:
                tx.execute("UPDATE meta SET value='0' WHERE key='erasure_pending' AND value=?", (mark,))
        except sqlite3.OperationalError:
            return True  # busy: the bytes are erased; the mark is cleared by a later open
    with busy_timeout(conn, 0):
        checkpoint(conn)  # best effort: the WAL now only holds the meta page
    return True
