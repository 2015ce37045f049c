"""The gallery's audit log: one row per change, and what removing an identity does to its rows.

Every event names the identity it concerns (``identity``, as named then) and its id
(``subject``), with a small JSON ``detail`` (template counts, source file names, old names,
metadata keys). Removing an identity erases it: by default its events stay (the log still shows
that something was enrolled, renamed, removed, and when) but everything that identifies the
person goes: the name becomes a random pseudonym shared by that identity's events (so they can
still be read as one history), and the details keep only counts. ``keep_identity=True`` is the
option for records that must name who was removed (for example under a legal hold): the events
keep names and details, and only the link to the identity id is dropped, since ids may be reused.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from typing import Any, Mapping

from ..errors import GalleryError

_KEPT_DETAIL = ("templates",)  # what a redacted event still says


def record(conn: sqlite3.Connection | Any, action: str, identity: str | None, detail: Mapping[str, Any],
           subject: int | None = None) -> None:
    conn.execute("INSERT INTO audit(at, action, identity, detail, subject) VALUES (?, ?, ?, ?, ?)",
                 (time.time(), action, identity, json.dumps(detail), subject))


def _names_of(conn: sqlite3.Connection | Any, subject: int, name: str) -> set[str]:
    """Every name the identity had: its own events, plus (for events from before subjects were
    recorded) the chain of renames leading to its current name."""
    names = {name} | {r[0] for r in conn.execute("SELECT identity FROM audit WHERE subject=? AND identity IS NOT NULL",
                                                   (subject,))}
    frontier = set(names)
    while frontier:
        found = set()
        for n in frontier:
            for (detail,) in conn.execute("SELECT detail FROM audit WHERE action='rename' AND identity=? "
                                          "AND (subject IS NULL OR subject=?)", (n, subject)):
                try:
                    old = json.loads(detail).get("from")
                except (ValueError, AttributeError):
                    continue
                if isinstance(old, str) and old not in names:
                    found.add(old)
        names |= found
        frontier = found
    return names


def close_history(conn: sqlite3.Connection | Any, subject: int, name: str, templates: int, *, keep_identity: bool) -> None:
    """Record the removal of identity ``subject`` (now named ``name``) and redact its history."""
    if keep_identity:
        conn.execute("UPDATE audit SET subject=NULL WHERE subject=?", (subject,))
        record(conn, "remove", name, {"templates": templates})
        return
    names = _names_of(conn, subject, name)
    pseudonym = f"removed-{secrets.token_hex(4)}"
    marks = ",".join("?" * len(names))
    rows = list(conn.execute(f"SELECT id, detail FROM audit WHERE subject=? OR (subject IS NULL AND identity IN ({marks}))",
                             (subject, *sorted(names))))
    for row_id, detail in rows:
        try:
            old = json.loads(detail)
        except ValueError:
            old = {}
        kept = {k: old[k] for k in _KEPT_DETAIL if isinstance(old, dict) and k in old}
        conn.execute("UPDATE audit SET identity=?, detail=?, subject=NULL WHERE id=?",
                     (pseudonym, json.dumps({**kept, "redacted": True}), row_id))
    record(conn, "remove", pseudonym, {"templates": templates, "redacted_events": len(rows)})


def read(conn: sqlite3.Connection, limit: int, where: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, at, action, identity, detail FROM audit ORDER BY id DESC LIMIT ?", (int(limit),))
    out = []
    for row_id, at, action, who, detail in rows:
        try:
            parsed = json.loads(detail)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(at)))
        except (ValueError, TypeError, OverflowError, OSError) as exc:
            raise GalleryError(f"{where}: audit event {row_id} is damaged ({exc.__class__.__name__}); "
                               "restore the gallery from a backup") from None
        out.append({"at": when, "action": str(action), "identity": who if who is None else str(who), "detail": parsed})
    return out
