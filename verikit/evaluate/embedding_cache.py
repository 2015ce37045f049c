"""An on-disk cache of file embeddings, so a benchmark re-runs without the model's forward pass.

One ``.npz`` per model (``embeddings-<fingerprint>.npz``, no pickle: string keys are a unicode
array). A file's key is its absolute path, size and modification time (ns), so an edited or
replaced image is embedded again, and embeddings of another model are never mixed in.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from verikit.errors import DataError

from ..schemas import read_npz, validate
from .schema import EmbeddingCacheFile

__all__ = ["EmbeddingCache"]


def file_key(path: Path) -> str | None:
    """``"<abs path>|<size>|<mtime_ns>"``, or ``None`` when the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


class EmbeddingCache:
    """Embeddings keyed by file identity for one model fingerprint."""

    def __init__(self, directory: str | os.PathLike, fingerprint: str) -> None:
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.path = self.directory / f"embeddings-{fingerprint[:16]}.npz"
        self._table: dict[str, np.ndarray] = {}
        self.hits = 0
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        what = "embedding cache"
        try:
            doc = validate(EmbeddingCacheFile, read_npz(self.path, error=DataError, what=what), str(self.path),
                           error=DataError, what=what)
        except DataError as exc:  # a cache is derived data: say how to get a good one back
            raise DataError(f"{exc}; delete it to rebuild") from None
        if doc.fingerprint != self.fingerprint:
            raise DataError(f"embedding cache '{self.path}' belongs to model {doc.fingerprint[:12]}, "
                            f"not {self.fingerprint[:12]}")
        self._table = {str(k): doc.embeddings[i] for i, k in enumerate(doc.keys)}

    def lookup(self, paths: Sequence[Path]) -> tuple[dict[int, np.ndarray], list[int]]:
        """``({position: embedding} for cached files, positions to embed)``."""
        found, missing = {}, []
        for pos, p in enumerate(paths):
            key = file_key(p)
            if key is not None and key in self._table:
                found[pos] = self._table[key]
            else:
                missing.append(pos)
        self.hits += len(found)
        return found, missing

    def add(self, paths: Sequence[Path], embeddings: np.ndarray) -> None:
        for p, e in zip(paths, embeddings):
            key = file_key(p)
            if key is not None:
                self._table[key] = np.asarray(e, np.float32)

    def save(self) -> Path:
        """Write atomically (temporary file, then rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._table), dtype=str)
        emb = np.stack(list(self._table.values())) if self._table else np.zeros((0, 0), np.float32)
        tmp = self.path.with_name(f".{self.path.name}.tmp.npz")
        np.savez(tmp, fingerprint=np.array(self.fingerprint), keys=keys, embeddings=emb)
        os.replace(tmp, self.path)
        return self.path

    def __len__(self) -> int:
        return len(self._table)
