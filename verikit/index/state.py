"""What a vector index holds, said exactly, and the files that carry it.

An :class:`IndexState` names the database state an index reflects: the gallery (``uid``) and
index spec, the ``generation``, and the set of template ids, summarised as its size, an
order-free hash (:func:`id_hash`, kept incrementally under additions and removals) and ``seq``,
the highest template id the index has been caught up to (ids are never reused, so every
template added later has a larger id). The database keeps the same numbers for itself
(``verikit.index.store``), so comparing the two is a handful of integer comparisons.

``index.json`` carries the state of the saved ``index.faiss``. Neither file is trusted: the
loaded index's own ids must hash to the recorded state (an older ``index.faiss`` put back under a
newer ``index.json`` is caught here), and the state must then match SQLite after catching up.
Saving and loading take ``index.lock`` (flock, exclusive to save, shared to load), so a
reader never pairs one process's ``index.faiss`` with another's ``index.json``.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

INDEX_FILE, INDEX_META_FILE, LOCK_FILE = "index.faiss", "index.json", "index.lock"
RECORD_FORMAT = 2
_M64 = (1 << 64) - 1


def id_hash(ids: np.ndarray) -> int:
    """An order-free hash of a set of template ids: the sum mod 2**64 of splitmix64(id).

    Adding or removing ids adds or subtracts their hashes, so the database and every index
    keep it up to date in O(changes); two different id sets collide with chance ~2**-64.
    """
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return int(z.sum(dtype=np.uint64)) & _M64


@dataclass(frozen=True)
class IndexState:
    """The database state an index reflects (see the module docstring)."""

    uid: str
    index: str
    generation: int
    ntotal: int
    id_hash: int
    seq: int
    # A managed approximate index's measured recall and search parameter (verikit.index.tuning);
    # not part of what the index holds, so never compared.
    tuning: Optional[dict[str, Any]] = field(default=None, compare=False)

    def matches(self, generation: int, ntotal: int, hash_: int, seq: int) -> bool:
        return (self.generation, self.ntotal, self.id_hash, self.seq) == (generation, ntotal, hash_, seq)

    def plus(self, ids: np.ndarray, generation: int, seq: int) -> "IndexState":
        return replace(self, generation=generation, ntotal=self.ntotal + len(ids),
                       id_hash=(self.id_hash + id_hash(ids)) & _M64, seq=max(self.seq, seq))

    def minus(self, ids: np.ndarray, generation: int) -> "IndexState":
        return replace(self, generation=generation, ntotal=self.ntotal - len(ids),
                       id_hash=(self.id_hash - id_hash(ids)) & _M64)

    def to_json(self) -> str:
        return json.dumps({"format": RECORD_FORMAT, **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> "IndexState | None":
        """The recorded state, or None when the record is missing fields, old or malformed."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("format") != RECORD_FORMAT:
                return None
            state = cls(uid=raw["uid"], index=raw["index"], generation=raw["generation"], ntotal=raw["ntotal"],
                        id_hash=raw["id_hash"], seq=raw["seq"], tuning=raw.get("tuning"))
        except (ValueError, KeyError, TypeError):
            return None
        ints = (state.generation, state.ntotal, state.id_hash, state.seq)
        if state.tuning is not None and not isinstance(state.tuning, dict):
            return None
        if not all(type(v) is int and v >= 0 for v in ints) or not all(isinstance(v, str) for v in (state.uid, state.index)):
            return None
        return state


def read_record(folder: Path) -> IndexState | None:
    try:
        return IndexState.from_json((folder / INDEX_META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


@contextmanager
def index_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """flock on ``index.lock``: exclusive while saving the index files, shared while loading them.

    Where the lock file cannot be created (a read-only gallery) it proceeds unlocked: a torn pair
    is still caught by the ids check, it only costs a rebuild.
    """
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write via a uniquely named temporary sibling and a rename (several processes may save)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftover_temporaries(folder: Path) -> None:
    """Delete temporary index files a killed process left behind (they may hold removed vectors).
    Call with the exclusive lock held: then no live process is writing one."""
    for leftover in folder.glob(f".{INDEX_FILE}.*tmp"):
        leftover.unlink(missing_ok=True)
    for leftover in folder.glob(f".{INDEX_META_FILE}.*tmp"):
        leftover.unlink(missing_ok=True)
