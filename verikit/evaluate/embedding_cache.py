"""An on-disk cache of file embeddings, so a benchmark re-runs without the model's forward pass.

Per model (more exactly per ``cache_key``: the model plus the pipeline its files go through) the
cache is one main file ``embeddings-<key>.npz`` plus *parts* ``embeddings-<key>.part-*.npz``
(no pickle: string keys are unicode arrays). A run writes a part after every chunk of files
(:meth:`EmbeddingCache.flush`), each atomically (temporary file, then rename), so a run that is
killed keeps every chunk it finished and a rerun embeds only the rest. At the end of a run
:meth:`EmbeddingCache.save` folds the parts into the main file, under a lock so that runs
sharing a cache folder never drop each other's entries.

A file's key is its absolute path, size and modification time (ns), so an edited or replaced
image is embedded again, and embeddings of another model are never mixed in. Besides
embeddings the cache records the files in which the detector found **no face** (so a rerun
does not detect again) and the embeddings a no-face fallback made (``<key>|whole``,
``<key>|center``), which are only used when the same fallback is asked for. Files that could
not be read are never cached: they are tried again.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from verikit.errors import DataError

from ..schemas import read_npz, validate
from .schema import EmbeddingCacheFile

__all__ = ["EmbeddingCache", "Lookup", "file_key"]


def file_key(path: Path) -> str | None:
    """``"<abs path>|<size>|<mtime_ns>"``, or ``None`` when the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


@dataclass
class Lookup:
    """What the cache knows about a list of files, by position in that list."""

    found: dict[int, np.ndarray] = field(default_factory=dict)   # embeddings (a face, or the fallback's)
    fallback: list[int] = field(default_factory=list)             # of those: embedded by the fallback
    no_face: list[int] = field(default_factory=list)              # no face, and no fallback asked for
    missing: list[int] = field(default_factory=list)              # to embed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (POSIX ``flock``; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: compaction races only cost re-embedding
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class EmbeddingCache:
    """Embeddings (and no-face markers) keyed by file identity for one model fingerprint."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        stem = f"embeddings-{fingerprint[:16]}"
        self.path = self.directory / f"{stem}.npz"
        self._part_glob = f"{stem}.part-*.npz"
        self._lock = self.directory / f".{stem}.lock"
        self._table: dict[str, np.ndarray] = {}
        self._no_face: set[str] = set()
        self._pending: dict[str, np.ndarray] = {}
        self._pending_no_face: set[str] = set()
        self.hits = 0
        self.parts_written = 0
        for path in self._files():
            self._merge(*self._read(path))

    # ------------------------------------------------------------------ reading

    def _files(self) -> list[Path]:
        """The main file (when present) and the parts, in a stable order."""
        if not self.directory.is_dir():
            return []
        parts = sorted(self.directory.glob(self._part_glob))
        return ([self.path] if self.path.is_file() else []) + parts

    def _read(self, path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
        what = "embedding cache"
        try:
            doc = validate(EmbeddingCacheFile, read_npz(path, error=DataError, what=what), str(path),
                           error=DataError, what=what)
        except DataError as exc:
            if not path.exists():
                return {}, set()  # a part another run has just folded into the main file
            raise DataError(f"{exc}; delete it to rebuild") from None  # derived data: say how to get it back
        if doc.fingerprint != self.fingerprint:
            raise DataError(f"embedding cache '{path}' belongs to model {doc.fingerprint[:12]}, "
                            f"not {self.fingerprint[:12]}")
        return {str(k): doc.embeddings[i] for i, k in enumerate(doc.keys)}, {str(k) for k in doc.no_face}

    def _merge(self, table: dict[str, np.ndarray], no_face: set[str]) -> None:
        self._table.update(table)
        self._no_face |= no_face

    # ------------------------------------------------------------------ queries

    def lookup(self, paths: Sequence[Path], fallback: str | None = None) -> Lookup:
        """Which of ``paths`` are known: embedded, known to have no face (embedded by ``fallback``
        when one is asked for and cached), or still to embed."""
        out = Lookup()
        for pos, p in enumerate(paths):
            key = file_key(p)
            if key is None:
                out.missing.append(pos)
            elif key in self._table:
                out.found[pos] = self._table[key]
            elif key in self._no_face and fallback is None:
                out.no_face.append(pos)
            elif key in self._no_face and f"{key}|{fallback}" in self._table:
                out.found[pos] = self._table[f"{key}|{fallback}"]
                out.fallback.append(pos)
            else:
                out.missing.append(pos)
        self.hits += len(out.found) + len(out.no_face)
        return out

    # ------------------------------------------------------------------ writing

    def add(self, paths: Sequence[Path], embeddings: np.ndarray, fallback: str | None = None) -> None:
        """Embeddings of ``paths``; with ``fallback``, ones that mode made for files with no face."""
        for p, e in zip(paths, embeddings):
            key = file_key(p)
            if key is not None:
                key = key if fallback is None else f"{key}|{fallback}"
                self._table[key] = self._pending[key] = np.asarray(e, np.float32)
        if fallback is not None:
            self.add_no_face(paths)

    def add_no_face(self, paths: Sequence[Path]) -> None:
        """Files in which the detector found no face."""
        for p in paths:
            key = file_key(p)
            if key is not None:
                self._no_face.add(key)
                self._pending_no_face.add(key)

    @staticmethod
    def _write(path: Path, fingerprint: str, table: dict[str, np.ndarray], no_face: set[str]) -> None:
        keys = np.array(list(table), dtype=str)
        emb = np.stack(list(table.values())) if table else np.zeros((0, 0), np.float32)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
        np.savez(tmp, fingerprint=np.array(fingerprint), keys=keys, embeddings=emb,
                 no_face=np.array(sorted(no_face), dtype=str))
        os.replace(tmp, path)

    def flush(self) -> Path | None:
        """Write what was added since the last flush as a new part (atomically); ``None`` if nothing was."""
        if not self._pending and not self._pending_no_face:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        part = self.directory / self._part_glob.replace("*", f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
        self._write(part, self.fingerprint, self._pending, self._pending_no_face)
        self._pending, self._pending_no_face = {}, set()
        self.parts_written += 1
        return part

    def save(self) -> Path:
        """Fold every part (this run's and any other's) into the main file, atomically and under a lock."""
        self.flush()
        self.directory.mkdir(parents=True, exist_ok=True)
        with _locked(self._lock):
            files = self._files()
            for path in files:  # what other runs wrote meanwhile
                self._merge(*self._read(path))
            self._write(self.path, self.fingerprint, self._table, self._no_face)
            for path in files:
                if path != self.path:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        return self.path

    def __len__(self) -> int:
        return len(self._table)
