"""A trained segmenter on disk: ``segmenter.safetensors`` (the network's state dict) beside
``segmenter.json`` (spec, the factory options that rebuild the network, training summary).

No pickle: weights are safetensors, or a torch file read with ``weights_only=True``. Writes go
through :func:`verikit.atomic.write_atomic`, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomic
from ..errors import PluginError
from . import SIDECAR_FILE

FORMAT = "verikit-segmenter/1"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``); PluginError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"segmenter weights file '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's one-line error
        raise PluginError(f"cannot read segmenter weights '{path}': {_one_line(exc)}") from exc
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PluginError(f"segmenter weights '{path}' are not a state dict of tensors")
    return state


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True,
                 ignore_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``path`` into ``model``. Strict: every key and shape must fit (PluginError naming what
    does not). Not strict: keys of another shape or absent are left as they are; returns those keys.
    Keys starting with one of ``ignore_prefixes`` (a head the model does not use) are dropped first."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore_prefixes)}
    own = model.state_dict()
    if strict:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            detail = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                               for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                  ("other shape", wrong)) if keys)
            raise PluginError(f"segmenter weights '{path}' do not fit this network ({detail}); "
                              "check the architecture, encoder and num_classes")
        model.load_state_dict(state)
        return []
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


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
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PluginError(f"cannot read '{path}': {_one_line(exc)}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("options"), dict):
        raise PluginError(f"'{path}' is not a verikit segmenter description (format {FORMAT})")
    return data
