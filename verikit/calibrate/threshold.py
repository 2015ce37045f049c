"""Calibration files: the threshold at a target false-match rate, bound to one model.

``calibration.json`` lives in the model directory. It records the threshold, the rates measured
there, the counts behind them, the data they came from, and the model's fingerprint; loading it
for a different model is refused. It also keeps the upper tail of the impostor scores, so that
``verify`` can report the estimated false-match rate at a probe's own score.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_atomic
from ..errors import CalibrationError, FingerprintMismatchError
from ..evaluate.metrics import fmr_fnmr_at, threshold_at_fmr, wilson_interval
from ..schemas import read_json
from .schema import CALIBRATION_VERSION, CalibrationFile, calibration_fields

CALIBRATION_FILE = "calibration.json"
_TAIL = 2000  # impostor scores kept for FMR estimates: enough to resolve 1/n_impostor near the threshold


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_fmr: float
    measured_fmr: float
    measured_fnmr: float
    fmr_interval: tuple[float, float]
    fnmr_interval: tuple[float, float]
    n_genuine: int
    n_impostor: int
    model_fingerprint: str
    data: dict[str, Any] = field(default_factory=dict)
    impostor_tail: tuple[float, ...] = ()   # largest impostor scores, descending
    created_at: str = ""
    version: int = CALIBRATION_VERSION
    # {"method", "top_k", "cohort_size"} when scores were normalised against a cohort (cohort.npz).
    normalization: dict[str, Any] | None = None
    similarity: str | None = None   # the measure the scores were in (None in files older than this field)
    cohort: Any = field(default=None, compare=False, repr=False)  # the loaded Cohort, never serialised

    def estimated_fmr(self, score: float) -> float:
        """Fraction of calibration impostors scoring >= ``score`` (a lower bound below the kept tail)."""
        tail = np.asarray(self.impostor_tail)
        return float((tail >= score).sum()) / self.n_impostor

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cohort"}
        if d["similarity"] is None:
            del d["similarity"]
        d["fmr_interval"], d["fnmr_interval"] = list(self.fmr_interval), list(self.fnmr_interval)
        d["impostor_tail"] = [round(float(s), 7) for s in self.impostor_tail]
        return d

    def save(self, model_dir: str | Path) -> Path:
        """Write calibration.json (and the cohort next to it when scores are normalised)."""
        if self.cohort is not None:
            self.cohort.save(model_dir)
        return write_atomic(Path(model_dir) / CALIBRATION_FILE, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None,
             measure: str | None = None) -> "Calibration":
        """Read and validate ``calibration.json`` (a file, or the model directory holding it).

        ``fingerprint`` refuses a calibration made for another model; ``measure`` (the model's
        similarity spec) refuses a threshold outside that measure's score range. Every problem
        is one :class:`CalibrationError` line naming the file and the field.
        """
        path = Path(path)
        if path.is_dir():
            path = path / CALIBRATION_FILE
        if not path.is_file():
            raise CalibrationError(f"no calibration at '{path}' (run `verikit calibrate`, or pass --threshold)")
        doc = read_json(CalibrationFile, path, error=CalibrationError, what="calibration",
                        context={"measure": measure})
        cal = cls(**calibration_fields(doc))
        if fingerprint is not None and cal.model_fingerprint != fingerprint:
            raise FingerprintMismatchError(
                f"calibration '{path}' was made for model {cal.model_fingerprint[:12]}, not this model "
                f"({fingerprint[:12]}); re-run `verikit calibrate` for this model")
        if cal.normalization:
            from .cohort import Cohort
            cal = replace(cal, cohort=Cohort.load(path.parent, fingerprint=cal.model_fingerprint))
        return cal


def calibrate(genuine: np.ndarray, impostor: np.ndarray, target_fmr: float, fingerprint: str,
              data: dict[str, Any] | None = None, cohort: Any = None, similarity: str | None = None) -> Calibration:
    """The lowest threshold whose false-match rate on ``impostor`` is at most ``target_fmr``.

    ``similarity`` is the measure the scores are in (recorded, so the file says what range its
    threshold must lie in). Scores must be finite: a NaN would make no threshold meaningful.
    """
    # Keep the scores' own dtype: the threshold is then exact in the precision scores are compared in.
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    if not (np.isfinite(genuine).all() and np.isfinite(impostor).all()):
        raise CalibrationError("calibration scores hold NaN or infinity (a broken model or corrupt embeddings)")
    if not 0.0 < target_fmr <= 1.0 or not math.isfinite(target_fmr):
        raise CalibrationError(f"target FMR must be in (0, 1], got {target_fmr}")
    t = threshold_at_fmr(impostor, target_fmr)
    fmr, fnmr = fmr_fnmr_at(genuine, impostor, t)
    n_g, n_i = len(genuine), len(impostor)
    tail = np.sort(impostor)[::-1][:_TAIL] if n_i <= 10 * _TAIL else -np.sort(-np.partition(impostor, n_i - _TAIL)[-_TAIL:])
    return Calibration(
        threshold=float(t), target_fmr=float(target_fmr), measured_fmr=float(fmr), measured_fnmr=float(fnmr),
        fmr_interval=wilson_interval(round(fmr * n_i), n_i), fnmr_interval=wilson_interval(round(fnmr * n_g), n_g),
        n_genuine=n_g, n_impostor=n_i, model_fingerprint=fingerprint, data=dict(data or {}),
        impostor_tail=tuple(float(s) for s in tail), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        normalization=None if cohort is None else {"method": cohort.method, "top_k": cohort.top_k,
                                                   "cohort_size": int(len(cohort.embeddings))},
        similarity=similarity, cohort=cohort)
