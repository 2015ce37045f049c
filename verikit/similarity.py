"""Similarity measures: the one place that turns a recorded measure into public similarity scores.

A model records the measure it was trained with (``config.json`` -> ``similarity``, a spec string
``name[:argument]``); its galleries and calibrations score with the same measure through this
module. Public scores are always similarities, higher = more alike, a match is
``score >= threshold``. Distances are converted by a fixed, documented, invertible monotone map:

==============  =================================  ==========================================
spec            score of vectors a, b              range on unit vectors
==============  =================================  ==========================================
``cosine``      a.b / (|a| |b|)                    [-1, 1]
``dot``         a.b (equals cosine on the unit     [-1, 1]
                vectors verikit embedders emit)
``l2``          1 / (1 + |a - b|)                  [1/3, 1]
``squared_l2``  1 / (1 + |a - b|^2)                [1/5, 1]
``l1``          1 / (1 + |a - b|_1)                (0, 1]
``rbf[:s]``     exp(-|a - b|^2 / s^2), s=1 default  [exp(-4/s^2), 1]
==============  =================================  ==========================================

``1 / (1 + d)`` rather than ``-d``: scores stay in (0, 1] like the similarities users know, and
the distance is recovered exactly as ``1/score - 1`` (:meth:`Measure.distance_of`).

Embeddings are unit vectors (the embedder L2-normalises, and the gallery re-normalises), so
``|a-b|^2 = 2 - 2 cos``: every measure except L1 is a monotone function of the cosine. The gallery
therefore keeps searching its inner-product index and converts the scores
(:meth:`Measure.from_cosine`); L1 is not a function of the cosine, so galleries scoring with L1
search exactly by brute force instead (see :meth:`verikit.index.gallery.Gallery.search`).

Only numpy here (scipy lazily for L1): the gallery imports this module, and ``verikit --help``
must stay light. The training-side twins (pytorch-metric-learning distances) are in
:mod:`verikit.train.distances`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DataError

MEASURES = ("cosine", "dot", "l2", "squared_l2", "l1", "rbf")
DEFAULT_RBF_SIGMA = 1.0
ROW_BLOCK = 1024  # rows per block when scoring matrices: bounds the temporary memory
# How far a threshold may lie outside a measure's score range: scores computed in float32 (and L2's
# square root near cos = 1) overshoot the exact range by up to ~5e-4, and a calibrated threshold is
# one of those scores. A threshold further out accepts everyone (below) or no one (above).
THRESHOLD_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Measure:
    """A parsed measure spec. Build with :func:`parse_measure`."""

    name: str
    sigma: float | None = None  # only for rbf

    @property
    def spec(self) -> str:
        """The canonical spec string that is recorded in model configs and galleries."""
        return f"rbf:{self.sigma:g}" if self.name == "rbf" else self.name

    @property
    def score_range(self) -> tuple[float, float]:
        """The scores this measure gives on unit vectors (the table above), lowest first."""
        if self.name in ("cosine", "dot"):
            return -1.0, 1.0
        if self.name == "l2":
            return 1.0 / 3.0, 1.0
        if self.name == "squared_l2":
            return 0.2, 1.0
        if self.name == "rbf":
            return math.exp(-4.0 / self.sigma ** 2), 1.0
        return 0.0, 1.0  # l1: 1 / (1 + d) with d unbounded above

    def threshold_problem(self, value: object) -> str | None:
        """Why ``value`` cannot be a threshold on this measure's scores, or None when it can.

        Only a finite real number inside :attr:`score_range` (give or take
        ``THRESHOLD_TOLERANCE``) can: NaN compares false with every score, and a value outside
        the range accepts everyone or no one -- never what a calibration or a user meant.
        """
        problem = number_problem(value)
        if problem is not None:
            return problem
        lo, hi = self.score_range
        if not lo - THRESHOLD_TOLERANCE <= float(value) <= hi + THRESHOLD_TOLERANCE:
            return (f"must lie in the score range [{lo:.4g}, {hi:.4g}] of the measure {self.spec!r}, "
                    f"got {float(value):g}")
        return None

    @property
    def is_distance(self) -> bool:
        """True when the underlying quantity is a distance (smaller = more alike) before conversion."""
        return self.name in ("l2", "squared_l2", "l1")

    @property
    def monotone_in_cosine(self) -> bool:
        """Whether, on unit vectors, the score is a monotone function of the cosine (all but L1)."""
        return self.name != "l1"

    # -- raw quantity -> public score ----------------------------------------------------------
    def score_of(self, raw: Any) -> np.ndarray:
        """Public score from the measure's raw quantity (a distance, or the similarity itself)."""
        r = np.asarray(raw, dtype=np.float64)
        if self.name in ("cosine", "dot"):
            return r
        if self.name == "rbf":  # raw is the squared L2 distance
            return np.exp(-r / (self.sigma ** 2))
        return 1.0 / (1.0 + r)

    def distance_of(self, score: Any) -> np.ndarray:
        """Inverse of the conversion for distance measures: the distance behind a score."""
        s = np.asarray(score, dtype=np.float64)
        if self.is_distance:
            return 1.0 / s - 1.0
        if self.name == "rbf":
            return np.sqrt(np.maximum(0.0, -np.log(s)) * self.sigma ** 2)
        raise DataError(f"measure {self.spec!r} is a similarity: it has no distance to recover")

    def from_cosine(self, cos: Any) -> np.ndarray:
        """Scores from cosine similarities of UNIT vectors (what an inner-product index returns).

        Exact up to float rounding; for ``l2`` the square root amplifies rounding near cos = 1
        (about 5e-4 at identical vectors from float32 cosines), far from any useful threshold.
        """
        if not self.monotone_in_cosine:
            raise DataError("L1 distance is not a function of the cosine: score L1 from the vectors")
        c = np.asarray(cos, dtype=np.float64)
        if self.name in ("cosine", "dot"):
            return c
        sq = np.maximum(0.0, 2.0 - 2.0 * c)  # |a-b|^2 on unit vectors
        return self.score_of(np.sqrt(sq) if self.name == "l2" else sq)

    # -- vectors -> public score ----------------------------------------------------------------
    def _raw_matrix(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.name == "dot":
            return a @ b.T
        if self.name == "cosine":
            an = a / np.linalg.norm(a, axis=1, keepdims=True)
            bn = b / np.linalg.norm(b, axis=1, keepdims=True)
            return an @ bn.T
        if self.name == "l1":
            from scipy.spatial.distance import cdist  # no (n, m, dim) temporary, unlike broadcasting
            return cdist(a, b, metric="cityblock")
        # Squared L2 from the expansion |a|^2 + |b|^2 - 2ab (in float64: exact enough, no big temporary).
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        sq = np.maximum(sq, 0.0)
        return np.sqrt(sq) if self.name == "l2" else sq

    def scores(self, a: Any, b: Any) -> np.ndarray:
        """(len(a), len(b)) public scores between the rows of ``a`` and ``b``, from the vectors."""
        a2, b2 = as_rows(a, "a"), as_rows(b, "b")
        if a2.shape[1] != b2.shape[1]:
            raise DataError(f"vectors of size {a2.shape[1]} and {b2.shape[1]} cannot be compared")
        out = np.empty((len(a2), len(b2)), dtype=np.float64)
        for start in range(0, len(a2), ROW_BLOCK):
            out[start:start + ROW_BLOCK] = self.score_of(self._raw_matrix(a2[start:start + ROW_BLOCK], b2))
        return out

    def pair_scores(self, a: Any, b: Any) -> np.ndarray:
        """(n,) public scores of row i of ``a`` with row i of ``b``."""
        a2, b2 = as_rows(a, "a"), as_rows(b, "b")
        if a2.shape != b2.shape:
            raise DataError(f"paired vectors need equal shapes, got {a2.shape} and {b2.shape}")
        if self.name == "dot":
            return (a2 * b2).sum(1)
        if self.name == "cosine":
            return (a2 * b2).sum(1) / (np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1))
        diff = a2 - b2
        if self.name == "l1":
            return self.score_of(np.abs(diff).sum(1))
        sq = (diff * diff).sum(1)
        return self.score_of(np.sqrt(sq) if self.name == "l2" else sq)


def number_problem(value: object) -> str | None:
    """Why ``value`` is not a finite real number (a threshold in units without a fixed range), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        return f"must be a number, got {value!r}"
    if not math.isfinite(float(value)):
        return f"must be a finite number, got {float(value)}"
    return None


def as_rows(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{name} must be a vector or a 2-D array of vectors, got shape {a.shape}")
    return a


def parse_measure(spec: str | Measure | None) -> Measure:
    """``"rbf:0.5"`` -> Measure("rbf", 0.5); unknown names raise a one-line DataError."""
    if isinstance(spec, Measure):
        return spec
    if spec is None or spec == "":
        return Measure("cosine")
    if not isinstance(spec, str):
        raise DataError(f"a similarity measure is a string like 'cosine' or 'rbf:0.5', got {spec!r}")
    name, sep, arg = spec.strip().lower().partition(":")
    name = name.replace("-", "_")
    if name not in MEASURES:
        raise DataError(f"unknown similarity/distance {spec!r}; choose one of {', '.join(MEASURES)} "
                        "(rbf takes a width: rbf:SIGMA)")
    if name != "rbf":
        if sep:
            raise DataError(f"measure {name!r} takes no argument, got {spec!r}")
        return Measure(name)
    sigma = DEFAULT_RBF_SIGMA
    if sep:
        try:
            sigma = float(arg)
        except ValueError:
            raise DataError(f"rbf width must be a number, e.g. rbf:0.5, got {spec!r}") from None
    if not math.isfinite(sigma) or sigma <= 0:
        raise DataError(f"rbf width sigma must be a positive number, got {spec!r}")
    return Measure("rbf", sigma)
