"""A benchmark run on disk: ``result.json`` (stable schema, see docs/evaluation.md) and the raw
scores beside it in ``scores.npz`` (no pickle). This module owns writing them and reading them
back with validation, so that ``verikit report`` can combine runs made at different times."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verikit.evaluate.benchmark import SCHEMA_VERSION, ScoreSet
from verikit.errors import DataError
from ..atomic import write_atomic

__all__ = ["RESULT_FILE", "SCORES_FILE", "Run", "write_run", "load_run"]

RESULT_FILE = "result.json"
SCORES_FILE = "scores.npz"
_REQUIRED = ("schema_version", "kind", "name", "model", "protocol", "verification", "identification")


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
    """Check the document is a benchmark result this verikit can read; one-line errors."""
    if not isinstance(doc, dict):
        raise DataError(f"'{source}' is not a verikit benchmark result (top level is not an object)")
    if doc.get("kind") != "verikit.benchmark":
        raise DataError(f"'{source}' is not a verikit benchmark result (kind {doc.get('kind')!r})")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"'{source}' has schema_version {doc.get('schema_version')!r}; "
                        f"this verikit reads {SCHEMA_VERSION}")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise DataError(f"'{source}' lacks {', '.join(missing)}")
    if doc["verification"] is None and doc["identification"] is None:
        raise DataError(f"'{source}' has neither verification nor identification results")
    return doc


def load_run(path: str | os.PathLike) -> Run:
    """Read a ``result.json`` (or a directory holding one) and its scores file if present."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULT_FILE
    if not p.is_file():
        raise DataError(f"no benchmark result at '{p}'")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"'{p}' is not valid JSON: {exc}") from None
    doc = validate_result(doc, str(p))
    scores = None
    if doc.get("scores_file"):
        sp = p.parent / doc["scores_file"]
        if sp.is_file():
            scores = ScoreSet.load(sp)
    return Run(doc, p, scores)
