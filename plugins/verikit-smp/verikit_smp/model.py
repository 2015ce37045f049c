"""Build segmentation-models-pytorch networks (one foreground channel) without surprises:
nothing is downloaded unless ``encoder_weights`` or a ``hub:`` model is asked for, and smp's or
timm's errors become one-line :class:`verikit.errors.PluginError` messages."""

from __future__ import annotations

import torch

from verikit.plugin_api import PluginError, one_line


def build_network(arch: str, encoder: str, encoder_weights: str | None = None) -> torch.nn.Module:
    """``smp.create_model(arch, encoder, encoder_weights, in_channels=3, classes=1)``."""
    import segmentation_models_pytorch as smp

    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=encoder_weights, in_channels=3, classes=1)
    except Exception as exc:  # noqa: BLE001 - unknown encoder, no network for weights: the user's one line
        raise PluginError(f"smp cannot build {arch} with encoder {encoder!r}"
                          f"{f' and encoder_weights {encoder_weights!r}' if encoder_weights else ''}: "
                          f"{type(exc).__name__}: {one_line(exc)}") from exc


def load_hub(repo: str) -> torch.nn.Module:
    """A whole pretrained smp model from the Hugging Face hub (``smp.from_pretrained``; downloads).

    It must predict one channel (foreground); multi-class hub models are refused."""
    import segmentation_models_pytorch as smp

    try:
        model = smp.from_pretrained(repo)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"smp cannot load hub model {repo!r}: {type(exc).__name__}: {one_line(exc)}") from exc
    require_one_channel(model, f"smp hub model {repo!r}")
    return model


def require_one_channel(model: torch.nn.Module, what: str) -> None:
    """PluginError unless the smp model's segmentation head predicts one (foreground) channel."""
    head = getattr(model, "segmentation_head", None)
    channels = getattr(head[0], "out_channels", None) if isinstance(head, torch.nn.Sequential) and len(head) else None
    if channels != 1:
        raise PluginError(f"{what} predicts {channels if channels is not None else 'an unknown number of'} "
                          "classes; verikit needs one foreground channel")
