"""One embedding per file, for protocols that score files (benchmarks, calibration, cohorts).

:class:`FileEmbedder` binds a model to the optional detector/segmenter pipeline its files go
through. The evaluation code (:mod:`verikit.evaluate.benchmark`) receives one and calls it, so
evaluation never imports the pipeline: the dependency points from the pipeline to evaluation.

A file in which the detector finds no face is a failure to acquire. It is listed in
``no_face`` (as well as among the failures, with its reason), so a benchmark can count it
honestly; with ``fallback`` set, such a file is embedded anyway, from a stand-in box that goes
through the rest of the pipeline like a detected one (segmenter, crop margin): ``"whole"`` the
whole image, ``"center"`` a square of half the shorter side at the image centre. Those files
are listed in ``fallback``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError, FaceNotFoundError, ImageError
from ..models.embedder import Embedder
from ..models.inference import EmbeddedFiles, embed_files, embed_images
from ..structures import Detections
from .decoding import decode_batch
from .detection import FaceCropper
from .segmentation import whole_image
from .settings import FacePolicy, PipelineSettings

FALLBACKS = ("whole", "center")


@dataclass(frozen=True)
class FileEmbeddings(EmbeddedFiles):
    """:class:`EmbeddedFiles` plus what the detector made of them: the files it found no face in
    (also among ``failures``, unless embedded by a fallback) and those embedded by a fallback."""

    no_face: list[Path] = field(default_factory=list)
    fallback: list[Path] = field(default_factory=list)


class _StandIn:
    """The box a fallback embeds a faceless image from, in a detector's clothes."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def detect(self, images: Sequence[Any]) -> list[Detections]:
        if self.mode == "whole":
            return [whole_image(im) for im in images]
        out = []
        for im in images:
            w, h = im.size
            half = min(w, h) / 4.0  # half of a side of half the shorter side
            box = [w / 2.0 - half, h / 2.0 - half, w / 2.0 + half, h / 2.0 + half]
            out.append(Detections(np.array([box], np.float32), [1.0], image_size=(w, h)))
        return out


def embed_files_through(model: Embedder, paths: Sequence[str | Path], pipeline: PipelineSettings, *,
                        batch_size: int = 64, progress: Callable[[int], None] | None = None,
                        fallback: str | None = None) -> FileEmbeddings:
    """One embedding per file through ``pipeline`` (its largest face when a detector runs).

    Files without a usable face are failures (and listed in ``no_face`` when no face was found),
    unless ``fallback`` (``"whole"`` or ``"center"``) embeds them from a stand-in box. Each batch's
    files are decoded on a few threads at once (:func:`verikit.pipeline.decoding.decode_batch`)."""
    if fallback is not None and fallback not in FALLBACKS:
        raise DataError(f"no-face fallback must be one of {', '.join(FALLBACKS)}, got {fallback!r}")
    cropper = FaceCropper(pipeline, FacePolicy("largest"))
    stand_in = None if fallback is None else \
        FaceCropper(pipeline, FacePolicy("largest"), detector=_StandIn(fallback), segmenter=cropper.segmenter)
    unique = list(dict.fromkeys(Path(p) for p in paths))
    done: dict[Path, np.ndarray] = {}
    failures: list[tuple[Path, str]] = []
    no_face: list[Path] = []
    substituted: list[Path] = []
    step = min(batch_size, 16)
    for start in range(0, len(unique), step):
        images, sources, crops, faceless = [], [], [], []
        batch = unique[start:start + step]
        for p, image in zip(batch, decode_batch(batch)):  # the batch's files decoded on a few threads at once
            if isinstance(image, ImageError):
                failures.append((p, str(image)))
            else:
                images.append(image)
                sources.append(p)
        for image, source, result in zip(images, sources, cropper.crops_of_images(images, sources)):
            if isinstance(result, FaceNotFoundError):
                no_face.append(source)
                faceless.append((image, source, result))
            elif isinstance(result, ImageError):
                failures.append((source, str(result)))
            else:
                crops.extend(result)
        if faceless and stand_in is not None:
            for got in stand_in.crops_of_images([f[0] for f in faceless], [f[1] for f in faceless]):
                crops.extend(got)  # a stand-in box always gives one crop
            substituted.extend(f[1] for f in faceless)
        else:
            failures.extend((source, str(exc)) for _, source, exc in faceless)
        for crop, vec in zip(crops, embed_images(model, [c.image for c in crops], batch_size=batch_size)):
            done[crop.source] = vec
        if progress is not None:
            progress(min(step, len(unique) - start))
    kept = [p for p in unique if p in done]
    emb = np.stack([done[p] for p in kept]) if kept else np.zeros((0, model.embedding_size), np.float32)
    order = {p: k for k, p in enumerate(unique)}
    return FileEmbeddings(kept, emb, sorted(failures, key=lambda f: order[f[0]]), no_face=no_face, fallback=substituted)


@dataclass(frozen=True)
class FileEmbedder:
    """A model plus the pipeline its files go through: what a benchmark or a calibration embeds with."""

    model: Embedder
    pipeline: PipelineSettings | None = None
    batch_size: int = 64
    fallback: str | None = None  # "whole" / "center": how a file with no face is embedded (None: it is not)

    def __post_init__(self) -> None:
        if self.fallback is not None and self.fallback not in FALLBACKS:
            raise DataError(f"no-face fallback must be one of {', '.join(FALLBACKS)}, got {self.fallback!r}")

    @property
    def fingerprint(self) -> str:
        return self.model.fingerprint

    @property
    def cache_key(self) -> str:
        """What cached embeddings belong to: the model, plus the detector/segmenter files went through."""
        if self.pipeline is None:
            return self.model.fingerprint
        # with_digests: retrained detector/segmenter weights at the same path invalidate the cache
        return hashlib.sha256(f"{self.model.fingerprint}|{self.pipeline.with_digests().to_meta()}".encode()).hexdigest()

    def pipeline_record(self) -> dict[str, Any] | None:
        """The pipeline as results record it (with its weights' digests), or None for whole images."""
        return self.pipeline.with_digests().to_dict() if self.pipeline is not None else None

    @property
    def measure(self) -> str:
        """The similarity measure the model scores with (its thresholds are in these units)."""
        return self.model.config.similarity

    def embed(self, paths: Sequence[str | Path], progress: Callable[[int], None] | None = None) -> EmbeddedFiles:
        if self.pipeline is None:
            return embed_files(self.model, paths, batch_size=self.batch_size, progress=progress)
        return embed_files_through(self.model, paths, self.pipeline, batch_size=self.batch_size, progress=progress,
                                   fallback=self.fallback)
