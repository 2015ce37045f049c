"""The resumable state of a training run, in ``OUT/checkpoint/`` after every completed epoch.

Layout (no pickle of arbitrary objects, per the design's rule for files users exchange):

- ``model.safetensors`` / ``best_model.safetensors``: the embedder's weights now / at the best
  validation EER (the latter only when ``keep == "best"``);
- ``state.pt``: optimizer, LR scheduler, loss (learned proxies) and AMP grad-scaler states. These
  are tensors and primitive containers only, so they load with ``torch.load(weights_only=True)``;
- ``progress.json``: the last completed epoch, the per-epoch history and the resolved config.

Random state is not stored: the loop re-seeds every epoch from ``(seed, epoch)`` (see
:func:`verikit.train.data.epoch_seed`), so a resumed epoch draws what the uninterrupted one did.
A checkpoint is written to a sibling folder and swapped in by renames, so a kill mid-write leaves
the previous epoch's checkpoint usable.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import torch
from pydantic import Field

from ..errors import DataError
from ..schemas import FileSchema, read_json

CHECKPOINT_DIR = "checkpoint"
_MODEL, _BEST, _STATE, _PROGRESS = "model.safetensors", "best_model.safetensors", "state.pt", "progress.json"

Figure = Annotated[float, Field(allow_inf_nan=True)]  # a diverged run's loss is NaN, and is history


class EpochRow(FileSchema):
    """One epoch of ``progress.json``'s history (the fields of :class:`verikit.train.loop.EpochRecord`)."""

    epoch: Annotated[int, Field(ge=1)]
    loss: Figure
    images_per_s: Figure
    val_eer: Optional[Figure]
    seconds: Figure
    lr: Optional[Figure] = None
    val_tar_at_far_1e_2: Optional[Figure] = None
    val_tar_at_far_1e_3: Optional[Figure] = None


class ProgressFile(FileSchema):
    """``progress.json``: the last completed epoch, the history, the resolved training config (a
    mapping checked by the training config's own schema when it is used)."""

    epoch: Annotated[int, Field(ge=0)]
    history: list[EpochRow] = []
    config: dict[str, Any] = {}


@dataclass
class Checkpoint:
    """Everything needed to continue after ``epoch``."""

    epoch: int
    model: dict[str, torch.Tensor]
    states: dict[str, Any]                    # optimizer / scheduler / loss / scaler state dicts
    progress: dict[str, Any] = field(default_factory=dict)   # history, best epoch and EER, config
    best_model: dict[str, torch.Tensor] | None = None


def checkpoint_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR


def save_checkpoint(out_dir: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``out_dir/checkpoint`` atomically (by directory renames)."""
    from safetensors.torch import save_file

    final = checkpoint_dir(out_dir)
    tmp, old = final.with_name(f".{CHECKPOINT_DIR}.tmp"), final.with_name(f".{CHECKPOINT_DIR}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_cpu(ckpt.model), str(tmp / _MODEL))
    if ckpt.best_model is not None:
        save_file(_cpu(ckpt.best_model), str(tmp / _BEST))
    torch.save(ckpt.states, tmp / _STATE)
    (tmp / _PROGRESS).write_text(json.dumps({"epoch": ckpt.epoch, **ckpt.progress}, indent=1) + "\n")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(out_dir: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """The checkpoint in ``out_dir``; a DataError that says what to do when there is none."""
    from safetensors.torch import load_file

    path = checkpoint_dir(out_dir)
    old = path.with_name(f".{CHECKPOINT_DIR}.old")
    if not (path / _PROGRESS).is_file() and (old / _PROGRESS).is_file():
        path = old  # killed between the two renames of save_checkpoint: the previous epoch is intact
    if not (path / _PROGRESS).is_file():
        raise DataError(f"no checkpoint to resume from in '{out_dir}' (expected {CHECKPOINT_DIR}/{_PROGRESS}); "
                        "run without --resume to start afresh")
    doc = read_json(ProgressFile, path / _PROGRESS, error=DataError, what="checkpoint progress")
    progress = {"history": [row.model_dump() for row in doc.history], "config": dict(doc.config)}
    try:
        model = load_file(str(path / _MODEL), device=str(device))
        best = load_file(str(path / _BEST), device=str(device)) if (path / _BEST).is_file() else None
        # weights_only: a checkpoint from someone else cannot run code when loaded.
        states = torch.load(path / _STATE, map_location=device, weights_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise DataError(f"checkpoint in '{path}' is unreadable: {str(exc).splitlines()[0]}") from exc
    return Checkpoint(epoch=doc.epoch, model=model, states=states, progress=progress, best_model=best)


def has_checkpoint(out_dir: str | Path) -> bool:
    path = checkpoint_dir(out_dir)
    return (path / _PROGRESS).is_file() or (path.with_name(f".{CHECKPOINT_DIR}.old") / _PROGRESS).is_file()


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory or are non-contiguous: give it plain CPU copies.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
