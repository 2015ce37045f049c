"""Loading what an operation needs, once: the model (given, or the one the gallery records), its
calibration (bound to its fingerprint), and the scorer verify uses (the model's similarity, or the
learned pair head saved next to the model, with its own threshold)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CalibrationError, DataError, ModelError

SCORERS = ("similarity", "pair-head")


def recorded_model_dir(gallery_dir: str | Path) -> Path | None:
    """The model directory an existing gallery recorded at creation (None: none recorded)."""
    from ..index.gallery import Gallery

    with Gallery.open(gallery_dir) as g:
        recorded = g.model_path
    return Path(recorded) if recorded else None


def load_model(model_dir: str | Path | None, device: str = "auto", gallery_dir: str | Path | None = None):
    """``(Embedder, model_dir)``: the model given, or else the one recorded in the gallery."""
    from ..models.embedder import Embedder

    if model_dir is None and gallery_dir is not None:
        model_dir = recorded_model_dir(gallery_dir)
    if model_dir is None:
        raise ModelError("no model given: pass --model DIR (or set VERIKIT_MODEL)")
    return Embedder.load(model_dir, device=device), Path(model_dir)


def load_calibration(model_dir: str | Path | None, model: Any):
    """The model's calibration.json when present (refused when made for another model), else None."""
    from ..calibrate.threshold import CALIBRATION_FILE, Calibration

    if model_dir is None:
        return None
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    # The model's measure: a threshold outside its score range is refused on load.
    return Calibration.load(path, fingerprint=model.fingerprint, measure=model.config.similarity)


@dataclass(frozen=True)
class VerifyScorer:
    """How verify scores: ``score(probe, templates)`` (None: the gallery's similarity, normalised when
    the calibration says so) and the threshold that belongs to those units (None: the calibration's)."""

    name: str
    score: Callable[[np.ndarray, np.ndarray], float] | None
    threshold: float | None
    uses_calibration: bool


def verify_scorer(name: str, model_dir: str | Path | None, model: Any, threshold: float | None) -> VerifyScorer:
    """The scorer called ``name`` with its threshold: ``threshold`` when given, else its own default."""
    if name == "similarity":
        return VerifyScorer(name, None, threshold, True)
    if name != "pair-head":
        raise DataError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    if model_dir is None:
        raise ModelError("the pair-head scorer needs the model directory it was trained next to")
    from ..models.pair_head import SavedPairHead

    head = SavedPairHead.load(model_dir, fingerprint=model.fingerprint)
    # The similarity calibration is in other units: the head's own threshold, or the one given.
    t = head.threshold if threshold is None else threshold
    if t is None:
        raise CalibrationError("the pair head has no calibrated threshold (trained with --val-fraction 0): "
                               "pass --threshold")
    return VerifyScorer(name, head.head.best_score, float(t), False)
