"""One embedding per file, for protocols that score files (benchmarks, calibration, cohorts).

:class:`FileEmbedder` binds a model to the optional detector/segmenter pipeline its files go
through. The evaluation code (:mod:`verikit.evaluate.benchmark`) receives one and calls it, so
evaluation never imports the pipeline: the dependency points from the pipeline to evaluation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..models.embedder import Embedder
from ..models.inference import EmbeddedFiles, embed_files, embed_images
from .detection import FaceCropper
from .settings import FacePolicy, PipelineSettings


def embed_files_through(model: Embedder, paths: Sequence[str | Path], pipeline: PipelineSettings, *,
                        batch_size: int = 64, progress: Callable[[int], None] | None = None) -> EmbeddedFiles:
    """One embedding per file through ``pipeline`` (its largest face when a detector runs).
    Files without a usable face are failures."""
    cropper = FaceCropper(pipeline, FacePolicy("largest"))
    unique = list(dict.fromkeys(Path(p) for p in paths))
    done: dict[Path, np.ndarray] = {}
    failures: list[tuple[Path, str]] = []
    for crops, bad in cropper.crops_of_files(unique, batch_size=min(batch_size, 16)):
        failures.extend(bad)
        for crop, vec in zip(crops, embed_images(model, [c.image for c in crops], batch_size=batch_size)):
            done[crop.source] = vec
        if progress is not None:
            progress(len(crops) + len(bad))
    kept = [p for p in unique if p in done]
    emb = np.stack([done[p] for p in kept]) if kept else np.zeros((0, model.embedding_size), np.float32)
    return EmbeddedFiles(kept, emb, failures)


@dataclass(frozen=True)
class FileEmbedder:
    """A model plus the pipeline its files go through: what a benchmark or a calibration embeds with."""

    model: Embedder
    pipeline: PipelineSettings | None = None
    batch_size: int = 64

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

    def embed(self, paths: Sequence[str | Path], progress: Callable[[int], None] | None = None) -> EmbeddedFiles:
        if self.pipeline is None:
            return embed_files(self.model, paths, batch_size=self.batch_size, progress=progress)
        return embed_files_through(self.model, paths, self.pipeline, batch_size=self.batch_size, progress=progress)
