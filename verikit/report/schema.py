"""The declared schema of a benchmark run's ``result.json`` (written by
:mod:`verikit.evaluate.benchmark`, read back by ``verikit report``; field meanings in
docs/evaluation.md).

Checked on load with the shared rules of :mod:`verikit.schemas`, so that a report never meets a
value it cannot draw: rates are finite numbers in [0, 1] and curves have matching lengths.
Intervals and bootstrap statistics may be ``NaN`` (the writer records an undefined interval that
way, e.g. a bootstrap with no valid resample), and a protocol's own description is free-form.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, model_validator

from ..evaluate.benchmark import SCHEMA_VERSION
from ..schemas import FileSchema

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Figure = Annotated[float, Field(allow_inf_nan=True)]  # intervals and statistics: NaN when undefined
Interval = Annotated[list[Figure], Field(min_length=2, max_length=2)]
Count = Annotated[int, Field(ge=0)]


class Model(FileSchema):
    path: Optional[str] = None
    fingerprint: Annotated[str, Field(min_length=1)]


class Eer(FileSchema):
    value: Rate
    threshold: Figure
    bootstrap_ci: Optional[Interval] = None


class TarAtFar(FileSchema):
    far: Annotated[float, Field(gt=0.0, le=1.0)]
    threshold: Figure  # +inf when no score reaches the operating point
    tar: Rate
    tar_interval: Interval
    tar_bootstrap_ci: Optional[Interval] = None
    measured_far: Rate
    far_interval: Interval
    genuine_accepted: Count
    impostor_accepted: Count
    supported: bool


class Roc(FileSchema):
    fmr: list[Rate]
    tmr: list[Rate]
    threshold: list[Optional[float]]  # null: the +inf start of the curve

    @model_validator(mode="after")
    def _aligned(self) -> "Roc":
        if not len(self.fmr) == len(self.tmr) == len(self.threshold) or not self.fmr:
            raise ValueError(f"roc fmr, tmr and threshold must be equally long and not empty, got "
                             f"{len(self.fmr)}, {len(self.tmr)} and {len(self.threshold)}")
        return self


class Histogram(FileSchema):
    edges: Annotated[list[float], Field(min_length=2)]
    genuine: list[Count]
    impostor: list[Count]

    @model_validator(mode="after")
    def _aligned(self) -> "Histogram":
        bins = len(self.edges) - 1
        if len(self.genuine) != bins or len(self.impostor) != bins:
            raise ValueError(f"histogram needs one count per bin ({bins}), got {len(self.genuine)} and "
                             f"{len(self.impostor)}")
        return self


class Unscored(FileSchema):
    """Comparisons kept in the counts as non-matches because an image in them had no face."""
    genuine: Count
    impostor: Count


class OperatingPoint(FileSchema):
    """FMR and FNMR measured at one fixed threshold (``--threshold`` or a calibration's)."""
    source: Literal["--threshold", "calibration"]
    threshold: float
    fmr: Rate
    fnmr: Rate
    fmr_interval: Interval
    fnmr_interval: Interval
    fmr_bootstrap_ci: Optional[Interval] = None
    fnmr_bootstrap_ci: Optional[Interval] = None
    impostor_accepted: Count
    genuine_rejected: Count
    n_genuine: Count
    n_impostor: Count
    fmr_supported: bool
    fnmr_supported: bool
    # a calibration's provenance
    path: Optional[str] = None
    target_fmr: Optional[Rate] = None
    target_fmr_in_interval: Optional[bool] = None
    calibrated_fmr: Optional[Rate] = None
    calibrated_on: Optional[str] = None
    calibration_pipeline: Optional[dict[str, Any]] = None
    pipeline_matches: Optional[bool] = None
    normalization: Optional[Any] = None


class Verification(FileSchema):
    n_genuine: Annotated[int, Field(ge=1)]
    n_impostor: Annotated[int, Field(ge=1)]
    n_subjects: Count
    auc: Rate
    eer: Eer
    min_supported_far: Rate
    supported_rule: str
    interval_method: str
    confidence: Annotated[float, Field(gt=0.0, lt=1.0)]
    tar_at_far: list[TarAtFar]
    bootstrap: Optional[dict[str, Any]] = None
    roc: Roc
    histogram: Histogram
    unscored: Optional[Unscored] = None
    subjects_note: Optional[str] = None
    interval_note: Optional[str] = None
    at_threshold: list[OperatingPoint] = []


class Folds(FileSchema):
    folds: Annotated[int, Field(ge=1)]
    threshold: list[float]
    accuracy: list[Rate]
    mean: Rate
    std_error: Figure
    threshold_rule: str

    @model_validator(mode="after")
    def _aligned(self) -> "Folds":
        if len(self.threshold) != self.folds or len(self.accuracy) != self.folds:
            raise ValueError(f"folds needs a threshold and an accuracy per fold ({self.folds})")
        return self


class DirAtFpir(FileSchema):
    fpir: Annotated[float, Field(gt=0.0, le=1.0)]
    threshold: Figure
    dir: Figure
    measured_fpir: Figure
    supported: bool


class Identification(FileSchema):
    n_gallery_templates: Count
    n_gallery_identities: Count
    n_mated: Count
    n_non_mated: Count
    cmc: Optional[list[Rate]] = None
    rank1: Optional[Rate] = None
    rank1_interval: Optional[Interval] = None
    map: Optional[Rate] = None
    dir_at_fpir: Optional[list[DirAtFpir]] = None
    n_identities_without_template: Optional[Count] = None
    unscored_probes: Optional[dict[str, Count]] = None
    misses_without_score: Optional[Count] = None


class Acquisition(FileSchema):
    """Failures to acquire (no face found) and how they were scored (``--on-no-face``)."""
    detector: Optional[str] = None
    on_no_face: Literal["nonmatch", "whole", "center", "drop"]
    scored_as: str
    files: Count
    no_face: Count
    fta_rate: Optional[Rate] = None  # None without a detector: nothing can fail to acquire
    fta_interval: Optional[Interval] = None
    fallback: Count
    pairs: Optional[dict[str, Count]] = None
    no_face_files: list[str] = []
    gallery: Optional[Count] = None  # identification: no-face files among the gallery's
    probes: Optional[Count] = None   # and among the probes


class ResultFile(FileSchema):
    """``result.json`` of ``verikit benchmark`` (schema version :data:`SCHEMA_VERSION`)."""

    schema_version: Literal[SCHEMA_VERSION]
    kind: Literal["verikit.benchmark"]
    name: Annotated[str, Field(min_length=1)]
    created_at: str = ""
    verikit_version: str = ""
    model: Model
    measure: Optional[str] = None
    acquisition: Optional[Acquisition] = None
    pipeline: Optional[dict[str, Any]] = None
    protocol: dict[str, Any]
    normalization: Optional[dict[str, Any]] = None
    embedding: Optional[dict[str, Any]] = None
    skipped: Optional[dict[str, Any]] = None
    verification: Optional[Verification]
    folds: Optional[Folds] = None
    identification: Optional[Identification]
    scores_file: Optional[Annotated[str, Field(pattern=r"^[^/\\]+$")]] = None  # a name beside result.json

    @model_validator(mode="after")
    def _has_results(self) -> "ResultFile":
        if self.verification is None and self.identification is None:
            raise ValueError("it has neither verification nor identification results")
        return self
