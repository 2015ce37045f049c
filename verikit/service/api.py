"""The Python API's operations on a model and an open gallery: ``verikit.enroll``,
``verikit.verify`` and ``verikit.search``.

They are :mod:`verikit.pipeline.operations` with the application layer's checks in front, the same
checks the CLI and the server get through :class:`verikit.service.Service`: the gallery and the
calibration must have been made by this model (else :class:`verikit.FingerprintMismatchError`),
an explicit threshold must be a finite number, and a threshold calibrated through another
detector/segmenter pipeline than the gallery's, or a search with no threshold at all, issues a
:class:`verikit.VerikitWarning`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..pipeline import operations
from ..pipeline.settings import bind_to_gallery
from .checks import (NO_THRESHOLD_WARNING, calibrated_pipeline_warning, check_calibration, check_model_for_gallery,
                     check_threshold, warn)


def enroll(model: Any, gallery: Any, images: Mapping[str, Sequence[str | Path]], *, batch_size: int = 64,
           num_workers: int | None = None, progress: Callable[[int], None] | None = None,
           pipeline: Any = None, faces: Any = None) -> operations.EnrollReport:
    """Embed every identity's images and enroll them all in a single gallery transaction.

    ``pipeline`` defaults to the settings the gallery was created with; different ones are refused,
    and so is a gallery enrolled with another model.
    """
    check_model_for_gallery(model, gallery)
    return operations.enroll(model, gallery, images, batch_size=batch_size, num_workers=num_workers,
                             progress=progress, pipeline=pipeline, faces=faces)


def _checked(model: Any, gallery: Any, threshold: Any, calibration: Any, pipeline: Any) -> tuple[float | None, Any]:
    check_model_for_gallery(model, gallery)
    check_calibration(calibration, model)
    threshold = check_threshold(threshold)
    settings = bind_to_gallery(gallery, pipeline)
    if threshold is None:
        message = calibrated_pipeline_warning(calibration, settings)
        if message:
            warn(message, stacklevel=4)
    return threshold, settings


def verify(model: Any, gallery: Any, image: Any, claim: str, *, threshold: float | None = None,
           calibration: Any = None, pipeline: Any = None, faces: Any = None,
           scorer: Callable[[np.ndarray, np.ndarray], float] | None = None) -> Any:
    """1:1: is ``image`` the identity ``claim``? A :class:`verikit.Decision` (score, threshold, match).

    The threshold is ``threshold`` when given, else ``calibration``'s; neither is an error. A
    ``scorer(probe, templates)`` (e.g. a pair head's ``best_score``) replaces the gallery's
    similarity; its threshold must then be in its own units.
    """
    threshold, settings = _checked(model, gallery, threshold, calibration, pipeline)
    return operations.verify(model, gallery, image, claim, threshold=threshold, calibration=calibration,
                             pipeline=settings, faces=faces, scorer=scorer)


def search(model: Any, gallery: Any, images: Sequence[Any], *, top_k: int = 5, threshold: float | None = None,
           calibration: Any = None, batch_size: int = 64, pipeline: Any = None,
           faces: Any = None) -> tuple[list[Any], list[tuple[Path, str]]]:
    """1:N for each probe, open-set when a threshold is known: ``(results, failures)``."""
    threshold, settings = _checked(model, gallery, threshold, calibration, pipeline)
    if threshold is None and calibration is None:
        warn(NO_THRESHOLD_WARNING, stacklevel=3)
    return operations.search(model, gallery, images, top_k=top_k, threshold=threshold, calibration=calibration,
                             batch_size=batch_size, pipeline=settings, faces=faces)
