"""Managed approximate indexes: the gallery picks the FAISS layout, trains it and tunes it to a recall.

Specs (``--index``)::

    faiss:ivf-flat   IVF, full vectors in the lists            (removal: yes; memory: as Flat)
    faiss:ivf-sq8    IVF, 8-bit scalar-quantised vectors        (removal: yes; memory: 1/4 of Flat)
    faiss:ivf-pq     IVF, product-quantised codes               (removal: yes; memory: ~1/32 of Flat)
    faiss:hnsw       HNSW graph, full vectors                   (removal: rebuilds; memory: Flat + graph)
    auto             exact Flat below 100,000 templates, ivf-flat above, unless measured slower

each optionally followed by ``,recall=R`` (the 10-recall@10 to meet, default 0.95), ``,k=K`` (the
k of recall@k) and ``,min=N`` (the size at which the approximate layout replaces exact search).
Below ``min`` templates the index is an exact Flat one: training a partition on a few thousand
vectors is meaningless and an exact scan of them costs well under a millisecond.

At ``min`` the gallery rebuilds the index in the approximate layout (IVF: ``nlist`` about
2*sqrt(n), trained on a sample of the templates), then measures recall@k against the exact
answer on templates held out of the index until then (the tuning queries are never in the
index they measure, so the figure is what fresh queries get) and picks the smallest ``nprobe``
(IVF) or ``efSearch`` (HNSW) that meets the target (:mod:`verikit.index.tuning`). When the
gallery has grown 4x past the size it was built at, the index is rebuilt and tuned again: IVF
retrained (the partition then has about half the lists it should), HNSW's graph built anew (its
search parameter cannot be measured honestly on a graph that already holds every template, and
the rebuilds at 4x growth cost at most a third of the final build in total). The quantised layouts (SQ8, PQ) lose precision in the codes themselves, so
their shortlist is widened ``rerank`` times and re-ranked exactly with the stored templates.

``auto`` keeps the approximate layout only when it pays: tuning also times the exact scan on the
same queries, and when the recall needs so wide a search (``nprobe`` near ``nlist``) that the
approximate index is less than 1.5x faster than exact search, or the recall is not met at all,
the gallery searches exactly and ``gallery info`` says why (``fallback``/``reason``). It tries
again when the gallery has grown 4x. The explicit kinds are kept as asked, with the measured
``speedup`` on record.

Why ``auto`` switches at 100,000: an exact flat scan of 100,000 x 256 float32 takes ~1-2 ms per
query on one core (it scales linearly), which is already as fast as a gallery round trip; above it
the scan grows to ~5 ms at 1M and 50 ms at 10M, while IVF keeps near-constant cost at a measured
recall. Below it approximate search would trade exactness for no visible gain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GalleryError
from .faiss_backend import FaissIndex

KINDS = ("auto", "ivf-flat", "ivf-sq8", "ivf-pq", "hnsw")
AUTO_MIN = 100_000      # auto: exact below this many templates (see the module docstring)
DEFAULT_MIN = 10_000    # explicit approximate kinds: exact below this many
DEFAULT_RECALL = 0.95
DEFAULT_K = 10
GROWTH = 4              # rebuild (retrain, re-tune) when the gallery has grown this many times
TRAIN_PER_LIST = 64     # training vectors per IVF list (faiss warns below 39)
HNSW_M = 32


@dataclass(frozen=True)
class ManagedSpec:
    """A parsed managed spec (see the module docstring)."""

    kind: str
    recall: float = DEFAULT_RECALL
    k: int = DEFAULT_K
    min: int = DEFAULT_MIN
    text: str = field(default="", compare=False)

    @property
    def family(self) -> str:
        return "ivf-flat" if self.kind == "auto" else self.kind

    @property
    def quantised(self) -> bool:
        return self.family in ("ivf-sq8", "ivf-pq")


def normalize(spec: str) -> str:
    """``auto`` (and ``auto,...``) is shorthand for ``faiss:auto``: the spec the gallery records."""
    s = spec.strip()
    return f"faiss:{s}" if s == "auto" or s.startswith("auto,") else s


def parse(arg: str | None) -> ManagedSpec | None:
    """The managed spec in a ``faiss:ARG`` argument; None when ARG is a plain faiss factory string."""
    if not arg:
        return None
    kind, *options = [p.strip() for p in arg.split(",")]
    if kind.lower() not in KINDS:
        return None
    kind = kind.lower()
    values: dict[str, Any] = {"min": AUTO_MIN if kind == "auto" else DEFAULT_MIN}
    for opt in options:
        key, sep, value = opt.partition("=")
        key = key.strip()
        try:
            if not sep or key not in ("recall", "k", "min"):
                raise ValueError
            values[key] = float(value) if key == "recall" else int(value)
        except ValueError:
            raise GalleryError(f"index spec 'faiss:{arg}': cannot read option {opt!r} "
                               "(expected recall=R, k=K or min=N)") from None
    recall, k, min_ = values.get("recall", DEFAULT_RECALL), values.get("k", DEFAULT_K), values["min"]
    if not (math.isfinite(recall) and 0.0 < recall <= 1.0):
        raise GalleryError(f"index spec 'faiss:{arg}': recall must be in (0, 1], got {recall}")
    if not 1 <= k <= 1000:
        raise GalleryError(f"index spec 'faiss:{arg}': k must be between 1 and 1000, got {k}")
    if min_ < 1:
        raise GalleryError(f"index spec 'faiss:{arg}': min must be at least 1, got {min_}")
    return ManagedSpec(kind, float(recall), int(k), int(min_), text=arg)


def with_recall(spec: str, recall: float) -> str:
    """``spec`` with its target recall set (the CLI's ``--recall``); refuses exact/raw specs."""
    spec = normalize(spec)
    name, _, arg = spec.partition(":")
    managed = parse(arg) if name == "faiss" else None
    if managed is None:
        raise GalleryError(f"--recall applies to an approximate index ({', '.join(KINDS)}), not {spec!r}")
    kept = [p for p in arg.split(",")[1:] if p.partition("=")[0].strip() != "recall"]
    out = ",".join([managed.kind, *kept, f"recall={recall:g}"])
    parse(out)  # validates the value
    return f"faiss:{out}"


def nlist_for(n: int) -> int:
    """IVF lists for n vectors: a power of two near 2*sqrt(n), at most n/39 (faiss's minimum of
    training points per centroid), at least 1."""
    want = 2 ** round(math.log2(max(2.0 * math.sqrt(max(n, 1)), 1.0)))
    cap = 2 ** int(math.log2(max(n // 39, 1)))
    return int(max(1, min(want, cap)))


def pq_shape(dim: int, n: int) -> tuple[int, int]:
    """(sub-quantisers, bits): 8 dimensions per sub-quantiser where dim allows it; 8-bit codes when
    there are enough vectors to train 256 centroids each, else 4-bit."""
    m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m >= 1 and dim % m == 0)
    return m, (8 if n >= 256 * 39 else 4)


class ManagedIndex:
    """An index backend whose layout the gallery chooses by size (see the module docstring).

    It behaves like :class:`~verikit.index.faiss_backend.FaissIndex` (the gallery's backend
    protocol) plus: :meth:`prepare` (choose the layout for n templates, returns how many training
    vectors it wants), :meth:`action` (what growth to n calls for), :attr:`tuning` (the measured
    recall and search parameter, persisted in ``index.json``) and :attr:`rerank`.
    """

    def __init__(self, dim: int, spec: ManagedSpec) -> None:
        self.dim, self.spec = int(dim), spec
        self.factory = spec.text
        self.inner = FaissIndex(self.dim, "Flat")
        self.layout = "Flat"
        self.tuning: dict[str, Any] | None = None  # None: exact (Flat) or not yet tuned

    # -- the backend protocol ---------------------------------------------------------------------
    @property
    def index(self) -> Any:
        return self.inner.index

    @property
    def ntotal(self) -> int:
        return self.inner.ntotal

    @property
    def needs_training(self) -> bool:
        return self.inner.needs_training

    @property
    def exact(self) -> bool:
        return self.layout == "Flat"

    @property
    def rerank(self) -> int:
        """Shortlist widening for exact re-ranking (0: none)."""
        return int(self.tuning.get("rerank", 0)) if self.tuning and not self.exact else 0

    def train(self, vectors: np.ndarray) -> None:
        self.inner.train(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> bool:
        return self.inner.remove(ids)

    def ids(self) -> np.ndarray:
        return self.inner.ids()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.search(queries, k)

    def save(self, path: Any) -> None:
        self.inner.save(path)

    def load(self, path: Any) -> None:
        self.inner.load(path)
        self.layout = "Flat" if self._is_flat(self.inner.index) else "?"
        self.tuning = None

    # -- layout, training, tuning ------------------------------------------------------------------
    def layout_for(self, n: int) -> str:
        if n < self.spec.min:
            return "Flat"
        family = self.spec.family
        if family == "hnsw":
            return f"HNSW{HNSW_M}"
        nlist = nlist_for(n)
        if family == "ivf-flat":
            return f"IVF{nlist},Flat"
        if family == "ivf-sq8":
            return f"IVF{nlist},SQ8"
        m, bits = pq_shape(self.dim, n)
        return f"IVF{nlist},PQ{m}x{bits}"

    def prepare(self, n: int) -> int:
        """Start an empty index in the layout for n templates; return the training vectors it wants."""
        self.layout = self.layout_for(n)
        self.inner = FaissIndex(self.dim, self.layout)
        self.tuning = None
        if self.layout.startswith("IVF"):
            nlist = int(self.layout[3:].split(",")[0])
            want = TRAIN_PER_LIST * nlist
            if "PQ" in self.layout:
                want = max(want, 256 * 39 if self.layout.endswith("x8") else 16 * 39)
            return min(n, want)
        return 0

    def action(self, n: int) -> str | None:
        """What a gallery of n templates calls for: "rebuild" (change layout, retrain, tune again on
        held-out templates), or None."""
        if self.exact:
            if self.fell_back:  # tuning found exact search better: try again once grown 4x
                return "rebuild" if n >= GROWTH * max(int(self.tuning.get("trained_at", 0)), 1) else None
            return "rebuild" if n >= self.spec.min else None
        if self.tuning is None:
            return "rebuild"  # an approximate layout without a measured recall is not trusted
        if n >= GROWTH * max(int(self.tuning.get("trained_at", 0)), 1):
            return "rebuild"
        return None

    @property
    def fell_back(self) -> bool:
        """Exact search because tuning measured the approximate layout as not worth it (auto)."""
        return self.exact and bool(self.tuning) and self.tuning.get("fallback") == "exact"

    def use_exact(self, chunks: Any, record: dict[str, Any]) -> None:
        """Replace the approximate index by an exact one holding the same templates (``chunks``:
        (ids, vectors) pairs), with ``record`` (saying why) as its tuning."""
        self.inner = FaissIndex(self.dim, "Flat")  # the approximate index is freed first
        self.layout = "Flat"
        for ids, vecs in chunks:
            self.inner.add(ids, vecs)
        self.tuning = dict(record)

    def param_name(self) -> str:
        return "efSearch" if self.layout.startswith("HNSW") else "nprobe"

    def param_values(self) -> list[int]:
        """The search parameter values tuning tries, cheapest first."""
        if self.layout.startswith("HNSW"):
            return [v for v in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096)
                    if v >= self.spec.k + 1]
        nlist = int(self.layout[3:].split(",")[0])
        values, v = [], 1
        while v < nlist:
            values.append(v)
            v = v * 2 if v < 8 else int(v * 1.5)
        return values + [nlist]

    def set_param(self, value: int) -> None:
        import faiss

        if self.layout.startswith("HNSW"):
            inner = self.inner.index
            hnsw = faiss.downcast_index(inner.index if isinstance(inner, faiss.IndexIDMap) else inner)
            hnsw.hnsw.efSearch = int(value)
        else:
            faiss.extract_index_ivf(self.inner.index).nprobe = int(value)

    def restore(self, tuning: Any) -> bool:
        """After :meth:`load`: apply the tuning recorded with the saved file; False when the file and
        the record do not belong together (the caller then rebuilds)."""
        if self.layout == "Flat":
            if tuning is None:
                return True
            if (isinstance(tuning, dict) and tuning.get("fallback") == "exact" and tuning.get("layout") == "Flat"
                    and isinstance(tuning.get("trained_at"), int)):
                self.tuning = dict(tuning)  # exact by measurement: remembered, so not retried at once
                return True
            return False
        if not isinstance(tuning, dict) or not isinstance(tuning.get("layout"), str):
            return False
        try:
            self.layout = tuning["layout"]
            if self._layout_of(self.inner.index) != self.layout.split(",")[0][:3]:
                return False
            self.tuning = dict(tuning)
            self.set_param(int(tuning["value"]))
        except (KeyError, TypeError, ValueError, RuntimeError):
            self.layout, self.tuning = "?", None
            return False
        return True

    @staticmethod
    def _is_flat(index: Any) -> bool:
        import faiss

        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
        return isinstance(inner, faiss.IndexFlat)

    @staticmethod
    def _layout_of(index: Any) -> str:
        import faiss

        if faiss.try_extract_index_ivf(index) is not None:
            return "IVF"
        inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
        return "HNS" if isinstance(inner, faiss.IndexHNSW) else "?"
