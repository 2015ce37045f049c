"""The application layer: a model, its calibration and a gallery, loaded once and checked to
belong together, and the operations on them that the CLI, the Python API and the HTTP server run.

:class:`Service` owns the decisions no entry point may make on its own: which model (the one
given, or the one the gallery was enrolled with), which calibration (the model's, refused when made
for another model), which scorer and threshold (the model's similarity with the calibration, or the
pair head with its own), which detector/segmenter pipeline (the gallery's, merged with what was
asked), and the warnings these choices deserve (:class:`verikit.errors.VerikitWarning`).

A Service keeps its gallery open for as long as it lives. It needs no locking or reopening of
its own: the gallery follows other processes by itself (each search catches its index up with
SQLite, every write is one SQLite transaction; docs/concurrency.md), and one ``Gallery`` may be
shared by threads. The server still runs gallery calls on one thread, in order (they are short).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import CalibrationError, DataError
from . import hooks
from .checks import (NO_THRESHOLD_WARNING, calibrated_pipeline_warning, check_calibration, check_threshold, warn)
from .loading import VerifyScorer, load_calibration, load_model, verify_scorer
from .pipelines import PipelineRequest, merge_pipeline

DB_FILE = "gallery.sqlite"  # the gallery's database file: its presence means "a gallery exists here"
_NOT_LOADED = object()


@dataclass(frozen=True)
class EnrollResult:
    """What an enroll did and the gallery's size after it; ``to_dict`` is ``verikit enroll --format json``."""

    report: Any  # verikit.pipeline.operations.EnrollReport
    gallery: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "gallery": self.gallery}


class Service:
    """Open with :meth:`open`; use as a context manager (or call :meth:`close`)."""

    def __init__(self, model: Any, gallery_dir: str | Path, *, model_dir: Path | None, calibration: Any,
                 scorer: VerifyScorer, threshold: float | None, pipeline: Any, faces: Any = None,
                 index: str = "faiss:Flat", batch_size: int = 64) -> None:
        self.model = model
        self.model_dir = model_dir
        self.gallery_dir = Path(gallery_dir)
        self._calibration_source = calibration  # a Calibration, a model directory, or None: the model's own
        self._calibration: Any = _NOT_LOADED
        self.scorer = scorer
        self.threshold = threshold          # the explicit override (None: the calibration's)
        self.pipeline = pipeline            # PipelineSettings or None (whole images)
        self.faces = faces                  # FacePolicy or None (largest face)
        self.index = index                  # for a gallery this service creates
        self.batch_size = batch_size
        self._gallery: Any = None
        self._croppers: dict[Any, Any] = {}

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, gallery: str | Path, *, model: Any = None, device: str = "auto", threshold: float | None = None,
             scorer: str = "similarity", pipeline: PipelineRequest | Any = None, faces: Any = None,
             calibration: Any = None, index: str = "faiss:Flat", batch_size: int = 64) -> "Service":
        """Load and check everything an operation on ``gallery`` needs.

        ``model``: a model directory, an ``Embedder``, or None for the model the gallery records.
        ``calibration``: a ``Calibration`` or a model directory holding one; default the model
        directory's calibration.json when there is one. ``pipeline``: a ``PipelineRequest`` (merged
        with the gallery's recorded pipeline) or ``PipelineSettings``. A gallery that does not exist
        yet is created by the first :meth:`enroll`.
        """
        from ..index.gallery import Gallery
        from ..models.embedder import Embedder
        from ..pipeline.settings import PipelineSettings, recorded_settings, resolve_settings

        gallery = Path(gallery)
        threshold = check_threshold(threshold)
        existing = (gallery / DB_FILE).exists()
        if isinstance(model, Embedder):
            net, model_dir = model, None
        else:
            net, model_dir = load_model(model, device, gallery if existing else None)
        g = Gallery.open(gallery, fingerprint=net.fingerprint) if existing else None
        try:
            recorded = recorded_settings(g) if g is not None else None
            requested = pipeline if pipeline is None or isinstance(pipeline, PipelineSettings) \
                else merge_pipeline(pipeline, recorded)
            settings = resolve_settings(recorded, requested, str(gallery)) if g is not None else requested
            if calibration is not None and not isinstance(calibration, (str, Path)):
                check_calibration(calibration, net)
            svc = cls(net, gallery, model_dir=model_dir, calibration=calibration,
                      scorer=verify_scorer(scorer, model_dir, net, threshold), threshold=threshold,
                      pipeline=settings, faces=faces, index=index, batch_size=batch_size)
        except BaseException:
            if g is not None:
                g.close()
            raise
        svc._gallery = g
        return svc

    def close(self) -> None:
        if self._gallery is not None:
            self._gallery.close()
            self._gallery = None

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- what the configuration implies ---------------------------------------------------------
    @property
    def calibration(self) -> Any:
        """The similarity calibration (None: none), loaded on first use so an enroll never needs it;
        refused when made for another model."""
        if self._calibration is _NOT_LOADED:
            source = self._calibration_source
            if source is None:
                cal = load_calibration(self.model_dir, self.model)
            elif isinstance(source, (str, Path)):
                cal = load_calibration(source, self.model)
                if cal is None:
                    raise CalibrationError(f"no calibration.json in '{source}'")
            else:
                cal = source
            check_calibration(cal, self.model)
            self._calibration = cal
        return self._calibration

    @property
    def search_threshold(self) -> float | None:
        """The explicit threshold when it is in similarity units (pair-head thresholds are not)."""
        return self.threshold if self.scorer.uses_calibration else None

    def threshold_warnings(self) -> list[str]:
        """What verify/search warn about this configuration (the server says it once at start-up)."""
        out = []
        if self.scorer.uses_calibration and self.threshold is None:
            mismatch = calibrated_pipeline_warning(self.calibration, self.pipeline)
            if mismatch:
                out.append(mismatch)
            if self.calibration is None:
                out.append(NO_THRESHOLD_WARNING)
        return out

    def _warn_calibrated_pipeline(self) -> None:
        if self.scorer.uses_calibration and self.threshold is None:
            message = calibrated_pipeline_warning(self.calibration, self.pipeline)
            if message:
                warn(message, stacklevel=4)

    def _verify_threshold(self) -> float:
        if self.scorer.threshold is not None:
            return self.scorer.threshold
        if self.calibration is not None:
            return self.calibration.threshold
        raise CalibrationError("no threshold: run `verikit calibrate` for this model, or pass --threshold")

    def cropper(self, faces: Any = None) -> Any:
        """The detector/segmenter step for this gallery's pipeline (built once per face policy), or None."""
        if self.pipeline is None:
            return None
        from ..pipeline.detection import FaceCropper
        from ..pipeline.settings import FacePolicy

        policy = faces or self.faces or FacePolicy()
        if policy not in self._croppers:
            self._croppers[policy] = FaceCropper(self.pipeline, policy)
        return self._croppers[policy]

    # -- the gallery ------------------------------------------------------------------------------
    def _missing(self) -> Exception:
        from ..errors import GalleryError
        return GalleryError(f"no gallery at '{self.gallery_dir}' (create one with `verikit enroll`)")

    def gallery(self) -> Any:
        """The open gallery (opened on first use when another process created it after this service)."""
        if self._gallery is None:
            from ..index.gallery import Gallery

            if not (self.gallery_dir / DB_FILE).exists():
                raise self._missing()
            self._gallery = Gallery.open(self.gallery_dir, fingerprint=self.model.fingerprint)
        return self._gallery

    @contextmanager
    def _writing(self, create: bool = False) -> Iterator[Any]:
        """The gallery to change (created if asked); its derived index saved afterwards.

        Each change is the gallery's own SQLite transaction: a change refused inside it rolls
        back, and the index follows the database after the commit (docs/concurrency.md)."""
        from ..pipeline.operations import open_gallery_for

        if self._gallery is None and create and not (self.gallery_dir / DB_FILE).exists():
            model_path = str(self.model_dir.resolve()) if self.model_dir is not None else None
            # exist_ok inside: two processes creating it at the same moment join one gallery
            self._gallery = open_gallery_for(self.model, self.gallery_dir, create=True, index=self.index,
                                             model_path=model_path, pipeline=self.pipeline)
        g = self.gallery()
        yield g
        g.flush()

    # -- operations ------------------------------------------------------------------------------
    def enroll(self, images: Mapping[str, Sequence[str | Path]], *, metadata: Mapping[str, Any] | None = None,
               batch_size: int | None = None, progress: Callable[[int], None] | None = None,
               faces: Any = None) -> EnrollResult:
        """Embed each identity's image files, then commit them all in one transaction.

        Unreadable files (and, with a detector, files without a usable face) are skipped and listed
        in the report; nothing stored at all is an error (and creates no gallery).
        """
        from ..pipeline.operations import prepare_enrollment

        prepared = prepare_enrollment(self.model, images, batch_size=batch_size or self.batch_size,
                                      progress=progress, pipeline=self.pipeline, faces=faces or self.faces)
        return self.commit(prepared, metadata=metadata)

    def commit(self, prepared: Any, metadata: Mapping[str, Any] | None = None) -> EnrollResult:
        """Store an embedded :class:`verikit.pipeline.operations.Enrollment` (the slow part done elsewhere)."""
        from ..pipeline.operations import commit_enrollment

        if not prepared.templates:
            failures = prepared.report.failures
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DataError(f"nothing enrolled: {failures[0][1] if failures else 'no images'}{more}")
        with self._writing(create=True) as g:
            hooks.checkpoint("enroll_before_commit")
            report = commit_enrollment(g, prepared, metadata=metadata)
            hooks.checkpoint("enroll_after_commit")
            summary = g.info()
        return EnrollResult(report, {"path": str(self.gallery_dir), "identities": summary["identities"],
                                     "templates": summary["templates"]})

    def enroll_bulk(self, root: str | Path, *, batch_commit: int = 1000, resume: bool = False, workers: int = 2,
                    batch_size: int | None = None, progress: Callable[[int], None] | None = None) -> Any:
        """Enroll a folder-per-identity tree of any size (verikit.pipeline.bulk): streamed, decoded by
        ``workers`` DataLoader processes, committed every ``batch_commit`` templates (each batch one
        transaction), skipping with ``resume`` what is already enrolled by path
        and content hash. Returns a :class:`verikit.pipeline.bulk.BulkReport`."""
        from ..pipeline.bulk import bulk_enroll

        if self.pipeline is not None:
            raise DataError(f"bulk enrollment embeds whole images; gallery '{self.gallery_dir}' uses a detector or "
                            "segmenter pipeline: enroll without --batch-commit/--resume")
        def commit(templates: Mapping[str, Any], hashes: Mapping[str, Sequence[str]]) -> None:
            with self._writing(create=True) as g:
                g.add_many(templates, content_hashes=hashes)

        def already(pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
            if self._gallery is None and not (self.gallery_dir / DB_FILE).exists():
                return set()
            return self.gallery().enrolled_sources(pairs)

        return bulk_enroll(self.model, root, commit, already=already if resume else None, batch_commit=batch_commit,
                           batch_size=batch_size or self.batch_size, workers=workers, progress=progress)

    def commit_embeddings(self, templates: Mapping[str, tuple[np.ndarray, Sequence[str]]],
                          metadata: Mapping[str, Any] | None = None) -> EnrollResult:
        """Store templates embedded elsewhere through this service's model and pipeline
        (``{name: (vectors, sources)}``); the server embeds uploads in shared forward passes."""
        from ..pipeline.operations import EnrollReport, Enrollment

        prepared = Enrollment({n: (np.asarray(v, np.float32), list(s)) for n, (v, s) in templates.items()},
                              EnrollReport(), self.pipeline)
        return self.commit(prepared, metadata=metadata)

    def verify(self, image: Any, claim: str, *, faces: Any = None) -> Any:
        """1:1 for one probe file: a :class:`verikit.Decision` (see :func:`verikit.pipeline.operations.verify`)."""
        from ..pipeline.operations import verify

        self._warn_calibrated_pipeline()
        return verify(self.model, self.gallery(), image, claim, threshold=self._verify_threshold(),
                      calibration=self.calibration if self.scorer.uses_calibration else None,
                      pipeline=self.pipeline, faces=faces or self.faces, scorer=self.scorer.score)

    def decide(self, probe: np.ndarray, label: str, claim: str) -> Any:
        """1:1 for an already embedded probe (the server embeds many requests' probes at once)."""
        from ..pipeline.operations import decide

        self._warn_calibrated_pipeline()
        threshold = self._verify_threshold()
        return decide(self.gallery(), probe, label, claim, threshold=threshold,
                      calibration=self.calibration if self.scorer.uses_calibration else None,
                      scorer=self.scorer.score)

    def search(self, images: Sequence[Any], *, top_k: int = 5, faces: Any = None,
               batch_size: int | None = None) -> tuple[list[Any], list[tuple[Path, str]]]:
        """1:N for probe files: ``(results, failures)`` (see :func:`verikit.pipeline.operations.search`)."""
        from ..pipeline.operations import search

        self._warn_calibrated_pipeline()
        out = search(self.model, self.gallery(), images, top_k=top_k, threshold=self.search_threshold,
                     calibration=self.calibration, batch_size=batch_size or self.batch_size, pipeline=self.pipeline,
                     faces=faces or self.faces)
        self._warn_no_threshold()
        return out

    def rank(self, labels: Sequence[str], embeddings: np.ndarray, *, top_k: int = 5) -> list[Any]:
        """1:N for already embedded probes."""
        from ..pipeline.operations import rank

        self._warn_calibrated_pipeline()
        out = rank(self.gallery(), labels, embeddings, top_k=top_k, threshold=self.search_threshold,
                   calibration=self.calibration)
        self._warn_no_threshold()
        return out

    def _warn_no_threshold(self) -> None:
        if self.search_threshold is None and self.calibration is None:
            warn(NO_THRESHOLD_WARNING, stacklevel=4)

    # -- curation --------------------------------------------------------------------------------
    def identities(self) -> list[Any]:
        return self.gallery().identities()

    def identity(self, name: str) -> Any:
        return self.gallery().identity(name)

    def rename(self, old: str, new: str) -> Any:
        with self._writing() as g:
            g.rename(old, new)
            return g.identity(new)

    def set_metadata(self, name: str, metadata: Mapping[str, Any]) -> Any:
        with self._writing() as g:
            g.set_metadata(name, metadata)
            return g.identity(name)

    def remove(self, name: str) -> int:
        """Delete an identity and its templates; returns how many templates were removed."""
        with self._writing() as g:
            return g.remove(name)

    def info(self) -> dict[str, Any]:
        """``verikit gallery info --format json``: counts, index, model, and the pipeline it is bound to."""
        from ..pipeline.settings import recorded_settings

        g = self.gallery()
        d = g.info()
        recorded = recorded_settings(g)
        d["pipeline"] = recorded.to_dict() if recorded is not None else None
        return d
