"""A benchmark run on disk: ``result.json`` (stable schema, see docs/evaluation.md) and the raw
scores beside it in ``scores.npz`` (no pickle). This module owns writing them and reading them
back with validation, so that ``verikit report`` can combine runs made at different times."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verikit.evaluate.benchmark import ScoreSet
from verikit.errors import DataError

from ..atomic import write_atomic
from ..schemas import read_bytes, validate, validate_json
from .schema import ResultFile

__all__ = ["RESULT_FILE", "SCORES_FILE", "Run", "write_run", "load_run"]

RESULT_FILE = "result.json"
SCORES_FILE = "scores.npz"


@dataclass(frozen=True, eq=False)
class Run:
    """One run: its result dict, where it was read from, and its scores when available."""

    result: dict[str, Any]
    source: Path | None
    scores: ScoreSet | None

    @property
    def name(self) -> str:
        return str(self.result["name"])


def _atomic_write(path: Path, text: str) -> None:
    write_atomic(path, text)


def write_run(directory: str | os.PathLike, result: dict[str, Any], scores: ScoreSet | None) -> Path:
    """Write ``result.json`` (and ``scores.npz`` when given) into ``directory``; return the JSON path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    doc = dict(result)
    if scores is not None:
        scores.save(out / SCORES_FILE)
        doc["scores_file"] = SCORES_FILE
    else:
        doc["scores_file"] = None
    path = out / RESULT_FILE
    _atomic_write(path, json.dumps(doc, indent=2, allow_nan=True) + "\n")
    return path


def validate_result(doc: Any, source: str) -> dict[str, Any]:
    """Check a parsed document against :class:`~verikit.report.schema.ResultFile`; one-line errors."""
    validate(ResultFile, doc, source, error=DataError, what="benchmark result")
    return doc


def load_run(path: str | os.PathLike) -> Run:
    """Read a ``result.json`` (or a directory holding one) and its scores file if present."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_FILE
    if not p.is_file():
        raise DataError(f"no benchmark result at '{p}'")
    raw = read_bytes(p, error=DataError, what="benchmark result")
    # Checked as JSON text by the schema (a NaN where a rate belongs is refused), then used as the
    # plain dict the report renders.
    validate_json(ResultFile, raw, str(p), error=DataError, what="benchmark result")
    doc = json.loads(raw.decode("utf-8-sig"))  # valid UTF-8 JSON: the schema just parsed it
    scores = None
    if doc.get("scores_file"):
        sp = p.parent / doc["scores_file"]
        if sp.is_file():
            scores = ScoreSet.load(sp)
    return Run(doc, p, scores)
