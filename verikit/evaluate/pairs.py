"""All-pairs score sets from embeddings: genuine and impostor cosine similarities.

Embeddings are expected L2-normalised (rows of unit norm, checked to 1e-3), so a dot product is
a cosine similarity. Work is done in ``float32`` row blocks, so e.g. ``n = 20_000`` embeddings
never need an ``n x n`` matrix: peak extra memory is about ``block_rows * n * 6`` bytes plus
the two returned ``float32`` arrays (``n * (n - 1) / 2`` scores in all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set, Sized
from typing import Any

import numpy as np

from verikit.errors import DataError
from verikit.similarity import ROW_BLOCK, Measure, as_rows, parse_measure

__all__ = ["all_pairs", "all_pairs_scores", "cross_scores"]

_NORM_TOL = 1e-3


def _embeddings(x: Any, name: str, min_rows: int) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as exc:
        raise DataError(f"{name} must be a 2-D array of floats ({type(exc).__name__})") from None
    if a.dtype.kind not in "iuf":
        raise DataError(f"{name} must contain real numbers, got dtype {a.dtype}")
    if a.ndim != 2:
        raise DataError(f"{name} must be a 2-D (n, dim) array, got shape {a.shape}")
    if a.shape[0] < min_rows or a.shape[1] == 0:
        raise DataError(f"{name} must have at least {min_rows} row(s) and 1 column, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))
    bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOL)
    if bad.size:
        raise DataError(f"{name} rows must be L2-normalised; row {int(bad[0])} has norm {norms[bad[0]]:.6g}")
    return a


def _codes(labels: Any, name: str, n: int, index: dict) -> np.ndarray:
    """Integer codes for hashable labels, shared across calls through ``index``."""
    ordered = isinstance(labels, Sized) and isinstance(labels, Iterable)
    if not ordered or isinstance(labels, (str, bytes, Mapping, Set)):
        raise DataError(f"{name} must be a sequence of labels, got {type(labels).__name__}")
    if isinstance(labels, np.ndarray) and labels.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {labels.shape}")
    if len(labels) != n:
        raise DataError(f"{name} has {len(labels)} labels but there are {n} embeddings")
    try:
        return np.fromiter((index.setdefault(lab, len(index)) for lab in labels), dtype=np.int64, count=n)
    except TypeError:
        raise DataError(f"{name} contains an unhashable label") from None


def _block_rows(block_rows: Any) -> int:
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
        raise DataError(f"block_rows must be a positive integer, got {block_rows!r}")
    return int(block_rows)


def all_pairs_scores(embeddings: Any, labels: Sequence, *, block_rows: int = 512
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` similarities of every unordered pair ``i < j``.

    A pair is genuine when ``labels[i] == labels[j]``. Both results are ``float32`` and in
    row-major pair order (``i`` ascending, then ``j`` ascending, i.e. the order of
    ``np.triu_indices(n, 1)``), independent of ``block_rows``. Rows are processed
    ``block_rows`` at a time against the rows after them, in ``float32``.

    >>> e = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    >>> g, i = all_pairs_scores(e, ["a", "a", "b"])
    >>> g.astype(float).round(3).tolist(), i.astype(float).round(3).tolist()
    ([0.6], [0.0, 0.8])
    """
    emb = _embeddings(embeddings, "embeddings", 2)
    n = emb.shape[0]
    codes = _codes(labels, "labels", n, {})
    step = _block_rows(block_rows)
    counts = np.bincount(codes)
    n_gen = int((counts * (counts - 1) // 2).sum())
    n_imp = n * (n - 1) // 2 - n_gen
    genuine = np.empty(n_gen, dtype=np.float32)
    impostor = np.empty(n_imp, dtype=np.float32)
    pos_g = pos_i = 0
    for a in range(0, n - 1, step):
        b = min(a + step, n - 1)  # rows a..b-1; row n-1 has no partner after it
        block = emb[a:b] @ emb[a + 1:].T  # (b-a, n-a-1): column c is row a+1+c
        # keep j > i: row r (i = a + r) keeps columns c >= r
        upper = np.arange(n - a - 1)[None, :] >= np.arange(b - a)[:, None]
        same = codes[a:b, None] == codes[None, a + 1:]
        gb = block[upper & same]
        ib = block[upper & ~same]
        genuine[pos_g:pos_g + gb.size] = gb
        impostor[pos_i:pos_i + ib.size] = ib
        pos_g += gb.size
        pos_i += ib.size
    return genuine, impostor


def cross_scores(probe_emb: Any, probe_labels: Sequence, gallery_emb: Any, gallery_labels: Sequence,
                 *, block_rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` similarities of every probe x gallery-template pair.

    A pair is genuine when the probe and gallery labels are equal. Both results are ``float32``
    in row-major order (probe ascending, then gallery template ascending).

    >>> p = np.array([[1, 0], [0, 1]], dtype=np.float32)
    >>> q = np.array([[0.6, 0.8], [1, 0]], dtype=np.float32)
    >>> g, i = cross_scores(p, [1, 2], q, [1, 3])
    >>> g.astype(float).round(3).tolist(), i.astype(float).round(3).tolist()
    ([0.6], [1.0, 0.8, 0.0])
    """
    probes = _embeddings(probe_emb, "probe_emb", 1)
    gallery = _embeddings(gallery_emb, "gallery_emb", 1)
    if probes.shape[1] != gallery.shape[1]:
        raise DataError(f"probe_emb has dimension {probes.shape[1]} but gallery_emb has {gallery.shape[1]}")
    index: dict = {}
    p_codes = _codes(probe_labels, "probe_labels", probes.shape[0], index)
    g_codes = _codes(gallery_labels, "gallery_labels", gallery.shape[0], index)
    step = _block_rows(block_rows)
    n_ids = len(index)
    n_gen = int((np.bincount(p_codes, minlength=n_ids) * np.bincount(g_codes, minlength=n_ids)).sum())
    n_imp = probes.shape[0] * gallery.shape[0] - n_gen
    genuine = np.empty(n_gen, dtype=np.float32)
    impostor = np.empty(n_imp, dtype=np.float32)
    pos_g = pos_i = 0
    for a in range(0, probes.shape[0], step):
        b = min(a + step, probes.shape[0])
        block = probes[a:b] @ gallery.T
        same = p_codes[a:b, None] == g_codes[None, :]
        gb = block[same]
        ib = block[~same]
        genuine[pos_g:pos_g + gb.size] = gb
        impostor[pos_i:pos_i + ib.size] = ib
        pos_g += gb.size
        pos_i += ib.size
    return genuine, impostor


def all_pairs(embeddings: Any, labels: Any, measure: str | Measure) -> tuple[np.ndarray, np.ndarray]:
    """``(genuine, impostor)`` scores of every pair i < j under ``measure``.

    Same pair order as :func:`all_pairs_scores` (which it uses for the cosine, then converts);
    L1 is computed from the vectors.

    >>> import numpy as np
    >>> e = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    >>> g, i = all_pairs(e, ["a", "a", "b"], "cosine")
    >>> [round(float(s), 2) for s in g], [round(float(s), 2) for s in i]
    ([0.6], [0.0, 0.8])
    """
    m = parse_measure(measure)
    if m.monotone_in_cosine:
        genuine, impostor = all_pairs_scores(embeddings, labels)
        return m.from_cosine(genuine).astype(np.float32), m.from_cosine(impostor).astype(np.float32)
    emb = as_rows(embeddings, "embeddings")
    lab = np.asarray(list(labels))
    if len(lab) != len(emb):
        raise DataError(f"{len(lab)} labels but {len(emb)} embeddings")
    genuine, impostor = [], []
    for a in range(0, len(emb) - 1, ROW_BLOCK):  # row blocks against the rows after them: no n x n matrix
        b = min(a + ROW_BLOCK, len(emb) - 1)
        block = m.scores(emb[a:b], emb[a + 1:]).astype(np.float32)
        upper = np.arange(len(emb) - a - 1)[None, :] >= np.arange(b - a)[:, None]
        same = lab[a:b, None] == lab[None, a + 1:]
        genuine.append(block[upper & same])
        impostor.append(block[upper & ~same])
    empty = np.zeros(0, np.float32)
    return np.concatenate(genuine or [empty]), np.concatenate(impostor or [empty])
