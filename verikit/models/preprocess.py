"""Turning loaded images into model inputs, exactly as the model's InputSpec says.

Training (with augmentation) and inference share :func:`to_tensor_transform`, so a model always
sees images prepared the same way it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from ..errors import ImageError
from ..image_input import to_image
from ..structures import InputSpec

INTERPOLATION = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
                  "nearest": T.InterpolationMode.NEAREST}


class SingleThreaded:
    """Run a per-image transform with one intra-op thread.

    Per-image tensor ops are tiny, so torch's thread pool only adds synchronisation, and that
    collapses when another process holds the second core: measured here, 31 ms per image with two
    threads against 0.5 ms with one. DataLoader workers are single-threaded already; this makes
    the in-process path (num_workers=0, single probes, training) as fast.
    """

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, image):
        n = torch.get_num_threads()
        if n == 1:
            return self.transform(image)
        torch.set_num_threads(1)
        try:
            return self.transform(image)
        finally:
            torch.set_num_threads(n)


class Equalize(torch.nn.Module):
    """Global histogram equalisation of a uint8 image tensor (per channel for RGB), exactly
    ``torchvision.transforms.v2.functional.equalize``. Deterministic: the same image always gives
    the same output, so training may cache it."""

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        return F.equalize(img)


def photometric_steps(spec: InputSpec) -> list[torch.nn.Module]:
    """The model's photometric normalisation (``spec.equalize``) as transform steps."""
    if spec.equalize == "histogram":
        return [Equalize()]
    if spec.equalize == "none":
        return []
    raise ValueError(f"unknown InputSpec.equalize {spec.equalize!r}")


def base_steps(spec: InputSpec) -> list[torch.nn.Module]:
    """PIL RGB image (what :func:`verikit.image_input.to_image` returns) -> uint8 tensor at the model's size: grey conversion, resize, then the
    photometric normalisation. Training caches exactly this, and inference runs exactly this,
    before augmentation (training only) and ``mean``/``std`` normalisation."""
    steps: list[torch.nn.Module] = [T.ToImage()]
    if spec.channels == 1:
        steps.append(T.Grayscale(num_output_channels=1))
    steps.append(T.Resize(spec.size, interpolation=INTERPOLATION[spec.interpolation], antialias=True))
    return steps + photometric_steps(spec)


def to_tensor_transform(spec: InputSpec, augment: Sequence[torch.nn.Module] = ()) -> SingleThreaded:
    """PIL RGB image -> normalised float tensor of shape (channels, height, width)."""
    steps = [*base_steps(spec), *augment, T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)]
    return SingleThreaded(T.Compose(steps))


class ImageFiles(Dataset):
    """Image files (or any form :func:`verikit.image_input.to_image` accepts) as model inputs.
    An item that fails to load yields ``None`` and its reason, so one bad file in a batch job
    is reported instead of stopping the job."""

    def __init__(self, paths: Sequence[Any], transform: Callable, max_pixels: int | None = None) -> None:
        self.paths = [Path(p) if isinstance(p, str) else p for p in paths]
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
            return i, self.transform(to_image(self.paths[i], **kwargs)), None
        except ImageError as exc:
            return i, None, str(exc)


def collate_skipping_failures(batch):
    """Stack the good items; pass failures through as (index, reason) pairs."""
    good = [(i, x) for i, x, err in batch if err is None]
    bad = [(i, err) for i, _, err in batch if err is not None]
    if good:
        idx = torch.tensor([i for i, _ in good])
        return idx, torch.stack([x for _, x in good]), bad
    return torch.empty(0, dtype=torch.long), None, bad
