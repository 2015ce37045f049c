"""The checks that keep a model, a calibration, a gallery and a pipeline together.

Each check is one function the service, the Python API (:mod:`verikit.service.api`) and so the
CLI and the HTTP server all call, so that no entry point forgets one:

* a gallery or calibration made by another model is refused (:class:`FingerprintMismatchError`);
* a threshold that is not a finite number is refused (a NaN threshold must never mean "accept");
* a threshold calibrated through another detector/segmenter pipeline than the gallery's probes
  go through is allowed but warned about (:class:`verikit.errors.VerikitWarning`).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

from ..errors import CalibrationError, DataError, FingerprintMismatchError, VerikitError, VerikitWarning
from ..similarity import number_problem


def warn(message: str, stacklevel: int = 3) -> None:
    """Issue ``message`` as a :class:`VerikitWarning` (the CLI prints it; Python users can filter it)."""
    warnings.warn(message, VerikitWarning, stacklevel=stacklevel)


def check_model_for_gallery(model: Any, gallery: Any) -> None:
    """Refuse to use ``gallery`` with a model other than the one it was enrolled with."""
    if gallery.fingerprint != model.fingerprint:
        raise FingerprintMismatchError(
            f"gallery '{gallery.path}' was enrolled with model {gallery.fingerprint[:12]}, not this model "
            f"({model.fingerprint[:12]}); use the model it was built with, or enroll into a new gallery with this one")


def check_calibration(calibration: Any, model: Any) -> None:
    """Refuse a calibration made for another model: its threshold is in another model's score units."""
    if calibration is not None and calibration.model_fingerprint != model.fingerprint:
        raise FingerprintMismatchError(
            f"the calibration was made for model {calibration.model_fingerprint[:12]}, not this model "
            f"({model.fingerprint[:12]}); re-run `verikit calibrate` for this model")


def check_threshold(threshold: Any, what: str = "threshold") -> float | None:
    """``threshold`` as a float, or None; anything that is not a finite real number is refused.

    The score-range check needs the gallery's measure, so it happens where the threshold is used
    (:func:`verikit.pipeline.operations.resolve_threshold`); this one fails before anything loads."""
    if threshold is None:
        return None
    problem = number_problem(threshold)
    if problem is not None:
        raise DataError(f"{what} {problem} (a match is score >= threshold)")
    return float(threshold)


def calibrated_pipeline_warning(calibration: Any, pipeline: Any) -> str | None:
    """The warning when ``calibration`` was measured on images prepared otherwise than ``pipeline``'s."""
    if calibration is None:
        return None
    from ..pipeline.settings import PipelineSettings

    raw = calibration.data.get("pipeline")
    # A record naming neither a detector nor a segmenter describes whole images, as None does.
    prepared = isinstance(raw, dict) and (raw.get("detector") or raw.get("segmenter"))
    try:
        calibrated = PipelineSettings.from_meta(json.dumps(raw)) if prepared else None
    except VerikitError as exc:
        raise CalibrationError(f"the calibration's recorded pipeline is malformed ({exc}): re-run "
                               "`verikit calibrate`") from None
    if calibrated == pipeline:
        return None

    def said(p: Any) -> str:
        return "whole images" if p is None else p.describe()
    return (f"the threshold was calibrated on {said(calibrated)}, but this gallery's probes go through "
            f"{said(pipeline)}: rerun `verikit calibrate` with the same detector/segmenter options")


NO_THRESHOLD_WARNING = "no threshold (no calibration.json and no --threshold): ranking only, no unknown decision"
