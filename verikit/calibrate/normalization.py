"""Score normalisation against a cohort: Z-norm, T-norm, S-norm and adaptive S-norm.

This module owns turning raw cosine scores into normalised ones. A comparison is between a
reference ``a`` (the enrolled side) and a probe ``b``; each side is scored against a **cohort**
of embeddings of other identities (never the subjects under test), and its cohort scores give a
mean and standard deviation:

* ``z``  (Z-norm): ``(s - mu_a) / sd_a`` -- the reference's cohort statistics;
* ``t``  (T-norm): ``(s - mu_b) / sd_b`` -- the probe's;
* ``s``  (symmetric S-norm): ``(z + t) / 2``;
* ``as`` (adaptive S-norm): S-norm where each side's statistics use only its ``top_k``
  highest cohort scores (the cohort members most similar to it).

Normalised scores are still similarities (higher = more alike) but no longer in [-1, 1], so a
threshold calibrated on raw scores does not apply to them: calibrate on normalised scores.
Cohort statistics are population (``ddof=0``) statistics in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from verikit.errors import DataError

__all__ = ["METHODS", "CohortStats", "cohort_stats", "normalize", "normalize_pairs"]

METHODS = ("z", "t", "s", "as")


@dataclass(frozen=True, eq=False)
class CohortStats:
    """Per-embedding mean and standard deviation of its scores against a cohort."""

    mean: np.ndarray
    std: np.ndarray
    top_k: int | None


def _unit_rows(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{name} must be a non-empty 2-D (n, dim) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def cohort_stats(embeddings: Any, cohort: Any, *, top_k: int | None = None, block: int = 4096) -> CohortStats:
    """Mean and std of each embedding's cosine scores against ``cohort`` (all, or the top ``top_k``).

    >>> e = np.array([[1.0, 0.0]])
    >>> c = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> st = cohort_stats(e, c)                  # scores 1.0, 0.0, 0.6
    >>> round(float(st.mean[0]), 4), round(float(st.std[0]), 4)
    (0.5333, 0.411)
    >>> st = cohort_stats(e, c, top_k=2)         # top two: 1.0, 0.6
    >>> round(float(st.mean[0]), 4), round(float(st.std[0]), 4)
    (0.8, 0.2)
    """
    emb, coh = _unit_rows(embeddings, "embeddings"), _unit_rows(cohort, "cohort")
    if emb.shape[1] != coh.shape[1]:
        raise DataError(f"embeddings have dimension {emb.shape[1]} but the cohort has {coh.shape[1]}")
    if top_k is not None and not 1 <= top_k <= coh.shape[0]:
        raise DataError(f"top_k must be in [1, {coh.shape[0]}] (the cohort size), got {top_k}")
    if coh.shape[0] < 2:
        raise DataError("the cohort needs at least two embeddings")
    mean = np.empty(emb.shape[0])
    std = np.empty(emb.shape[0])
    for s in range(0, emb.shape[0], block):
        sc = (emb[s:s + block] @ coh.T).astype(np.float64)
        if top_k is not None and top_k < coh.shape[0]:
            sc = np.partition(sc, coh.shape[0] - top_k, axis=1)[:, coh.shape[0] - top_k:]
        mean[s:s + block] = sc.mean(axis=1)
        std[s:s + block] = sc.std(axis=1)
    return CohortStats(mean, std, top_k)


def normalize(scores: Any, mean_a: Any, std_a: Any, mean_b: Any, std_b: Any, method: str) -> np.ndarray:
    """Normalise raw ``scores`` given each side's cohort statistics (aligned per score).

    ``method`` is ``"z"``, ``"t"``, ``"s"`` or ``"as"`` (``"as"`` is ``"s"`` on top-k statistics,
    which the caller computed with :func:`cohort_stats`).

    >>> args = [0.75], [0.25], [0.25], [0.5], [0.0625]   # scores, mean_a, std_a, mean_b, std_b
    >>> [normalize(*args, m).tolist() for m in ("z", "t", "s")]
    [[2.0], [4.0], [3.0]]
    """
    if method not in METHODS:
        raise DataError(f"unknown normalisation '{method}'; choose one of {', '.join(METHODS)}")
    s = np.asarray(scores, np.float64)
    sides = []
    for mean, std in ((mean_a, std_a), (mean_b, std_b)):
        sd = np.asarray(std, np.float64)
        if (sd <= 0).any():
            raise DataError("a cohort score distribution has zero spread; use a larger or more varied cohort")
        sides.append((s - np.asarray(mean, np.float64)) / sd)
    if method == "z":
        return sides[0]
    if method == "t":
        return sides[1]
    return (sides[0] + sides[1]) / 2


def normalize_pairs(scores: Any, embeddings: Any, a: Any, b: Any, cohort: Any, method: str,
                    top_k: int | None = None) -> np.ndarray:
    """Normalise pair scores ``scores[k] = cos(embeddings[a[k]], embeddings[b[k]])``.

    Cohort statistics are computed once per embedding, then gathered per pair. ``top_k`` is
    required for ``"as"`` and ignored otherwise.

    >>> e = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> c = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> # side a: cohort scores 1, 0, .6 (mean .5333, sd .4110); side b: 0, 1, .8 (mean .6, sd .4320)
    >>> normalize_pairs([0.0], e, [0], [1], c, "s").round(4).tolist()
    [-1.3433]
    """
    if method == "as" and top_k is None:
        raise DataError("adaptive S-norm ('as') needs top_k (the cohort size to keep per side)")
    stats = cohort_stats(embeddings, cohort, top_k=top_k if method == "as" else None)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    return normalize(scores, stats.mean[a], stats.std[a], stats.mean[b], stats.std[b], method)
