"""The default index backend: any ``faiss.index_factory`` string behind an ID map.

Registered as ``faiss`` in ``verikit.index_backends``; ``faiss:Flat`` (exact inner product, the
default), ``faiss:HNSW32`` or ``faiss:IVF1024,Flat`` name one; ``faiss:ivf-flat``, ``faiss:hnsw``,
``faiss:auto``... are managed approximate indexes tuned to a recall (:mod:`.approximate`). Vectors are unit length and scored
by inner product, so scores are cosine similarities. The index is derived data: the gallery can
always rebuild it from SQLite, which is why an index that cannot remove vectors is simply rebuilt.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import GalleryError
from .gpu import GpuMirror


# faiss scans a flat index one query at a time unless (queries x dim) reaches
# ``distance_compute_blas_threshold``, and then as one BLAS matrix product. faiss 1.15's default
# (128,000) keeps batches under 1,000 queries at 128 dims (500 at 256) on the per-query kernel.
# Measured on this project's 2-core CPU (faiss 1.15.1, 200k x 128 and x 256, 1 thread): the matrix
# product is already faster at 3-4 queries and 5-9x faster at 20-64, while a single query is 2-3x
# slower through it. So verikit switches at 4 queries, for the dimension it is searching.
BLAS_FROM_QUERIES = 4


def use_blas_from(queries: int, dim: int) -> None:
    """Let faiss's exhaustive search use BLAS for batches of at least ``queries`` queries of ``dim``.

    The threshold is a process-wide faiss setting compared with queries x dim; it only picks the
    kernel (the top-k is the same up to float rounding), so two threads searching indexes of
    different dimensions at once can at worst get the slower kernel for one call."""
    import faiss

    value = int(queries) * int(dim)
    if faiss.cvar.distance_compute_blas_threshold != value:
        faiss.cvar.distance_compute_blas_threshold = value


class FaissIndex:
    """Inner-product search over (id, vector) pairs with faiss."""

    def __init__(self, dim: int, factory: str = "Flat", *, index=None) -> None:
        import faiss

        self.dim = int(dim)
        self.factory = factory or "Flat"
        if index is None:
            try:
                index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise GalleryError(f"faiss cannot build index {self.factory!r}: "
                                   f"{str(exc).strip().splitlines()[-1]}") from exc
            # IVF indexes keep ids themselves. Wrapping them in IndexIDMap would corrupt ids on
            # removal (IDMap compacts its id table, IVF does not shift); every other index needs it.
            if faiss.try_extract_index_ivf(index) is None and not isinstance(index, faiss.IndexIDMap):
                index = faiss.IndexIDMap(index)
        self.index = index
        self._gpu = GpuMirror()  # searches run there when a GPU build of faiss sees a device (verikit.index.gpu)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def needs_training(self) -> bool:
        return not self.index.is_trained

    def train(self, vectors: np.ndarray) -> None:
        if vectors.shape[0] == 0:
            raise GalleryError(f"index {self.factory!r} needs training vectors, and the gallery is empty")
        try:
            self._gpu.drop()
            self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))
        except RuntimeError as exc:
            raise GalleryError(f"cannot train index {self.factory!r} on {vectors.shape[0]} vectors: "
                               f"{str(exc).strip().splitlines()[-1]}") from exc

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._gpu.drop()
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids; return False when this index type cannot remove (caller rebuilds)."""
        import faiss

        self._gpu.drop()
        try:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64)))
            return True
        except RuntimeError:
            return False

    def ids(self) -> np.ndarray:
        """The ids this index holds (any order): what the gallery checks a loaded index against."""
        import faiss

        if hasattr(self.index, "id_map"):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)
        ivf = faiss.try_extract_index_ivf(self.index)
        if ivf is None:
            raise GalleryError(f"cannot list the ids of a faiss {type(self.index).__name__} index")
        lists = ivf.invlists
        parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                 for i in range(ivf.nlist) if lists.list_size(i)]
        return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.zeros(0, np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray | None:
        """The stored vectors of ``ids`` (NaN rows for ids it lacks), for `gallery check`; None when
        this index does not keep them exactly (anything but ``Flat``)."""
        import faiss

        if self.factory != "Flat" or not hasattr(self.index, "id_map"):
            return None
        held = faiss.vector_to_array(self.index.id_map)
        order = np.argsort(held)
        found = np.searchsorted(held, ids, sorter=order)
        out = np.full((len(ids), self.dim), np.nan, dtype=np.float32)
        inner = faiss.downcast_index(self.index.index)
        for row, (i, at) in enumerate(zip(ids, found)):
            if at < len(held) and held[order[at]] == i:
                out[row] = inner.reconstruct(int(order[at]))
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), each (Q, k); missing neighbours have id -1. On the GPU where there is one."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        use_blas_from(BLAS_FROM_QUERIES, self.dim)
        found = self._gpu.search(self.index, q, k)
        return found if found is not None else self.index.search(q, int(k))

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader never sees half an index (a unique temporary name, because
        several processes may save the same gallery's index)."""
        import faiss

        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, path: str | Path) -> None:
        """Replace this index's contents with the index saved at ``path``."""
        import faiss

        index = faiss.read_index(str(path))
        if index.d != self.dim:
            raise GalleryError(f"index file '{path}' has dimension {index.d}, expected {self.dim}")
        self.index = index
        self._gpu.drop()


def create(factory: str = "Flat", *, dim: int) -> "FaissIndex":
    """Entry-point factory: ``faiss[:FACTORY]``, or a managed approximate spec (``faiss:ivf-flat``,
    ``faiss:hnsw``, ``faiss:auto``, ...: see :mod:`verikit.index.approximate`)."""
    from .approximate import ManagedIndex, parse

    managed = parse(factory)
    if managed is not None:
        return ManagedIndex(dim, managed)  # type: ignore[return-value]
    return FaissIndex(dim, factory)
