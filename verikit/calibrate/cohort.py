"""A saved score-normalisation cohort: the embeddings of other identities, bound to one model.

Calibrating with ``--norm`` stores the cohort's embeddings next to the model
(``cohort.npz``, plain arrays, loaded with ``allow_pickle=False``) and names it in
``calibration.json``; ``verify`` and ``search`` then normalise their scores against the same
cohort, so the calibrated threshold applies to them. The formulas live in
:mod:`verikit.calibrate.normalization`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CalibrationError, FingerprintMismatchError
from ..schemas import read_npz, validate
from .normalization import METHODS, cohort_stats, normalize
from .schema import CohortFile

COHORT_FILE = "cohort.npz"


@dataclass(frozen=True, eq=False)
class Cohort:
    """Cohort embeddings plus the normalisation to apply with them."""

    embeddings: np.ndarray
    method: str
    top_k: int | None
    model_fingerprint: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(f"unknown normalisation {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "as" and not self.top_k:
            raise CalibrationError("adaptive S-norm ('as') needs --top-k")
        if len(self.embeddings) < 2:  # one member has no spread to normalise by
            raise CalibrationError(f"a normalisation cohort needs at least two embeddings, got {len(self.embeddings)}")

    def _stats(self, embeddings: np.ndarray):
        return cohort_stats(embeddings, self.embeddings, top_k=self.top_k if self.method == "as" else None)

    def normalize(self, raw: np.ndarray, references: np.ndarray, probe: np.ndarray) -> np.ndarray:
        """Normalise ``raw[i] = cos(references[i], probe)`` for one probe."""
        ref = self._stats(np.atleast_2d(references))
        pr = self._stats(np.atleast_2d(probe))
        n = len(ref.mean)
        return normalize(raw, ref.mean, ref.std, np.repeat(pr.mean, n), np.repeat(pr.std, n), self.method)

    def best_score(self, probe: np.ndarray, templates: np.ndarray) -> float:
        """1:1 score of a probe against an identity: its best normalised template score.

        Cohort members that are the identity's own templates are left out of both sides'
        statistics: with the gallery itself as the cohort, the claimed identity must not
        normalise its own comparison.
        """
        templates = np.atleast_2d(np.asarray(templates, np.float32))
        raw = (templates @ np.asarray(probe, np.float32)).astype(np.float64)
        return float(self.without(templates).normalize(raw, templates, probe).max())

    def without(self, templates: np.ndarray) -> "Cohort":
        """This cohort less any member equal (cosine > 1 - 1e-6) to one of ``templates``."""
        same = (self.embeddings @ np.atleast_2d(templates).T).max(axis=1) > 1 - 1e-6
        if not same.any():
            return self
        return Cohort(self.embeddings[~same], self.method,
                      min(self.top_k, int((~same).sum())) if self.top_k else None, self.model_fingerprint)

    def normalize_pairs(self, raw: np.ndarray, embeddings: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Normalise ``raw[k] = cos(embeddings[a[k]], embeddings[b[k]])`` (statistics computed once per row)."""
        st = self._stats(embeddings)
        return normalize(raw, st.mean[a], st.std[a], st.mean[b], st.std[b], self.method)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / COHORT_FILE
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, embeddings=self.embeddings.astype(np.float32), method=np.array(self.method),
                 top_k=np.array(self.top_k or 0), model_fingerprint=np.array(self.model_fingerprint))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, model_dir: str | Path, fingerprint: str | None = None) -> "Cohort":
        path = Path(model_dir) / COHORT_FILE
        what = "normalisation cohort"
        doc = validate(CohortFile, read_npz(path, error=CalibrationError, what=what), str(path),
                       error=CalibrationError, what=what)
        cohort = cls(doc.embeddings, doc.method, doc.top_k or None, doc.model_fingerprint)
        if fingerprint is not None and cohort.model_fingerprint != fingerprint:
            raise FingerprintMismatchError(f"cohort '{path}' was embedded by model {cohort.model_fingerprint[:12]}, "
                                           f"not this model ({fingerprint[:12]}); re-run `verikit calibrate --norm`")
        return cohort
