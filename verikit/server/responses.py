"""The JSON bodies the server answers with, declared for its OpenAPI schema.

They describe exactly the CLI's ``--format json`` output (built by the same ``to_dict`` methods), so a
client can switch between ``verikit verify -f json`` and ``POST /v1/verify`` without a change. The
server returns those dicts as they are; these models document and test them (the schemathesis test
checks every response against them).
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(_Out):
    error: str = Field(description="What was wrong, in one line.")


class DecisionOut(_Out):
    """``verikit verify --format json``."""

    probe: str
    claim: str
    score: float
    threshold: float
    match: bool
    estimated_fmr: Optional[float] = Field(None, description="Present with a calibration: the fraction of its "
                                                            "impostor scores at or above this score.")


class HitOut(_Out):
    identity: str
    score: float


class SearchResultOut(_Out):
    """One element of ``verikit search --format json``."""

    probe: str
    identity: Optional[str] = Field(description="The top hit when it reaches the threshold; null: unknown.")
    threshold: Optional[float]
    hits: list[HitOut]


class FailureOut(_Out):
    path: str
    reason: str


class GallerySizeOut(_Out):
    path: str
    identities: int
    templates: int


class EnrollOut(_Out):
    """``verikit enroll --format json``."""

    enrolled: dict[str, int]
    templates: int
    failures: list[FailureOut]
    skipped_identities: list[str]
    gallery: GallerySizeOut


class IdentityOut(_Out):
    """``verikit gallery list|show --format json`` (sources only in show)."""

    name: str
    templates: int
    metadata: dict[str, Any]
    created_at: str
    sources: Optional[list[str]] = None


class RemovedOut(_Out):
    identity: str
    removed_templates: int


class GalleryInfoOut(BaseModel):
    """``verikit gallery info --format json`` (open to fields a newer gallery adds)."""

    path: str
    identities: int
    templates: int
    dim: int
    index: str
    indexed_vectors: int
    model_fingerprint: str
    pipeline: Optional[dict[str, Any]]


class HealthOut(_Out):
    status: str


class ReadyOut(_Out):
    status: str
    gallery: bool = Field(description="Whether the gallery exists yet (the first enroll creates it).")
    warnings: list[str] = Field(description="What verify/search warn about this configuration.")


class IdentityPatch(_Out):
    """``PATCH /v1/identities/{name}``: a new name and/or metadata to merge (a null value deletes a key)."""

    name: Optional[str] = Field(None, min_length=1, max_length=512)
    metadata: Optional[dict[str, Optional[str]]] = None
