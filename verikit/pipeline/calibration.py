"""Calibrating a model from embeddings of a labelled validation set."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..calibrate.threshold import Calibration, calibrate
from ..errors import DataError
from ..models.embedder import Embedder
from ..similarity import all_pairs


def calibrate_embeddings(model: Embedder, embeddings: np.ndarray, labels: Sequence[str], target_fmr: float,
                         data: dict[str, Any] | None = None) -> Calibration:
    """All-pairs genuine/impostor scores of the set (the model's measure), then the threshold at ``target_fmr``."""
    # In the model's own measure: the threshold must be in the units the gallery scores in.
    genuine, impostor = all_pairs(embeddings, list(labels), model.config.similarity)
    if len(genuine) == 0 or len(impostor) == 0:
        raise DataError("calibration needs at least two identities and one identity with two images")
    return calibrate(genuine, impostor, target_fmr, model.fingerprint, data)
