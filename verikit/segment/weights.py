"""A trained segmenter on disk: ``segmenter.safetensors`` (the network's state dict) beside
``segmenter.json`` (spec, the factory options that rebuild the network, training summary).

No pickle: weights are safetensors, or a torch file read with ``weights_only=True``. Writes go
through :func:`verikit.atomic.write_atomic`, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from ..atomic import write_atomic
from ..errors import PluginError
from ..schemas import FileSchema, read_json
from ..models.state_dicts import load_state_dict_file
from . import SIDECAR_FILE

FORMAT = "verikit-segmenter/1"


class SidecarFile(FileSchema):
    """The declared schema of ``segmenter.json`` (rules and one-line errors: :mod:`verikit.schemas`)."""

    format: Literal[FORMAT]
    spec: Annotated[str, Field(min_length=1, max_length=200)]
    options: dict[str, Any]   # the factory's JSON options; the factory checks their values
    training: dict[str, Any] = {}   # summary: informational


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True,
                 ignore_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``path`` into ``model`` (see :func:`verikit.models.state_dicts.load_state_dict_file`)."""
    return load_state_dict_file(model, path, what="segmenter", hint="check the architecture, encoder and num_classes",
                                strict=strict, ignore_prefixes=ignore_prefixes)


def state_dict_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in state.items()})


def save_weights(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    return write_atomic(path, state_dict_bytes(state))


def write_sidecar(folder: str | Path, spec: str, options: dict[str, Any], training: dict[str, Any]) -> Path:
    data = {"format": FORMAT, "spec": spec, "options": options, "training": training}
    return write_atomic(Path(folder) / SIDECAR_FILE, json.dumps(data, indent=2) + "\n")


def read_sidecar(weights: str | None) -> dict[str, Any]:
    """The ``segmenter.json`` beside a local weights file (``{}`` when there is none)."""
    if not weights:
        return {}
    path = Path(weights).with_name(SIDECAR_FILE)
    if not path.is_file():
        return {}
    doc = read_json(SidecarFile, path, error=PluginError, what="segmenter description")
    return doc.model_dump()
