"""Eager inference on the CPU in channels-last layout (NHWC), where the network has convolutions.

Why: oneDNN's CPU convolutions run on NHWC data without reordering each layer's input and
output. Measured on a 2-core CPU at 112 px against the plain contiguous forward
(benchmarks/bench_channels_last.py; the figures are in docs/training.md), a batch of 32 embeds
1.01-1.53x faster depending on the backbone, one image at a time 0.91-1.16x. Templates are the
same numbers in another memory order (cosine >= 0.9999999; tests/test_memory_format.py checks
>= 0.9999 on real photos).

How: the first inference batch on the CPU converts an :class:`~verikit.models.embedder.Embedder`'s
4-D weights to channels-last in place, once (:func:`prepare`), and each batch is laid out the same
way (:func:`as_input`); switching the model to training mode puts them back (:func:`release`).
A layout is not a value: ``state_dict()`` holds the same numbers, saving and the fingerprint write
contiguous bytes (:meth:`verikit.models.embedder.Embedder._serialise`). A network that cannot
run in this layout (a third-party layer calling ``.view()`` on its input, say) goes back to the
contiguous layout for good the first time a batch fails in channels-last but runs contiguous
(said once). ``VERIKIT_CHANNELS_LAST=0`` turns it off.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

ENV = "VERIKIT_CHANNELS_LAST"
_STATE = "_verikit_channels_last"  # per model: True (converted), False (not used), absent (undecided)
_lock = threading.Lock()


def enabled() -> bool:
    """False when ``$VERIKIT_CHANNELS_LAST`` is ``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def prepare(model: torch.nn.Module, batch: torch.Tensor) -> bool:
    """Whether ``batch`` should run through ``model`` in channels-last; converts the model the
    first time the answer is yes (a verikit Embedder in eval mode, on the CPU, a 4-D batch, a
    network with 2-D convolutions)."""
    if (batch.dim() != 4 or batch.device.type != "cpu" or model.training
            or not getattr(model, "channels_last_inference", False)):
        return False
    state = model.__dict__.get(_STATE)
    if state is not None:
        return state
    state = enabled() and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if state:
        _set_layout(model, torch.channels_last)
    model.__dict__[_STATE] = state
    return state


def release(model: torch.nn.Module) -> None:
    """Back to the contiguous layout (``Embedder.train(True)`` calls this): training always runs
    in the layout it was written and tested in, so a run validated with channels-last inference
    between epochs gives bitwise the weights of one that never was (resume tests compare them)."""
    if model.__dict__.get(_STATE):  # converted; a model that gave the layout up stays contiguous
        _set_layout(model, torch.contiguous_format)
        del model.__dict__[_STATE]


def as_input(batch: torch.Tensor) -> torch.Tensor:
    return batch.contiguous(memory_format=torch.channels_last)


def _set_layout(model: torch.nn.Module, layout: torch.memory_format) -> None:
    # Outside inference mode: parameters made in it could never be trained again. The lock keeps
    # two threads from converting one model at once.
    with _lock, torch.inference_mode(False), torch.no_grad():
        model.to(memory_format=layout)


def forward(model: Any, batch: torch.Tensor) -> torch.Tensor:
    """``model(batch)``, in channels-last where :func:`prepare` says so.

    When the channels-last run fails, the batch is run again in the contiguous layout: if that
    works, the layout was the cause and the model stays contiguous for good (said once); if it
    fails too, the fault is elsewhere (the input, say), so the layout is kept and that error raised.
    """
    if not prepare(model, batch):
        return model(batch)
    try:
        return model(as_input(batch))
    except RuntimeError as exc:
        _set_layout(model, torch.contiguous_format)
        try:
            out = model(batch)
        except BaseException:
            _set_layout(model, torch.channels_last)
            raise
        model.__dict__[_STATE] = False
        from .backend import say_once
        say_once(f"this network failed in channels-last layout ({str(exc).splitlines()[0][:200]}); "
                 f"running it in the contiguous layout")
        return out
