"""The declared schemas of the calibration files: ``calibration.json`` and ``cohort.npz``.

A calibration decides who is accepted, so its file is checked before any value is used (see
:mod:`verikit.schemas` for the shared rules and the one-line errors): a threshold that is not a
finite number, or lies outside the score range of the measure the scores are in, is refused, as
are rates outside [0, 1], an interval that does not contain its rate, zero counts, an impostor
tail that is not sorted, and a fingerprint that is not one. Normalised calibrations (``--norm``)
score in z-units, which have no fixed range: their threshold only has to be finite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..schemas import FileSchema, Sha256, array, finite_json
from ..similarity import Measure, parse_measure
from .normalization import METHODS

CALIBRATION_VERSION = 1
Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]
Method = Literal[METHODS]  # type: ignore[valid-type]


class NormalizationSchema(FileSchema):
    method: Method
    top_k: Optional[Count] = None
    cohort_size: Count


def _measure_of(value: Optional[str]) -> Optional[Measure]:
    if value is None:
        return None
    try:
        return parse_measure(value)
    except Exception as exc:  # DataError: re-raised as the field's ValueError
        raise ValueError(str(exc)) from None


class CalibrationFile(FileSchema):
    """``calibration.json``. Validation context ``{"measure": spec}``: the measure of the model it is
    loaded for, when known (its scores must be in that measure's range)."""

    version: Literal[CALIBRATION_VERSION]
    threshold: float
    target_fmr: Annotated[float, Field(gt=0.0, le=1.0)]
    measured_fmr: Rate
    measured_fnmr: Rate
    fmr_interval: Annotated[list[Rate], Field(min_length=2, max_length=2)]
    fnmr_interval: Annotated[list[Rate], Field(min_length=2, max_length=2)]
    n_genuine: Count
    n_impostor: Count
    model_fingerprint: Sha256
    data: finite_json() = {}  # type: ignore[valid-type]
    impostor_tail: list[float] = []
    created_at: str = ""
    normalization: Optional[NormalizationSchema] = None
    similarity: Optional[str] = None  # the measure the scores were computed in (absent in older files)

    @field_validator("similarity")
    @classmethod
    def _known_measure(cls, value: Optional[str]) -> Optional[str]:
        measure = _measure_of(value)
        return None if measure is None else measure.spec

    @field_validator("fmr_interval", "fnmr_interval")
    @classmethod
    def _ordered(cls, value: list[float]) -> list[float]:
        if value[0] > value[1]:
            raise ValueError(f"must be [low, high] with low <= high, got {value}")
        return value

    @field_validator("impostor_tail")
    @classmethod
    def _descending(cls, value: list[float]) -> list[float]:
        if any(a < b for a, b in zip(value, value[1:])):
            raise ValueError("must list the largest impostor scores in descending order")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "CalibrationFile":
        for name, rate, (lo, hi) in (("fmr", self.measured_fmr, self.fmr_interval),
                                     ("fnmr", self.measured_fnmr, self.fnmr_interval)):
            if not lo - 1e-9 <= rate <= hi + 1e-9:
                raise ValueError(f"measured_{name} {rate:g} lies outside its {name}_interval [{lo:g}, {hi:g}]")
        if len(self.impostor_tail) > self.n_impostor:
            raise ValueError(f"impostor_tail has {len(self.impostor_tail)} scores, more than n_impostor "
                             f"{self.n_impostor}")
        given = _measure_of((info.context or {}).get("measure"))
        recorded = _measure_of(self.similarity)
        if given is not None and recorded is not None and given.spec != recorded.spec:
            raise ValueError(f"its scores are in the measure {recorded.spec!r}, but the model scores with "
                             f"{given.spec!r}; re-run `verikit calibrate`")
        measure = recorded or given
        if self.normalization is None and measure is not None:
            problem = measure.threshold_problem(self.threshold)
            if problem:
                raise ValueError(f"threshold {problem}")
        elif not -1e6 < self.threshold < 1e6:  # normalised (z-unit) scores: any sane finite value
            raise ValueError(f"threshold of a normalised calibration must be a moderate number, got {self.threshold:g}")
        return self


class CohortFile(FileSchema):
    """``cohort.npz``: the embeddings a normalised calibration's scores were normalised against."""

    embeddings: array(ndim=2, kind="f")  # type: ignore[valid-type]
    method: Method
    top_k: Annotated[int, Field(ge=0)]  # 0: no top-k (only adaptive S-norm uses one)
    model_fingerprint: Sha256

    @model_validator(mode="after")
    def _consistent(self) -> "CohortFile":
        n = len(self.embeddings)
        if n < 2 or self.embeddings.shape[1] < 1:
            raise ValueError(f"embeddings must hold at least two cohort vectors, got shape {self.embeddings.shape}")
        if self.method == "as" and not 1 <= self.top_k <= n:
            raise ValueError(f"adaptive S-norm needs top_k between 1 and the cohort size {n}, got {self.top_k}")
        return self


def calibration_fields(doc: CalibrationFile) -> dict[str, Any]:
    """The validated file as keyword arguments of :class:`~verikit.calibrate.threshold.Calibration`."""
    d = doc.model_dump()
    d["fmr_interval"], d["fnmr_interval"] = tuple(d["fmr_interval"]), tuple(d["fnmr_interval"])
    d["impostor_tail"] = tuple(d["impostor_tail"])
    return d
