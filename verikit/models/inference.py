"""Batched embedding of images: DataLoader decoding in parallel with the forward pass.

Decoding runs in worker processes while the model runs in the main one, which is what keeps
``verikit enroll`` close to the speed of the bare model forward (see benchmarks/bench_enroll.py).
Every image, a file or a picture in memory, becomes the model's input through
:func:`verikit.image_input.to_image` first, so both give the same template.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..image_input import as_source, check_sequence, to_image
from .backend import run_network
from .embedder import Embedder
from .preprocess import ImageFiles, collate_skipping_failures, to_tensor_transform


@dataclass(frozen=True)
class EmbeddedFiles:
    """Embeddings of the files that loaded, and the reasons the others did not.

    ``paths`` holds the inputs as given (a :class:`~pathlib.Path` for a file, the object itself
    for an image held in memory); ``indices`` their positions in the input (None when unknown).
    """

    paths: list[Any]               # inputs that were embedded, in input order
    embeddings: np.ndarray         # (len(paths), D) float32, L2-normalised
    failures: list[tuple[Any, str]]
    indices: list[int] | None = None


def default_workers(device: torch.device | None = None) -> int:
    """Decode workers for batched embedding.

    On CUDA the forward pass leaves the CPU free, so decoding gets its own processes. On the CPU
    the forward already uses every core: measured on 2 cores (benchmarks/bench_enroll.py), one
    decode worker made enroll ~10% slower than decoding in the main process, because it only
    competes with the forward. Workers pay off there only with cores to spare.
    """
    cores = os.cpu_count() or 1
    if device is not None and device.type == "cuda":
        return max(0, min(4, cores - 1))
    return 0 if cores <= 4 else min(4, cores // 4)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def embed_files(model: Embedder, paths: Sequence[Any], *, batch_size: int = 64,
                num_workers: int | None = None, progress: Callable[[int], None] | None = None,
                max_pixels: int | None = None) -> EmbeddedFiles:
    """Embed image files (or any image form :func:`verikit.image_input.to_image` accepts) in
    batches. Bad ones are skipped and reported, never fatal here.

    ``progress`` is called with the number of files finished after each batch.
    """
    paths = [as_source(p) for p in check_sequence(paths, "paths")]
    device = _device_of(model)
    workers = default_workers(device) if num_workers is None else num_workers
    dataset = ImageFiles(paths, to_tensor_transform(model.input_spec), max_pixels=max_pixels)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False,
                        collate_fn=collate_skipping_failures, pin_memory=device.type == "cuda",
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    was_training = model.training
    model.eval()
    kept: list[tuple[int, np.ndarray]] = []
    failures: list[tuple[int, str]] = []
    with torch.inference_mode():
        for idx, batch, bad in loader:
            failures.extend(bad)
            if batch is not None:
                out = run_network(model, batch.to(device, non_blocking=True)).float().cpu().numpy()
                kept.extend(zip(idx.tolist(), out))
            if progress is not None:
                progress(len(idx) + len(bad))
    model.train(was_training)
    kept.sort(key=lambda t: t[0])
    emb = np.stack([e for _, e in kept]).astype(np.float32) if kept else np.zeros((0, model.embedding_size), np.float32)
    return EmbeddedFiles([paths[i] for i, _ in kept], emb, [(paths[i], r) for i, r in sorted(failures)],
                         [i for i, _ in kept])


def embed_images(model: Embedder, images: Sequence[Any], batch_size: int = 64) -> np.ndarray:
    """Embed images: a list of paths, encoded bytes, PIL images of any mode, numpy arrays or torch
    tensors (see :mod:`verikit.image_input`), or a 4-D batch. Returns (N, D) float32.

    An image that cannot be used raises :class:`~verikit.errors.ImageError` naming it.
    """
    images = check_sequence(images)
    transform = to_tensor_transform(model.input_spec)
    outs = [embed_prepared(model, [transform(to_image(im)) for im in images[start:start + batch_size]])
            for start in range(0, len(images), batch_size)]
    return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, model.embedding_size), np.float32)


def prepare_images(model: Embedder, images: Sequence[Any]) -> list[torch.Tensor]:
    """The model's input tensor per image (what :func:`embed_images` feeds the network).

    Split from the forward so that a server can prepare requests' images on several threads
    while one thread runs the network on whole batches (:mod:`verikit.server.runtime`).
    """
    transform = to_tensor_transform(model.input_spec)
    return [transform(to_image(im)) for im in check_sequence(images)]


def embed_prepared(model: Embedder, tensors: Sequence[torch.Tensor]) -> np.ndarray:
    """One forward pass over tensors made by :func:`prepare_images`; (N, D) float32."""
    if not len(tensors):
        return np.zeros((0, model.embedding_size), np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            x = torch.stack(list(tensors)).to(_device_of(model))
            return run_network(model, x).float().cpu().numpy().astype(np.float32)
    finally:
        model.train(was_training)
