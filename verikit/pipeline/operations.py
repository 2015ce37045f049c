"""The three verification operations on image files.

* :func:`enroll` embeds images (batched; bad files skipped and reported) and adds them to the
  gallery in one transaction.
* :func:`verify` answers "is this probe the claimed identity?" (1:1) against a threshold.
* :func:`search` answers "who is this?" (1:N, open-set) with ranked identities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..calibrate.threshold import Calibration
from ..errors import CalibrationError, DataError, ImageError
from ..index.gallery import Gallery
from ..io import load_image
from ..models.embedder import Embedder
from ..models.inference import embed_files, embed_images
from ..structures import Decision, SearchResult


@dataclass
class EnrollReport:
    """What an enroll did: templates per identity, and the files it could not use."""

    enrolled: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    skipped_identities: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"enrolled": self.enrolled, "templates": sum(self.enrolled.values()),
                "failures": [{"path": str(p), "reason": r} for p, r in self.failures],
                "skipped_identities": self.skipped_identities}


def open_gallery_for(model: Embedder, path: str | Path, *, create: bool = False, index: str = "faiss:Flat",
                     model_path: str | None = None) -> Gallery:
    """Open (or create) a gallery, refusing one enrolled with a different model."""
    if create and not (Path(path) / "gallery.sqlite").exists():
        return Gallery.create(path, dim=model.embedding_size, fingerprint=model.fingerprint, index=index,
                              model_path=model_path)
    return Gallery.open(path, fingerprint=model.fingerprint)


@dataclass
class Enrollment:
    """Embedded, not yet stored: templates (and sources) per identity, plus what failed."""

    templates: dict[str, tuple[np.ndarray, list[str]]]
    report: EnrollReport


def prepare_enrollment(model: Embedder, images: Mapping[str, Sequence[str | Path]], *, batch_size: int = 64,
                       num_workers: int | None = None,
                       progress: Callable[[int], None] | None = None) -> Enrollment:
    """Embed every identity's images (the slow part), touching no gallery yet."""
    flat = [(name, Path(p)) for name, paths in images.items() for p in paths]
    if not flat:
        raise DataError("nothing to enroll: no images given")
    out = embed_files(model, [p for _, p in flat], batch_size=batch_size, num_workers=num_workers, progress=progress)
    # Look results up by path: a file listed twice was embedded twice, identically.
    position = {p: i for i, p in enumerate(out.paths)}
    grouped: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for name, p in flat:
        if p in position:
            vecs, srcs = grouped.setdefault(name, ([], []))
            vecs.append(out.embeddings[position[p]])
            srcs.append(str(p))
    report = EnrollReport(failures=list(out.failures), skipped_identities=sorted(set(images) - set(grouped)))
    return Enrollment({n: (np.stack(v), s) for n, (v, s) in grouped.items()}, report)


def enroll(model: Embedder, gallery: Gallery, images: Mapping[str, Sequence[str | Path]], *,
           batch_size: int = 64, num_workers: int | None = None,
           progress: Callable[[int], None] | None = None) -> EnrollReport:
    """Embed every identity's images and enroll them all in a single gallery transaction."""
    prepared = prepare_enrollment(model, images, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return commit_enrollment(gallery, prepared)


def commit_enrollment(gallery: Gallery, prepared: Enrollment) -> EnrollReport:
    """Store prepared templates: one transaction, all identities or none."""
    report = prepared.report
    if prepared.templates:
        report.enrolled = gallery.add_many(prepared.templates)
    return report


def _embed_probe(model: Embedder, image: str | Path) -> np.ndarray:
    return embed_images(model, [load_image(image)])[0]  # a bad probe raises ImageError naming it


def resolve_threshold(threshold: float | None, calibration: Calibration | None) -> float:
    if threshold is not None:
        return float(threshold)
    if calibration is not None:
        return calibration.threshold
    raise CalibrationError("no threshold: run `verikit calibrate` for this model, or pass --threshold")


def verify(model: Embedder, gallery: Gallery, image: str | Path, claim: str, *,
           threshold: float | None = None, calibration: Calibration | None = None) -> Decision:
    """1:1: score the probe against the claimed identity's templates (best match)."""
    t = resolve_threshold(threshold, calibration)
    gallery.identity(claim)  # unknown claim fails before any model work
    score = gallery.score(_embed_probe(model, image), claim)
    est = calibration.estimated_fmr(score) if calibration is not None else None
    return Decision(str(image), claim, score, t, est)


def search(model: Embedder, gallery: Gallery, images: Sequence[str | Path], *, top_k: int = 5,
           threshold: float | None = None, calibration: Calibration | None = None,
           batch_size: int = 64) -> tuple[list[SearchResult], list[tuple[Path, str]]]:
    """1:N for each probe; open-set when a threshold is known. Returns (results, failures)."""
    try:
        t: float | None = resolve_threshold(threshold, calibration)
    except CalibrationError:
        t = None  # ranking still works; there is just no "unknown" decision
    out = embed_files(model, images, batch_size=batch_size, num_workers=0 if len(images) < 256 else None)
    if len(images) == 1 and out.failures:
        raise ImageError(out.failures[0][1])
    results = []
    if len(out.paths):
        for path, hits in zip(out.paths, gallery.search(out.embeddings, top_k)):
            top = hits[0] if hits else None
            ident = None if top is None or (t is not None and top.score < t) else top.identity
            results.append(SearchResult(str(path), tuple(hits), t, ident))
    return results, out.failures
