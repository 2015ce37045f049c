"""Plain state-dict files for plugin networks (detectors, segmenters): read them without pickle,
and load them into a network with one clear error naming what does not fit.

A file is ``.safetensors`` or a torch file read with ``weights_only=True`` (tensors only, never
code). Common checkpoint wrappers (``{"state_dict": ...}``, torchvision's reference scripts'
``{"model": ...}``) are unwrapped. Errors are :class:`verikit.errors.PluginError`, one line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import PluginError, one_line


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors in ``path``; ``what`` names the weights in errors ("segmenter", "torchvision")."""
    path = Path(path)
    if not path.is_file():
        raise PluginError(f"{what} weights file '{path}' does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's one-line error
        raise PluginError(f"cannot read {what} weights '{path}': {one_line(exc)}") from exc
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PluginError(f"{what} weights '{path}' are not a state dict of tensors")
    return state


def load_state_dict_file(model: torch.nn.Module, path: str | Path, *, what: str, hint: str, strict: bool = True,
                         ignore_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Load ``path`` into ``model``.

    Strict: every key and shape must fit (PluginError naming what does not, then ``hint``). Not
    strict: keys of another shape or absent keep their values (fine-tuning with a new class
    count); returns those keys. Keys starting with one of ``ignore_prefixes`` (a head the model
    does not use) are dropped first.
    """
    state = {k: v for k, v in read_state_dict(path, what).items() if not k.startswith(ignore_prefixes)}
    own = model.state_dict()
    if strict:
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            detail = "; ".join(f"{kind}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                               for kind, keys in (("missing", missing), ("unexpected", unexpected),
                                                  ("other shape", wrong)) if keys)
            raise PluginError(f"{what} weights '{path}' do not fit this network ({detail}); {hint}")
        model.load_state_dict(state)
        return []
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))
