"""Calibrating a model from embeddings of a labelled validation set."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..calibrate.pairs import all_pairs_scores
from ..calibrate.threshold import Calibration, calibrate
from ..errors import DataError
from ..models.embedder import Embedder


def calibrate_embeddings(model: Embedder, embeddings: np.ndarray, labels: Sequence[str], target_fmr: float,
                         data: dict[str, Any] | None = None) -> Calibration:
    """All-pairs genuine/impostor scores of the set, then the threshold at ``target_fmr``."""
    genuine, impostor = all_pairs_scores(embeddings, list(labels))
    if len(genuine) == 0 or len(impostor) == 0:
        raise DataError("calibration needs at least two identities and one identity with two images")
    return calibrate(genuine, impostor, target_fmr, model.fingerprint, data)
