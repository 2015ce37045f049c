"""FAISS on the GPU: a mirror of the CPU index, used for searching when the GPU build of faiss
(``verikit[gpu]``: faiss-gpu-cu12, which replaces faiss-cpu) sees a CUDA device.

The CPU index stays the one that is saved, loaded, trained and checked against SQLite (derived
data as always); the mirror is a copy made with ``faiss.index_cpu_to_gpu`` on the first search and
dropped whenever the CPU index changes, so it can never answer from a state the gallery has left.
Layouts the GPU build cannot hold (HNSW) and any failure to copy fall back to the CPU for the
life of the index. ``VERIKIT_FAISS_GPU=0`` turns the mirror off. Written against faiss's GPU API
but, with no GPU on the development machine, only the CPU path is exercised by the tests.
"""

from __future__ import annotations

import functools
import os
from typing import Any

_RESOURCES: Any = None


def gpus() -> int:
    """CUDA devices the installed faiss can use (0 with faiss-cpu, or with VERIKIT_FAISS_GPU=0)."""
    if os.environ.get("VERIKIT_FAISS_GPU", "1") == "0":
        return 0
    return _devices()


@functools.cache
def _devices() -> int:
    """Asked of faiss once per process: every search asks, and the devices do not come and go."""
    import faiss

    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


class GpuMirror:
    """The GPU copy of one CPU index (None until needed; refused layouts stay on the CPU)."""

    def __init__(self) -> None:
        self.index: Any = None
        self.unsupported = False

    def drop(self) -> None:
        self.index = None

    def search(self, cpu_index: Any, queries: Any, k: int) -> Any:
        """(scores, ids) from the GPU copy, or None when the CPU must answer."""
        if self.unsupported or gpus() == 0:
            return None
        import faiss

        global _RESOURCES
        try:
            if self.index is None:
                if _RESOURCES is None:
                    _RESOURCES = faiss.StandardGpuResources()
                self.index = faiss.index_cpu_to_gpu(_RESOURCES, 0, cpu_index)
            ivf = faiss.try_extract_index_ivf(cpu_index)
            if ivf is not None:  # the tuned nprobe lives on the CPU index; the copy follows it
                faiss.GpuParameterSpace().set_index_parameter(self.index, "nprobe", int(ivf.nprobe))
            if int(k) > 2048:  # the GPU k-selection limit
                return None
            return self.index.search(queries, int(k))
        except (RuntimeError, AttributeError):
            self.index, self.unsupported = None, True
            return None
