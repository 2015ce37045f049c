"""The three verification operations on images: files, or pictures held in memory (any form
:mod:`verikit.image_input` accepts, converted by the same code that reads files).

* :func:`enroll` embeds images (batched; bad files skipped and reported) and adds them to the
  gallery in one transaction.
* :func:`verify` answers "is this probe the claimed identity?" (1:1) against a threshold.
* :func:`search` answers "who is this?" (1:N, open-set) with ranked identities.

With ``pipeline`` settings (see :mod:`verikit.pipeline.settings`) each file first goes through the
detector (its face crops are embedded instead of the whole image) and/or the segmenter (its
background is suppressed); a gallery records the settings it was created with and later operations
on it use them (different settings are refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..calibrate.threshold import Calibration
from ..errors import CalibrationError, DataError, ImageError
from ..index.gallery import Gallery
from ..image_input import ImageInput, as_source, check_sequence, input_name, source_key
from ..io import path_text
from ..models.embedder import Embedder
from ..models.inference import embed_files, embed_images
from ..similarity import Measure, number_problem
from ..structures import Decision, Hit, SearchResult
from .detection import FaceCropper
from .settings import FacePolicy, PipelineSettings, bind_to_gallery


@dataclass
class EnrollReport:
    """What an enroll did: templates per identity, and the files it could not use."""

    enrolled: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[Path, str]] = field(default_factory=list)
    skipped_identities: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"enrolled": self.enrolled, "templates": sum(self.enrolled.values()),
                "failures": [{"path": input_name(p), "reason": r} for p, r in self.failures],
                "skipped_identities": self.skipped_identities}


def open_gallery_for(model: Embedder, path: str | Path, *, create: bool = False, index: str = "faiss:Flat",
                     model_path: str | None = None, pipeline: PipelineSettings | None = None) -> Gallery:
    """Open (or create) a gallery, refusing one enrolled with a different model.

    A new gallery records ``pipeline`` (the detector/segmenter its images go through); for an existing one
    see :func:`verikit.pipeline.settings.bind_to_gallery`.
    """
    if create and not (Path(path) / "gallery.sqlite").exists():
        from .settings import GALLERY_META_KEY
        # The digests of the pipeline's weights files, so a later change of those files is refused.
        extra = {GALLERY_META_KEY: pipeline.with_digests().to_meta()} if pipeline is not None else None
        # The gallery scores with the measure the model was trained with (verikit.similarity).
        return Gallery.create(path, dim=model.embedding_size, fingerprint=model.fingerprint, index=index,
                              model_path=model_path, extra_meta=extra, similarity=model.config.similarity,
                              exist_ok=True)  # another process may create it at the same moment: then join it
    return Gallery.open(path, fingerprint=model.fingerprint)


@dataclass
class Enrollment:
    """Embedded, not yet stored: templates (and sources) per identity, plus what failed."""

    templates: dict[str, tuple[np.ndarray, list[str]]]
    report: EnrollReport
    pipeline: PipelineSettings | None = None


def prepare_enrollment(model: Embedder, images: Mapping[str, Sequence[ImageInput]], *, batch_size: int = 64,
                       num_workers: int | None = None,
                       progress: Callable[[int], None] | None = None,
                       pipeline: PipelineSettings | None = None, faces: FacePolicy | None = None) -> Enrollment:
    """Embed every identity's images (the slow part), touching no gallery yet.

    With ``pipeline``, each image's face crop(s) are embedded (``faces`` decides about images
    with several); images without a usable face are failures, like unreadable ones. Images are
    files or pictures in memory (:mod:`verikit.image_input`); names and sources are stored as
    :func:`verikit.io.path_text` (a name that is not UTF-8 keeps its bytes as ``\\xNN``).
    """
    images = {_name_text(name): check_sequence(paths, f"images of '{_name_text(name)}'") for name, paths in images.items()}
    flat = [(name, as_source(p)) for name, paths in images.items() for p in paths]
    if not flat:
        raise DataError("nothing to enroll: no images given")
    if pipeline is not None:
        return _prepare_through_pipeline(model, images, flat, FaceCropper(pipeline, faces), batch_size, progress)
    out = embed_files(model, [p for _, p in flat], batch_size=batch_size, num_workers=num_workers, progress=progress)
    vector_of = dict(zip(out.indices, out.embeddings))  # by position in flat: in-memory images have no name
    grouped: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for k, (name, p) in enumerate(flat):
        if k in vector_of:
            vecs, srcs = grouped.setdefault(name, ([], []))
            vecs.append(vector_of[k])
            srcs.append(input_name(p))
    report = EnrollReport(failures=list(out.failures), skipped_identities=sorted(set(images) - set(grouped)))
    return Enrollment({n: (np.stack(v), s) for n, (v, s) in grouped.items()}, report)


def _name_text(name: str) -> str:
    """An identity name as text the gallery can store (a name read from a folder or argv that is not
    UTF-8 keeps its bytes as ``\\xNN``); other types pass through for the gallery to judge."""
    return path_text(name) if isinstance(name, str) else name


def enroll(model: Embedder, gallery: Gallery, images: Mapping[str, Sequence[ImageInput]], *,
           batch_size: int = 64, num_workers: int | None = None,
           progress: Callable[[int], None] | None = None,
           pipeline: PipelineSettings | None = None, faces: FacePolicy | None = None) -> EnrollReport:
    """Embed every identity's images and enroll them all in a single gallery transaction.

    ``pipeline`` defaults to the settings the gallery was created with; different ones are refused.
    """
    pipeline = bind_to_gallery(gallery, pipeline)
    prepared = prepare_enrollment(model, images, batch_size=batch_size, num_workers=num_workers, progress=progress,
                                  pipeline=pipeline, faces=faces)
    return commit_enrollment(gallery, prepared)


def _prepare_through_pipeline(model: Embedder, images: Mapping[str, Sequence[str | Path]], flat: list[tuple[str, Path]],
                      cropper: FaceCropper, batch_size: int, progress: Callable[[int], None] | None) -> Enrollment:
    paths = list({source_key(p): p for _, p in flat}.values())  # a file listed twice is detected once
    by_path: dict[object, list[tuple[np.ndarray, str]]] = {}
    failures: list[tuple[Path, str]] = []
    for crops, bad in cropper.crops_of_files(paths, batch_size=min(batch_size, 16)):
        failures.extend(bad)
        vectors = embed_images(model, [c.image for c in crops], batch_size=batch_size)
        for crop, vec in zip(crops, vectors):
            by_path.setdefault(source_key(crop.source), []).append((vec, crop.label))
        if progress is not None:
            progress(len({source_key(c.source) for c in crops}) + len(bad))
    grouped: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for name, p in flat:
        for vec, label in by_path.get(source_key(p), []):
            vecs, srcs = grouped.setdefault(name, ([], []))
            vecs.append(vec)
            srcs.append(label)
    report = EnrollReport(failures=sorted(failures, key=lambda f: input_name(f[0])),
                          skipped_identities=sorted(set(images) - set(grouped)))
    return Enrollment({n: (np.stack(v), s) for n, (v, s) in grouped.items()}, report, cropper.settings)


def commit_enrollment(gallery: Gallery, prepared: Enrollment,
                      metadata: Mapping[str, Mapping[str, object] | None] | None = None) -> EnrollReport:
    """Store prepared templates (and ``metadata`` per identity): one transaction, all identities or none.

    Refuses templates made with other pipeline settings than the gallery records.
    """
    report = prepared.report
    recorded = bind_to_gallery(gallery, prepared.pipeline)
    if recorded != prepared.pipeline:
        raise DataError(f"these images were embedded without the pipeline gallery '{gallery.path}' records "
                        f"({recorded.describe()}); prepare them with that pipeline")
    if prepared.templates:
        report.enrolled = gallery.add_many(prepared.templates, metadata=metadata)
    return report


def _embed_probe(model: Embedder, image: ImageInput, cropper: FaceCropper | None = None) -> np.ndarray:
    """One probe (a file or an in-memory image, :mod:`verikit.image_input`) -> its template."""
    if cropper is None:
        return embed_images(model, [image])[0]  # a bad probe raises ImageError naming it
    if cropper.policy.multiple_faces == "all":
        raise DataError("verify compares one face with the claim: use --multiple-faces largest or error")
    return embed_images(model, [cropper.crops_of_file(image)[0].image])[0]  # no face: ImageError naming it


def resolve_threshold(threshold: float | None, calibration: Calibration | None,
                      measure: Measure | None = None) -> float | None:
    """The threshold to decide with: the one given, else the calibration's; None when neither exists.

    Whatever its source, it must be a finite number, and inside ``measure``'s score range when the
    scores are that measure's (None: scores in other units, e.g. a pair head's or normalised ones):
    NaN compares false with every score and a value below the range accepts everyone, so either
    is refused (:class:`DataError` naming the threshold), never used.
    """
    if threshold is not None:
        source, value = "threshold (--threshold)", threshold
    elif calibration is not None:
        source, value = "the calibration's threshold", calibration.threshold
    else:
        return None
    problem = number_problem(value) if measure is None else measure.threshold_problem(value)
    if problem is not None:
        raise DataError(f"{source} {problem}")
    return float(value)


def _require_threshold(t: float | None) -> float:
    if t is None:
        raise CalibrationError("no threshold: run `verikit calibrate` for this model, or pass --threshold")
    return t


def verify(model: Embedder, gallery: Gallery, image: ImageInput, claim: str, *,
           threshold: float | None = None, calibration: Calibration | None = None,
           pipeline: PipelineSettings | None = None, faces: FacePolicy | None = None,
           scorer: Callable[[np.ndarray, np.ndarray], float] | None = None) -> Decision:
    """1:1: score the probe against the claimed identity's templates (best match).

    The probe goes through the gallery's recorded pipeline when it has one (``pipeline`` may
    repeat it; different settings are refused); no face in the probe raises ImageError.
    ``scorer(probe, templates)`` replaces the gallery's similarity (e.g. a learned pair head's
    ``best_score``); its threshold must then be in its own units.
    """
    own_units = scorer is None and (calibration is None or calibration.cohort is None)
    t = _require_threshold(resolve_threshold(threshold, calibration, gallery.measure if own_units else None))
    gallery.identity(claim)  # unknown claim fails before any model work
    settings = bind_to_gallery(gallery, pipeline)
    cropper = FaceCropper(settings, faces) if settings is not None else None
    probe = _embed_probe(model, image, cropper)
    return decide(gallery, probe, input_name(image), claim, threshold=threshold, calibration=calibration, scorer=scorer)


def decide(gallery: Gallery, probe: np.ndarray, label: str, claim: str, *, threshold: float | None = None,
           calibration: Calibration | None = None,
           scorer: Callable[[np.ndarray, np.ndarray], float] | None = None) -> Decision:
    """The 1:1 decision for an already embedded probe (what :func:`verify` does after embedding;
    the HTTP server embeds many requests' probes in one forward pass, then decides each)."""
    t = resolve_threshold(threshold, calibration)
    if scorer is None and calibration is not None and calibration.cohort is not None:
        scorer = calibration.cohort.best_score  # the threshold was calibrated on normalised scores
    score = gallery.score(probe, claim) if scorer is None else scorer(probe, gallery.templates(claim))
    est = calibration.estimated_fmr(score) if calibration is not None else None
    return Decision(label, claim, score, t, est)


def _embed_probe_crops(model: Embedder, images: Sequence[str | Path], cropper: FaceCropper,
                       batch_size: int) -> tuple[list[str], np.ndarray, list[tuple[Path, str]]]:
    labels: list[str] = []
    vectors: list[np.ndarray] = []
    failures: list[tuple[Path, str]] = []
    for crops, bad in cropper.crops_of_files(list(images), batch_size=min(batch_size, 16)):
        failures.extend(bad)
        labels.extend(c.label for c in crops)
        vectors.append(embed_images(model, [c.image for c in crops], batch_size=batch_size))
    emb = np.concatenate(vectors) if vectors else np.zeros((0, model.embedding_size), np.float32)
    return labels, emb, failures


def _normalised_search(gallery: Gallery, embeddings: np.ndarray, top_k: int, cohort) -> list[list[Hit]]:
    """Re-rank a widened candidate list by normalised scores (the calibration's units).

    Normalisation changes scores per identity, so the raw top-k may not be the normalised top-k;
    4x the candidates (at least 20) makes a miss unlikely without scoring the whole gallery.
    """
    out = []
    for emb, hits in zip(embeddings, gallery.search(embeddings, max(4 * top_k, 20))):
        rescored = [Hit(h.identity, cohort.best_score(emb, gallery.templates(h.identity))) for h in hits]
        out.append(sorted(rescored, key=lambda h: -h.score)[:top_k])
    return out


def search(model: Embedder, gallery: Gallery, images: Sequence[ImageInput], *, top_k: int = 5,
           threshold: float | None = None, calibration: Calibration | None = None,
           batch_size: int = 64, pipeline: PipelineSettings | None = None,
           faces: FacePolicy | None = None) -> tuple[list[SearchResult], list[tuple[Path, str]]]:
    """1:N for each probe; open-set when a threshold is known. Returns (results, failures).

    With the gallery's detector every kept face is a probe (``file#k`` when a file gave several);
    files without a usable face are failures (for a single probe: ImageError).
    """
    normalised = calibration is not None and calibration.cohort is not None
    # None: ranking still works; there is just no "unknown" decision.
    t = resolve_threshold(threshold, calibration, None if normalised else gallery.measure)
    images = check_sequence(images)
    settings = bind_to_gallery(gallery, pipeline)
    if settings is not None:
        labels, embeddings, failures = _embed_probe_crops(model, images, FaceCropper(settings, faces), batch_size)
    else:
        out = embed_files(model, images, batch_size=batch_size, num_workers=0 if len(images) < 256 else None)
        labels, embeddings, failures = [input_name(p) for p in out.paths], out.embeddings, out.failures
    if len(images) == 1 and failures:
        raise ImageError(failures[0][1])
    return rank(gallery, labels, embeddings, top_k=top_k, threshold=t, calibration=calibration), failures


def rank(gallery: Gallery, labels: Sequence[str], embeddings: np.ndarray, *, top_k: int = 5,
         threshold: float | None = None, calibration: Calibration | None = None) -> list[SearchResult]:
    """1:N answers for already embedded probes (what :func:`search` does after embedding)."""
    try:
        t: float | None = resolve_threshold(threshold, calibration)
    except CalibrationError:
        t = None  # ranking still works; there is just no "unknown" decision
    results = []
    cohort = calibration.cohort if calibration is not None else None
    if len(labels):
        all_hits = gallery.search(embeddings, top_k) if cohort is None else \
            _normalised_search(gallery, embeddings, top_k, cohort)
        for path, hits in zip(labels, all_hits):
            top = hits[0] if hits else None
            ident = None if top is None or (t is not None and top.score < t) else top.identity
            results.append(SearchResult(str(path), tuple(hits), t, ident))
    return results
