"""Proof that a gallery's derived index agrees with SQLite: what `gallery check` and `gallery
migrate` report.

Compared: the template count and the index's count; the index's own ids against the templates
table, as sets (when the backend can list them, as faiss ID maps, IVF and Milvus can); and a random
sample of stored vectors read back from the index against the templates (when the backend keeps
the vectors exactly: ``faiss:Flat`` and Milvus; quantised layouts cannot be compared bit for bit).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np

from .store import decode_vectors

SAMPLE = 64
TOLERANCE = 1e-6  # float32 round trips (Milvus returns float32 through doubles): exact in practice


def agreement(conn: sqlite3.Connection, backend: Any, dim: int, where: str, *, sample: int = SAMPLE,
              seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """(report, problems) for ``backend`` against the snapshot ``conn`` reads."""
    db_ids = np.fromiter((r[0] for r in conn.execute("SELECT id FROM templates ORDER BY id")), dtype=np.int64)
    report: dict[str, Any] = {"templates": int(len(db_ids)), "indexed_vectors": int(backend.ntotal),
                              "ids_compared": False, "vectors_sampled": 0}
    problems: list[str] = []
    if report["indexed_vectors"] != report["templates"]:
        problems.append(f"the index holds {report['indexed_vectors']} vectors but the database {report['templates']} "
                        "templates")
    held = getattr(backend, "ids", None)
    if callable(held):
        ids = np.asarray(held(), dtype=np.int64)
        missing, extra = np.setdiff1d(db_ids, ids), np.setdiff1d(ids, db_ids)
        repeated = len(ids) - len(np.unique(ids))
        if len(missing) or len(extra) or repeated:
            problems.append(f"the index lacks {len(missing)} template id(s) of the database {missing[:5].tolist()}, "
                            f"holds {len(extra)} it does not {extra[:5].tolist()} and repeats {repeated}")
        report["ids_compared"] = True
    read_back = getattr(backend, "vectors", None)
    if callable(read_back) and len(db_ids):
        pick = np.sort(np.random.default_rng(seed).choice(db_ids, min(sample, len(db_ids)), replace=False))
        got = read_back(pick)
        if got is not None:
            marks = ",".join("?" * len(pick))
            rows = conn.execute(f"SELECT id, vector FROM templates WHERE id IN ({marks}) ORDER BY id",
                                [int(i) for i in pick]).fetchall()
            want = decode_vectors(rows, dim, where)
            close = np.all(np.abs(np.asarray(got, dtype=np.float32) - want) <= TOLERANCE, axis=1)  # NaN: not close
            if not close.all():
                problems.append(f"{int((~close).sum())} of {len(pick)} sampled vectors in the index differ from the "
                                f"templates in the database (ids {pick[~close][:5].tolist()})")
            report["vectors_sampled"] = int(len(pick))
    return report, problems
