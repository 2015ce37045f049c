"""Which backend runs a loaded model's forward pass: eager PyTorch, or its ONNX export.

A model directory may hold, beside ``config.json`` and ``model.safetensors`` (which this module
never writes), an export ``model-<sha>.onnx`` and its record ``inference.json``, written by
:func:`verikit.models.optimize.optimize` (``verikit model optimize``). The record names the
backend that was measured faster on the machine that wrote it, the speed-up, the cosine against
eager, the versions, and two hashes: the model's fingerprint (config + weights) and the export's
SHA-256. :func:`attach` uses the export only when both still match, so templates never come from a
graph of other weights: a stale or altered export falls back to eager with a one-line warning.

``backend`` (the ``Embedder.load`` keyword, ``verikit --backend``, ``$VERIKIT_BACKEND``):

* ``auto`` (default): the recorded backend when it is usable here, else eager (said once).
* ``eager``: always PyTorch.
* ``onnx``: the export, or a one-line :class:`~verikit.errors.ModelError` saying why not.

:func:`run_network` is the one place a preprocessed batch goes through a model for inference
(:mod:`verikit.models.inference`, bulk enrollment); it uses the attached runner only while it is
valid: the model in eval mode, on the CPU, with the weights it was loaded with (``train()`` and
``load_state_dict`` detach it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, field_validator

from ..errors import ModelError, VerikitError
from ..schemas import FileSchema, Sha256, read_bytes, validate_json
from . import memory_format

log = logging.getLogger("verikit.models.backend")

RECORD_FILE = "inference.json"
RECORD_VERSION = 1
BACKENDS = ("auto", "eager", "onnx")
BACKEND_ENV = "VERIKIT_BACKEND"
MIN_COSINE = 0.9999          # an export whose templates differ more than this from eager is never used
ONNX_NAME = re.compile(r"model-[0-9a-f]{16}\.onnx")
MAX_ONNX_BYTES = 4 << 30     # a sanity bound (the largest timm backbones verikit trains export to < 1 GB)

_said: set[str] = set()      # messages already logged in this process (each is said once)


class Measurement(FileSchema):
    """How the recorded choice was measured: the same batch through both backends."""

    batch_size: Annotated[int, Field(ge=1)]
    eager_images_per_s: Annotated[float, Field(gt=0)]
    onnx_images_per_s: Annotated[float, Field(gt=0)]
    speedup: Annotated[float, Field(gt=0)]
    threads: Annotated[int, Field(ge=1)]
    sample_images: Annotated[int, Field(ge=1)]
    sample_source: Annotated[str, Field(min_length=1, max_length=4096)]
    min_cosine: Annotated[float, Field(ge=-1.0, le=1.0 + 1e-5)]
    max_abs_diff: Annotated[float, Field(ge=0)]


class InferenceRecord(FileSchema):
    """``inference.json``: which backend to use, measured, and the hashes tying the export to the weights."""

    format_version: Literal[RECORD_VERSION]
    backend: Literal["eager", "onnx"]
    model_fingerprint: Sha256
    onnx_file: str
    onnx_sha256: Sha256
    opset: Annotated[int, Field(ge=7, le=100)]
    measured: Measurement
    versions: dict[str, str]
    machine: dict[str, Any] = {}
    written_at: str = ""

    @field_validator("onnx_file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not ONNX_NAME.fullmatch(value):  # never a path: the export lives in the model folder
            raise ValueError("must be a file name model-<16 hex>.onnx in the model folder")
        return value


def default_backend() -> str:
    """``$VERIKIT_BACKEND`` when set (checked), else ``auto``."""
    return check_backend(os.environ.get(BACKEND_ENV) or "auto", f"${BACKEND_ENV}")


def check_backend(value: str, what: str = "backend") -> str:
    if value not in BACKENDS:
        raise ModelError(f"{what} must be one of {', '.join(BACKENDS)}, got {value!r}")
    return value


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_record(directory: str | Path) -> InferenceRecord | None:
    """The model folder's ``inference.json`` (None when there is none); malformed: ModelError."""
    path = Path(directory) / RECORD_FILE
    if not path.exists():
        return None
    raw = read_bytes(path, error=ModelError, what="inference record")
    return validate_json(InferenceRecord, raw, str(path), error=ModelError, what="inference record")


def say_once(message: str) -> None:
    """Log ``message`` as one warning line, the first time only (a server loads a model many times)."""
    if message not in _said:
        _said.add(message)
        log.warning("warning: %s", message)


def _onnx_runner(directory: Path, record: InferenceRecord, fingerprint: str) -> Any:
    """The runner for a verified export; ModelError saying why it cannot be used."""
    from .onnx_backend import OnnxRunner, missing

    if record.model_fingerprint != fingerprint:
        raise ModelError(f"the ONNX export in '{directory}' was made from other weights (stale: the model changed "
                         f"after `verikit model optimize`); rerun it")
    reason = missing()
    if reason:
        raise ModelError(reason)
    path = directory / record.onnx_file
    data = read_bytes(path, error=ModelError, what="ONNX export", limit=MAX_ONNX_BYTES)
    if sha256_hex(data) != record.onnx_sha256:
        raise ModelError(f"ONNX export '{path}' does not match the hash in {RECORD_FILE} (altered or damaged); "
                         f"rerun `verikit model optimize`")
    return OnnxRunner(data, source=f"ONNX export '{path}'")


def attach(model: Any, directory: str | Path, backend: str | None = None) -> str:
    """Give a freshly loaded ``model`` the backend ``backend`` asks for; returns the one in use.

    ``auto`` never fails: anything that keeps the recorded export from being used is said once and
    the model runs eagerly. ``onnx`` raises ModelError instead.
    """
    backend = default_backend() if backend is None else check_backend(backend)
    model._runner = None
    if backend == "eager":
        return "eager"
    directory = Path(directory)
    try:
        record = read_record(directory)
    except VerikitError as exc:
        if backend == "onnx":
            raise
        say_once(f"{exc}; embedding with eager PyTorch")
        return "eager"
    if backend == "auto" and (record is None or record.backend == "eager"):
        return "eager"
    if record is None:
        raise ModelError(f"'{directory}' has no ONNX export: run `verikit model optimize {directory}` first")
    device = next(model.parameters()).device
    if device.type != "cpu":  # the export runs on onnxruntime's CPU provider only
        if backend == "onnx":
            raise ModelError(f"the ONNX backend runs on the CPU; the model is on {device} (use --device cpu)")
        return "eager"
    try:
        runner = _onnx_runner(directory, record, model.fingerprint)
    except VerikitError as exc:
        if backend == "onnx":
            raise
        say_once(f"{exc}; embedding with eager PyTorch")
        return "eager"
    runner.fingerprint = model.fingerprint
    model._runner = runner
    return "onnx"


def active_runner(model: Any) -> Any:
    """The model's attached runner if it may be used now, else None."""
    runner = getattr(model, "_runner", None)
    if runner is None or model.training or getattr(model, "_fingerprint", None) != runner.fingerprint:
        return None
    return runner


def run_network(model: Any, batch: torch.Tensor) -> torch.Tensor:
    """Embeddings of a preprocessed batch: the model's verified ONNX export when attached and valid,
    else the model itself (on the CPU in channels-last layout: :mod:`.memory_format`). Call in eval
    mode under ``torch.inference_mode()``."""
    runner = active_runner(model)
    if runner is not None and batch.device.type == "cpu":
        return runner(batch)
    return memory_format.forward(model, batch)
