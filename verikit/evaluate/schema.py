"""The declared schemas of the evaluation files verikit reads back: a run's ``scores.npz`` and the
embedding cache (``embeddings-<fingerprint>.npz``).

Both are ``.npz`` archives of plain arrays (no pickle), checked on load with the shared rules of
:mod:`verikit.schemas`: each array's rank, kind and finiteness, and that the arrays fit each
other (one subject code per score, codes inside the subject list; one key per cached row).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from ..schemas import FileSchema, Sha256, array

Scores = array(ndim=1, kind="f", neg_inf=True)  # -inf: UNSCORED (a failure to acquire, never a match)
Codes = array(ndim=1, kind="iu")
Names = array(ndim=1, kind="U")


class ScoresFile(FileSchema):
    """``scores.npz``: genuine and impostor scores with their subjects (codes into ``subjects``)."""

    genuine: Scores  # type: ignore[valid-type]
    impostor: Scores  # type: ignore[valid-type]
    genuine_subject: Codes  # type: ignore[valid-type]
    impostor_subject_a: Codes  # type: ignore[valid-type]
    impostor_subject_b: Codes  # type: ignore[valid-type]
    subjects: Names  # type: ignore[valid-type]
    protocol_sha256: Sha256

    @model_validator(mode="after")
    def _aligned(self) -> "ScoresFile":
        if len(self.genuine_subject) != len(self.genuine):
            raise ValueError(f"genuine_subject has {len(self.genuine_subject)} codes for {len(self.genuine)} "
                             "genuine scores")
        for name in ("impostor_subject_a", "impostor_subject_b"):
            if len(getattr(self, name)) != len(self.impostor):
                raise ValueError(f"{name} has {len(getattr(self, name))} codes for {len(self.impostor)} "
                                 "impostor scores")
        n = len(self.subjects)
        for name in ("genuine_subject", "impostor_subject_a", "impostor_subject_b"):
            codes = getattr(self, name)
            if codes.size and (codes.min() < 0 or codes.max() >= n):
                raise ValueError(f"{name} holds codes outside the {n} subjects")
        return self


class EmbeddingCacheFile(FileSchema):
    """The embedding cache (a main file or one part of it): one row of ``embeddings`` per ``keys`` entry
    (``path|size|mtime_ns``, or ``...|MODE`` for a no-face fallback's embedding), and ``no_face`` keys."""

    fingerprint: Annotated[str, Field(min_length=1, max_length=200)]
    keys: Names  # type: ignore[valid-type]
    embeddings: array(ndim=2, kind="f", dtype=np.float32)  # type: ignore[valid-type]
    #: files in which the detector found no face (a failure to acquire, remembered like an embedding)
    no_face: Names = Field(default_factory=lambda: np.zeros(0, dtype=str))  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _aligned(self) -> "EmbeddingCacheFile":
        if len(self.keys) != len(self.embeddings):
            raise ValueError(f"keys has {len(self.keys)} entries for {len(self.embeddings)} embeddings")
        if len(set(self.keys.tolist())) != len(self.keys):
            raise ValueError("keys lists a file twice")
        return self
