"""Running a benchmark protocol through a file embedder: the glue between protocols, the model and
the evaluation.

The caller supplies the :class:`FileEmbedding` (in verikit, :class:`verikit.pipeline.files.FileEmbedder`:
a model and the detector/segmenter its files go through), so this module never imports a model
or the pipeline. Each unique file is embedded once (through the optional :class:`EmbeddingCache`), pairs are
scored by cosine, optionally normalised against a cohort, and evaluated. The result is a
JSON-ready dict (see ``docs/evaluation.md`` for the schema) plus a :class:`ScoreSet` that keeps
the raw scores and their subjects for paired comparisons between runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from verikit.errors import DataError

from ..schemas import read_npz, validate
from .embedding_cache import EmbeddingCache
from .evaluation import DEFAULT_FARS, evaluate_verification, fold_accuracy, pair_scores
from .protocols import IdentificationProtocol, PairsProtocol
from .schema import ScoresFile

__all__ = ["SCHEMA_VERSION", "FileEmbedding", "ScoreSet", "Embedded", "embed_unique", "run_pairs", "run_identification"]

SCHEMA_VERSION = 1


class FileEmbedding(Protocol):
    """What a benchmark embeds files with: one L2-normalised embedding per readable file."""

    fingerprint: str  # the model's, recorded in results
    cache_key: str    # what cached embeddings belong to (model plus pipeline)

    def pipeline_record(self) -> dict[str, Any] | None: ...

    def embed(self, paths: Sequence[Path], progress: Callable[[int], None] | None = None) -> Any:
        """Returns an object with ``paths``, ``embeddings`` and ``failures`` (``EmbeddedFiles``)."""


@dataclass(frozen=True, eq=False)
class ScoreSet:
    """Scores of one run with their subjects (codes into ``subjects``), saved as ``scores.npz``."""

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_subject: np.ndarray
    impostor_subject_a: np.ndarray
    impostor_subject_b: np.ndarray
    subjects: tuple[str, ...]
    protocol_sha256: str

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        np.savez_compressed(path, genuine=self.genuine, impostor=self.impostor,
                            genuine_subject=self.genuine_subject, impostor_subject_a=self.impostor_subject_a,
                            impostor_subject_b=self.impostor_subject_b, subjects=np.array(self.subjects, dtype=str),
                            protocol_sha256=np.array(self.protocol_sha256))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScoreSet":
        what = "score file"
        doc = validate(ScoresFile, read_npz(path, error=DataError, what=what), str(path), error=DataError, what=what)
        return cls(doc.genuine, doc.impostor, doc.genuine_subject, doc.impostor_subject_a, doc.impostor_subject_b,
                   tuple(str(s) for s in doc.subjects), doc.protocol_sha256)


@dataclass(frozen=True)
class Embedded:
    """Embeddings aligned with the input files; ``ok[k]`` is false for files that failed to load."""

    embeddings: np.ndarray
    ok: np.ndarray
    failures: list[tuple[Path, str]]
    cached: int


def embed_unique(embedder: FileEmbedding, files: Sequence[Path], *, cache_dir: str | os.PathLike | None = None,
                 progress: Callable[[int], None] | None = None) -> Embedded:
    """Embed each file once (cached ones are read from ``cache_dir``); failures are reported.

    Through a pipeline with a detector, a file without a face is a failure.
    """
    files = [Path(f) for f in files]
    cache = EmbeddingCache(cache_dir, embedder.cache_key) if cache_dir is not None else None
    found, missing = cache.lookup(files) if cache else ({}, list(range(len(files))))
    if progress and found:
        progress(len(found))
    failures: list[tuple[Path, str]] = []
    if missing:
        positions: dict[Path, list[int]] = {}
        for k in missing:
            positions.setdefault(files[k], []).append(k)
        out = embedder.embed(list(positions), progress=progress)
        for p, e in zip(out.paths, out.embeddings):
            for k in positions[p]:
                found[k] = e
        failures = list(out.failures)
        if cache is not None:
            cache.add(out.paths, out.embeddings)
            cache.save()
    dim = next(iter(found.values())).shape[0] if found else 1
    emb = np.zeros((len(files), dim), np.float32)
    ok = np.zeros(len(files), bool)
    for k, e in found.items():
        emb[k], ok[k] = e, True
    return Embedded(emb, ok, failures, len(files) - len(missing))


def _header(embedder: FileEmbedding, model_path: str | None, name: str | None) -> dict[str, Any]:
    from verikit import __version__

    return {"schema_version": SCHEMA_VERSION, "kind": "verikit.benchmark",
            "name": name or (Path(model_path).name if model_path else "run"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "verikit_version": __version__,
            "model": {"path": model_path, "fingerprint": embedder.fingerprint},
            "pipeline": embedder.pipeline_record()}


def _cohort(embedder: FileEmbedding, cohort_files: Sequence[Path] | None, cache_dir) -> np.ndarray:
    if not cohort_files:
        raise DataError("score normalisation needs a cohort: pass --cohort DIR (identities not under test)")
    emb = embed_unique(embedder, cohort_files, cache_dir=cache_dir)
    if emb.ok.sum() < 2:
        raise DataError(f"the cohort (--cohort) has fewer than two usable images ({int(emb.ok.sum())} of "
                        f"{len(cohort_files)}, e.g. '{cohort_files[0]}')")
    return emb.embeddings[emb.ok]


def run_pairs(embedder: FileEmbedding, protocol: PairsProtocol, *, model_path: str | None = None, name: str | None = None,
              cache_dir: str | os.PathLike | None = None, norm: str | None = None,
              cohort_files: Sequence[Path] | None = None, top_k: int | None = None,
              fars: Sequence[float] = DEFAULT_FARS, n_boot: int = 1000, seed: int = 0,
              progress: Callable[[int], None] | None = None) -> tuple[dict[str, Any], ScoreSet]:
    """Embed, score, (normalise), evaluate a pairs protocol. Pairs with an unreadable file (or,
    through a ``pipeline`` with a detector, a file without a face) are dropped and listed under
    ``"skipped"``."""
    from ..calibrate.normalization import normalize_pairs

    embedded = embed_unique(embedder, protocol.files, cache_dir=cache_dir, progress=progress)
    usable = embedded.ok[protocol.a] & embedded.ok[protocol.b]
    proto = protocol.subset(usable) if not usable.all() else protocol
    scores = pair_scores(embedded.embeddings, proto.a, proto.b)
    norm_info = None
    if norm:
        cohort = _cohort(embedder, cohort_files, cache_dir)
        k = min(top_k or 300, cohort.shape[0]) if norm == "as" else None
        scores = normalize_pairs(scores, embedded.embeddings, proto.a, proto.b, cohort, norm, k).astype(np.float32)
        norm_info = {"method": norm, "cohort_size": int(cohort.shape[0]), "top_k": k}
    g = proto.genuine
    sa, sb = proto.subject_of[proto.a], proto.subject_of[proto.b]
    score_set = ScoreSet(scores[g], scores[~g], sa[g], sa[~g], sb[~g], proto.subjects, protocol.digest())
    result = _header(embedder, model_path, name)
    result["protocol"] = protocol.describe()
    result["normalization"] = norm_info
    result["embedding"] = {"files": len(protocol.files), "from_cache": embedded.cached,
                           "failed": len(embedded.failures)}
    result["skipped"] = {"files": [{"path": str(p), "reason": r} for p, r in embedded.failures],
                         "pairs": int((~usable).sum())}
    result["verification"] = evaluate_verification(score_set.genuine, score_set.impostor, score_set.genuine_subject,
                                                   (score_set.impostor_subject_a, score_set.impostor_subject_b),
                                                   fars=fars, n_boot=n_boot, seed=seed)
    result["folds"] = fold_accuracy(scores, g, proto.fold) if proto.fold is not None else None
    result["identification"] = None
    return result, score_set


def run_identification(embedder: FileEmbedding, protocol: IdentificationProtocol, *, model_path: str | None = None,
                       name: str | None = None, cache_dir: str | os.PathLike | None = None, max_rank: int = 20,
                       fpirs: Sequence[float] = (1e-1, 1e-2),
                       progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Closed-set CMC over mated probes and open-set DIR at each FPIR (when there are non-mated probes)."""
    from .metrics import cmc, dir_at_fpir, mean_average_precision, wilson_interval

    files = [p for p, _ in protocol.gallery] + [p for p, _ in protocol.probes]
    embedded = embed_unique(embedder, files, cache_dir=cache_dir, progress=progress)
    n_g = len(protocol.gallery)
    g_ok, p_ok = embedded.ok[:n_g], embedded.ok[n_g:]
    gallery = embedded.embeddings[:n_g][g_ok]
    g_ids = [i for (_, i), k in zip(protocol.gallery, g_ok) if k]
    probes = embedded.embeddings[n_g:][p_ok]
    p_ids = [i for (_, i), k in zip(protocol.probes, p_ok) if k]
    if not g_ids or not p_ids:
        source = protocol.info.get("source")
        raise DataError(f"identification protocol{f' {source!r}' if source else ''} has no usable "
                        f"{'gallery' if not g_ids else 'probe'} image ({len(embedded.failures)} unreadable)")
    sim = probes @ gallery.T
    known = set(g_ids)
    mated = np.array([i in known for i in p_ids])
    ident: dict[str, Any] = {"n_gallery_templates": len(g_ids), "n_gallery_identities": len(known),
                             "n_mated": int(mated.sum()), "n_non_mated": int((~mated).sum())}
    if mated.any():
        rank_max = min(max_rank, len(known))
        curve = cmc(sim[mated], [i for i, m in zip(p_ids, mated) if m], g_ids, max_rank=rank_max)
        hits = int(round(curve[0] * mated.sum()))
        ident["cmc"] = curve.tolist()
        ident["rank1"] = float(curve[0])
        ident["rank1_interval"] = list(wilson_interval(hits, int(mated.sum())))
        ident["map"] = mean_average_precision(sim[mated], [i for i, m in zip(p_ids, mated) if m], g_ids)
    if (~mated).any() and mated.any():
        rows = []
        for f in fpirs:
            r = dir_at_fpir(sim, p_ids, g_ids, f)
            rows.append({"fpir": f, "threshold": r.threshold, "dir": r.dir, "measured_fpir": r.fpir,
                         "supported": bool(f * r.n_non_mated >= 30)})
        ident["dir_at_fpir"] = rows
    result = _header(embedder, model_path, name)
    result["protocol"] = {**protocol.info, "gallery_files": n_g, "probe_files": len(protocol.probes)}
    result["normalization"] = None
    result["embedding"] = {"files": len(files), "from_cache": embedded.cached, "failed": len(embedded.failures)}
    result["skipped"] = {"files": [{"path": str(p), "reason": r} for p, r in embedded.failures], "pairs": 0}
    result["verification"] = None
    result["folds"] = None
    result["identification"] = ident
    return result
