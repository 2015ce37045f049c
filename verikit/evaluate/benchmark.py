"""Running a benchmark protocol through a file embedder: the glue between protocols, the model and
the evaluation.

The caller supplies the :class:`FileEmbedding` (in verikit, :class:`verikit.pipeline.files.FileEmbedder`:
a model and the detector/segmenter its files go through), so this module never imports a model
or the pipeline. Each unique file is embedded once (through the optional :class:`EmbeddingCache`,
written chunk by chunk so an interrupted run resumes), pairs are scored in the model's measure
(cosine), optionally normalised against a cohort, and evaluated. The result is a JSON-ready dict
(see ``docs/evaluation.md`` for the schema) plus a :class:`ScoreSet` that keeps the raw scores
and their subjects for paired comparisons between runs.

Inputs that go wrong are counted, never silently dropped: an unreadable file is *skipped*
(its pairs dropped; ``"skipped"``), and a file in which the detector found no face is a
*failure to acquire* (``"acquisition"``, ISO/IEC 19795-1): by default its comparisons stay in
every figure as non-matches (``--on-no-face nonmatch``), or it is embedded from the whole image
or a centre crop (``whole`` / ``center``), or, only when asked, dropped (``drop``).
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
from .embedding_cache import EmbeddingCache, Lookup
from .evaluation import DEFAULT_FARS, evaluate_verification, fold_accuracy, pair_scores
from .protocols import IdentificationProtocol, PairsProtocol
from .schema import ScoresFile

__all__ = ["SCHEMA_VERSION", "CHUNK_FILES", "ON_NO_FACE", "FileEmbedding", "ScoreSet", "Embedded", "embed_unique",
           "run_pairs", "run_identification"]

SCHEMA_VERSION = 1


class FileEmbedding(Protocol):
    """What a benchmark embeds files with: one L2-normalised embedding per readable file."""

    fingerprint: str  # the model's, recorded in results
    cache_key: str    # what cached embeddings belong to (model plus pipeline)
    # Optional attributes, read with getattr: ``fallback`` ("whole" / "center" / None: how a file with
    # no face is embedded) and ``measure`` (the similarity spec scores are in; default cosine).

    def pipeline_record(self) -> dict[str, Any] | None: ...

    def embed(self, paths: Sequence[Path], progress: Callable[[int], None] | None = None) -> Any:
        """Returns an object with ``paths``, ``embeddings`` and ``failures`` (``EmbeddedFiles``), and
        optionally ``no_face`` (failed files in which no face was found) and ``fallback`` (files
        embedded by the fallback)."""


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


#: Files embedded between two writes of the cache: a killed run loses at most this many.
CHUNK_FILES = 512

ON_NO_FACE = ("nonmatch", "whole", "center", "drop")
_SCORED_AS = {"nonmatch": "non-match: a genuine pair is a false non-match, an impostor pair a correct rejection",
              "whole": "embedded from the whole image", "center": "embedded from a centre crop",
              "drop": "DROPPED from every figure (--on-no-face drop)"}


@dataclass(frozen=True)
class Embedded:
    """Embeddings aligned with the input files.

    ``ok[k]``: file ``k`` has an embedding (of its face, or made by the no-face fallback:
    ``fallback[k]``); ``no_face[k]``: the detector found no face in it (a failure to acquire);
    ``failures``: the files that could not be read, with reasons.
    """

    embeddings: np.ndarray
    ok: np.ndarray
    failures: list[tuple[Path, str]]
    cached: int
    no_face: np.ndarray | None = None
    fallback: np.ndarray | None = None
    no_face_reasons: dict[Path, str] | None = None


def embed_unique(embedder: FileEmbedding, files: Sequence[Path], *, cache_dir: str | os.PathLike | None = None,
                 progress: Callable[[int], None] | None = None, chunk_size: int = CHUNK_FILES) -> Embedded:
    """Embed each file once (cached ones are read from ``cache_dir``); failures are reported.

    Files are embedded ``chunk_size`` at a time and the cache is written after each chunk, so an
    interrupted run keeps what it did. Through a pipeline with a detector, a file without a face
    is marked ``no_face`` (and embedded when the embedder has a ``fallback``).
    """
    files = [Path(f) for f in files]
    fallback = getattr(embedder, "fallback", None)
    cache = EmbeddingCache(cache_dir, embedder.cache_key) if cache_dir is not None else None
    look = cache.lookup(files, fallback) if cache else Lookup(missing=list(range(len(files))))
    found, no_face, substituted = dict(look.found), set(look.no_face) | set(look.fallback), set(look.fallback)
    reasons: dict[Path, str] = {files[k]: f"no face found in '{files[k]}'" for k in no_face}
    if progress and (found or look.no_face):
        progress(len(found) + len(look.no_face))
    failures: list[tuple[Path, str]] = []
    positions: dict[Path, list[int]] = {}
    for k in look.missing:
        positions.setdefault(files[k], []).append(k)
    todo = list(positions)
    for start in range(0, len(todo), max(1, chunk_size)):
        out = embedder.embed(todo[start:start + chunk_size], progress=progress)
        faceless = set(getattr(out, "no_face", ()))
        made_up = set(getattr(out, "fallback", ()))
        for p, e in zip(out.paths, out.embeddings):
            for k in positions[p]:
                found[k] = e
                if p in made_up:
                    substituted.add(k)
        for p in faceless:
            no_face.update(positions[p])
            reasons[p] = f"no face found in '{p}'"
        failures.extend((p, r) for p, r in out.failures if p not in faceless)
        if cache is not None:
            real = [j for j, p in enumerate(out.paths) if p not in made_up]
            fake = [j for j, p in enumerate(out.paths) if p in made_up]
            cache.add([out.paths[j] for j in real], out.embeddings[real])
            if fake:
                cache.add([out.paths[j] for j in fake], out.embeddings[fake], fallback=fallback)
            cache.add_no_face([p for p in faceless if p not in made_up])
            cache.flush()
    if cache is not None:
        cache.save()
    dim = next(iter(found.values())).shape[0] if found else 1
    emb = np.zeros((len(files), dim), np.float32)
    ok = np.zeros(len(files), bool)
    for k, e in found.items():
        emb[k], ok[k] = e, True
    mask = np.zeros(len(files), bool)
    mask[list(no_face)] = True
    sub = np.zeros(len(files), bool)
    sub[list(substituted)] = True
    return Embedded(emb, ok, failures, len(files) - len(look.missing), mask, sub, reasons)


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
    usable = emb.ok & ~emb.fallback  # a cohort is made of faces, never of stand-in crops
    if usable.sum() < 2:
        raise DataError(f"the cohort (--cohort) has fewer than two usable images ({int(usable.sum())} of "
                        f"{len(cohort_files)}, e.g. '{cohort_files[0]}')")
    return emb.embeddings[usable]


def _check_mode(embedder: FileEmbedding, on_no_face: str) -> None:
    if on_no_face not in ON_NO_FACE:
        raise DataError(f"--on-no-face must be one of {', '.join(ON_NO_FACE)}, got {on_no_face!r}")
    fallback = getattr(embedder, "fallback", None)
    if fallback != (on_no_face if on_no_face in ("whole", "center") else None):
        raise DataError(f"the embedder's no-face fallback ({fallback}) does not match --on-no-face {on_no_face}")


def _skipped(embedded: Embedded, on_no_face: str, dropped_pairs: int) -> dict[str, Any]:
    """``skipped``: inputs left out of every figure (unreadable files; no-face ones under ``drop``)."""
    files = [{"path": str(p), "reason": r} for p, r in embedded.failures]
    if on_no_face == "drop":
        files += [{"path": str(p), "reason": f"{r} (dropped: --on-no-face drop)"}
                  for p, r in (embedded.no_face_reasons or {}).items()]
    reasons: dict[str, int] = {}
    for f in files:
        kind = "no face found (dropped)" if f["reason"].startswith("no face found") else "unreadable"
        reasons[kind] = reasons.get(kind, 0) + 1
    return {"files": files, "pairs": int(dropped_pairs), "reasons": reasons}


def _acquisition(embedder: FileEmbedding, embedded: Embedded, on_no_face: str, fta_pairs: dict[str, int] | None
                 ) -> dict[str, Any]:
    """``acquisition``: failures to acquire (no face found), their rate, and how they were scored.
    Without a detector nothing can fail to acquire, and the rate is ``None``, not 0."""
    from .metrics import wilson_interval

    detector = (embedder.pipeline_record() or {}).get("detector")
    readable = int(np.count_nonzero(embedded.ok | embedded.no_face))
    n_fta = int(np.count_nonzero(embedded.no_face))
    measured = detector is not None and readable > 0
    return {"detector": detector, "on_no_face": on_no_face, "scored_as": _SCORED_AS[on_no_face],
            "files": readable, "no_face": n_fta, "fta_rate": n_fta / readable if measured else None,
            "fta_interval": list(wilson_interval(n_fta, readable)) if measured else None,
            "fallback": int(np.count_nonzero(embedded.fallback)),
            "pairs": fta_pairs,
            "no_face_files": sorted(str(p) for p in (embedded.no_face_reasons or {}))}


def _scores_in(measure: str | None, embeddings: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pair scores in the model's own measure (cosine unless it records another)."""
    if measure is None or measure.split(":")[0] in ("cosine", "dot"):
        return pair_scores(embeddings, a, b)
    from verikit.similarity import parse_measure

    m = parse_measure(measure)
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), 1 << 16):
        out[s:s + (1 << 16)] = m.pair_scores(embeddings[a[s:s + (1 << 16)]], embeddings[b[s:s + (1 << 16)]])
    return out


def run_pairs(embedder: FileEmbedding, protocol: PairsProtocol, *, model_path: str | None = None, name: str | None = None,
              cache_dir: str | os.PathLike | None = None, norm: str | None = None,
              cohort_files: Sequence[Path] | None = None, cohort: np.ndarray | None = None, top_k: int | None = None,
              fars: Sequence[float] = DEFAULT_FARS, n_boot: int = 1000, seed: int = 0,
              progress: Callable[[int], None] | None = None, on_no_face: str = "nonmatch",
              operating_points: Sequence[dict[str, Any]] = (), chunk_size: int = CHUNK_FILES
              ) -> tuple[dict[str, Any], ScoreSet]:
    """Embed, score, (normalise), evaluate a pairs protocol.

    Pairs with an unreadable file are dropped and listed under ``"skipped"``. A file in which the
    detector found no face is a failure to acquire (``"acquisition"``): by default
    (``on_no_face="nonmatch"``) its pairs stay in and are scored
    :data:`~verikit.evaluate.metrics.UNSCORED` (never a match); ``"whole"`` / ``"center"`` mean the
    embedder embedded it from a stand-in box; ``"drop"`` drops its pairs like unreadable ones.
    Scores are in the embedder's ``measure`` (cosine when it has none). ``cohort`` (embeddings)
    replaces ``cohort_files`` when the cohort is already embedded (a calibration's).
    """
    from ..calibrate.normalization import normalize_pairs
    from .metrics import UNSCORED

    _check_mode(embedder, on_no_face)
    measure = getattr(embedder, "measure", None)
    if norm and measure is not None and measure.split(":")[0] not in ("cosine", "dot"):
        raise DataError(f"score normalisation needs a cosine model; this one scores with {measure!r}")
    embedded = embed_unique(embedder, protocol.files, cache_dir=cache_dir, progress=progress, chunk_size=chunk_size)
    readable = embedded.ok | embedded.no_face
    usable = embedded.ok if on_no_face == "drop" else readable
    keep = usable[protocol.a] & usable[protocol.b]
    proto = protocol.subset(keep) if not keep.all() else protocol
    scored = embedded.ok[proto.a] & embedded.ok[proto.b]
    if not scored.any():
        raise DataError("no pair could be scored: every pair has a file that could not be read or has no face")
    scores = np.full(len(proto), UNSCORED, np.float32)
    scores[scored] = _scores_in(measure, embedded.embeddings, proto.a[scored], proto.b[scored])
    norm_info = None
    if norm:
        cohort = _cohort(embedder, cohort_files, cache_dir) if cohort is None else np.asarray(cohort, np.float32)
        k = min(top_k or 300, cohort.shape[0]) if norm == "as" else None
        scores[scored] = normalize_pairs(scores[scored], embedded.embeddings, proto.a[scored], proto.b[scored],
                                         cohort, norm, k).astype(np.float32)
        norm_info = {"method": norm, "cohort_size": int(cohort.shape[0]), "top_k": k}
    g = proto.genuine
    sa, sb = proto.subject_of[proto.a], proto.subject_of[proto.b]
    score_set = ScoreSet(scores[g], scores[~g], sa[g], sa[~g], sb[~g], proto.subjects, protocol.digest())
    result = _header(embedder, model_path, name)
    result["protocol"] = protocol.describe()
    result["normalization"] = norm_info
    result["measure"] = measure or "cosine"
    result["embedding"] = {"files": len(protocol.files), "from_cache": embedded.cached,
                           "failed": len(embedded.failures)}
    result["skipped"] = _skipped(embedded, on_no_face, int((~keep).sum()))
    fta = {"genuine": int(np.count_nonzero(g & ~scored)), "impostor": int(np.count_nonzero(~g & ~scored))}
    if on_no_face != "nonmatch":  # with a fallback or dropped, no pair is left unscored: count those touched
        nf = embedded.no_face
        touched = nf[protocol.a] | nf[protocol.b]
        fta = {"genuine": int(np.count_nonzero(touched & protocol.genuine)),
               "impostor": int(np.count_nonzero(touched & ~protocol.genuine))}
    result["acquisition"] = _acquisition(embedder, embedded, on_no_face, fta)
    result["verification"] = evaluate_verification(score_set.genuine, score_set.impostor, score_set.genuine_subject,
                                                   (score_set.impostor_subject_a, score_set.impostor_subject_b),
                                                   fars=fars, n_boot=n_boot, seed=seed,
                                                   subjects_note=protocol.info.get("subject_note"),
                                                   operating_points=operating_points)
    result["folds"] = fold_accuracy(scores, g, proto.fold) if proto.fold is not None else None
    result["identification"] = None
    return result, score_set


def run_identification(embedder: FileEmbedding, protocol: IdentificationProtocol, *, model_path: str | None = None,
                       name: str | None = None, cache_dir: str | os.PathLike | None = None, max_rank: int = 20,
                       fpirs: Sequence[float] = (1e-1, 1e-2), progress: Callable[[int], None] | None = None,
                       on_no_face: str = "nonmatch", chunk_size: int = CHUNK_FILES) -> dict[str, Any]:
    """Closed-set CMC over mated probes and open-set DIR at each FPIR (when there are non-mated
    probes). Failures to acquire count as :mod:`verikit.evaluate.identification` describes;
    unreadable files (and, with ``on_no_face="drop"``, faceless ones) are dropped and listed."""
    from .identification import evaluate_identification

    _check_mode(embedder, on_no_face)
    files = [p for p, _ in protocol.gallery] + [p for p, _ in protocol.probes]
    embedded = embed_unique(embedder, files, cache_dir=cache_dir, progress=progress, chunk_size=chunk_size)
    n_g = len(protocol.gallery)
    counted = embedded.ok if on_no_face == "drop" else embedded.ok | embedded.no_face
    g_ok, p_ok = embedded.ok[:n_g], embedded.ok[n_g:]
    enrolled = {i for (_, i), k in zip(protocol.gallery, counted[:n_g]) if k}
    g_ids = [i for (_, i), k in zip(protocol.gallery, g_ok) if k]
    p_ids = [i for (_, i), k in zip(protocol.probes, p_ok) if k]
    unscored = [i for (_, i), c, k in zip(protocol.probes, counted[n_g:], p_ok) if c and not k]
    if not g_ids or not (p_ids or unscored):
        source = protocol.info.get("source")
        raise DataError(f"identification protocol{f' {source!r}' if source else ''} has no usable "
                        f"{'gallery' if not g_ids else 'probe'} image ({len(embedded.failures)} unreadable)")
    measure = getattr(embedder, "measure", None)
    gallery, probes = embedded.embeddings[:n_g][g_ok], embedded.embeddings[n_g:][p_ok]
    if measure is None or measure.split(":")[0] in ("cosine", "dot"):
        sim = probes @ gallery.T
    else:
        from verikit.similarity import parse_measure

        sim = parse_measure(measure).scores(probes, gallery)
    ident = evaluate_identification(sim, p_ids, g_ids, enrolled=enrolled, unscored_probes=unscored,
                                    max_rank=max_rank, fpirs=fpirs)
    result = _header(embedder, model_path, name)
    result["protocol"] = {**protocol.info, "gallery_files": n_g, "probe_files": len(protocol.probes)}
    result["normalization"] = None
    result["measure"] = measure or "cosine"
    result["embedding"] = {"files": len(files), "from_cache": embedded.cached, "failed": len(embedded.failures)}
    dropped = int(np.count_nonzero(~counted[n_g:]))
    result["skipped"] = _skipped(embedded, on_no_face, 0)
    result["skipped"]["probes"] = dropped
    result["skipped"]["gallery"] = int(np.count_nonzero(~counted[:n_g]))
    nf = embedded.no_face
    result["acquisition"] = _acquisition(embedder, embedded, on_no_face, None)
    result["acquisition"]["gallery"] = int(np.count_nonzero(nf[:n_g]))
    result["acquisition"]["probes"] = int(np.count_nonzero(nf[n_g:]))
    result["verification"] = None
    result["folds"] = None
    result["identification"] = ident
    return result
