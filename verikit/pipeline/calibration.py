"""Calibrating a model from embeddings of a labelled validation set."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..calibrate.cohort import Cohort
from ..calibrate.threshold import Calibration, calibrate
from ..errors import DataError
from ..models.embedder import Embedder
from ..similarity import parse_measure
from ..evaluate.pairs import all_pairs


def calibrate_embeddings(model: Embedder, embeddings: np.ndarray, labels: Sequence[str], target_fmr: float,
                         data: dict[str, Any] | None = None, cohort: Cohort | None = None) -> Calibration:
    """All-pairs genuine/impostor scores of the set (the model's measure), then the threshold at ``target_fmr``.

    With a ``cohort`` the scores are normalised first (Z/T/S/adaptive S-norm), and the cohort is
    saved with the calibration so that verify and search normalise the same way.
    """
    if cohort is not None:
        genuine, impostor = _normalised_pairs(model, embeddings, list(labels), cohort)
    else:
        # In the model's own measure: the threshold must be in the units the gallery scores in.
        genuine, impostor = all_pairs(embeddings, list(labels), model.config.similarity)
    if len(genuine) == 0 or len(impostor) == 0:
        where = f" '{data['path']}'" if data and data.get("path") else ""
        raise DataError(f"calibration data{where} needs at least two identities and one identity with two "
                        f"usable images (it has {len(set(labels))} identities, {len(labels)} images)")
    return calibrate(genuine, impostor, target_fmr, model.fingerprint, data, cohort=cohort,
                     similarity=parse_measure(model.config.similarity).spec)


def _normalised_pairs(model: Embedder, embeddings: np.ndarray, labels: list, cohort: Cohort):
    require_cosine(model)
    e = np.asarray(embeddings, np.float32)
    a, b = np.triu_indices(len(e), 1)
    raw = (e @ e.T)[a, b].astype(np.float64)
    scores = cohort.normalize_pairs(raw, e, a, b)
    lab = np.asarray(labels, dtype=object)
    same = lab[a] == lab[b]
    return scores[same], scores[~same]


def require_cosine(model: Embedder) -> None:
    """The normalisation formulas work on cosine scores (the cohort statistics are cosines)."""
    if model.config.similarity.split(":")[0] not in ("cosine", "dot"):
        raise DataError(f"score normalisation needs a cosine model; this one scores with {model.config.similarity!r}")
