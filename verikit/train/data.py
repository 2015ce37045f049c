"""Folder-per-identity training data: identity-disjoint splits, augmentation, decoded caches.

Validation identities never appear in training (open-set, as verification is used), so the
validation EER says how the model does on people it has never seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2 as T

from ..errors import DataError, ImageError
from ..io import FolderScan, load_image
from ..models.preprocess import INTERPOLATION, SingleThreaded
from ..structures import InputSpec


@dataclass(frozen=True)
class Split:
    """Labelled image paths of an identity-disjoint split."""

    train: list[tuple[str, Path]]
    val: list[tuple[str, Path]]

    @property
    def train_identities(self) -> list[str]:
        return sorted({n for n, _ in self.train})

    @property
    def val_identities(self) -> list[str]:
        return sorted({n for n, _ in self.val})


def identity_split(scan: FolderScan, val_fraction: float, seed: int, min_val_identities: int = 2) -> Split:
    """Hold out ``val_fraction`` of the identities (at least ``min_val_identities``) for validation."""
    names = scan.identities
    if val_fraction <= 0:
        return Split(list(scan.items), [])
    n_val = max(min_val_identities, round(len(names) * val_fraction))
    if len(names) - n_val < 2:
        raise DataError(f"{len(names)} identities are too few to hold {n_val} out for validation "
                        "and still train on two or more; lower --val-fraction or add identities")
    held = set(random.Random(seed).sample(names, n_val))
    return Split([it for it in scan.items if it[0] not in held], [it for it in scan.items if it[0] in held])


def augmentation(spec: InputSpec, strength: str = "light") -> list[torch.nn.Module]:
    """Augmentations applied to an already-resized uint8 image tensor."""
    if strength == "none":
        return []
    scale = (0.85, 1.0) if strength == "light" else (0.6, 1.0)
    ops: list[torch.nn.Module] = [
        T.RandomResizedCrop(spec.size, scale=scale, ratio=(0.9, 1.1), interpolation=INTERPOLATION[spec.interpolation],
                            antialias=True),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.RandomRotation(8)], p=0.5),
        T.ColorJitter(brightness=0.3, contrast=0.3),
    ]
    return ops


class LabelledImages(Dataset):
    """(image tensor, integer label) pairs. Images are decoded and resized once and kept as
    uint8 when ``cache`` is set, because decoding would otherwise dominate a small model's step."""

    def __init__(self, items: Sequence[tuple[str, Path]], spec: InputSpec, augment: Sequence[torch.nn.Module] = (),
                 cache: bool = True, on_loaded: Callable[[int], None] | None = None) -> None:
        self.spec = spec
        self.names = sorted({n for n, _ in items})
        index = {n: i for i, n in enumerate(self.names)}
        self.base = SingleThreaded(T.Compose([
            T.ToImage(), *([T.Grayscale(1)] if spec.channels == 1 else []),
            T.Resize(spec.size, interpolation=INTERPOLATION[spec.interpolation], antialias=True)]))
        self.finish = SingleThreaded(
            T.Compose([*augment, T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)]))
        self.paths: list[Path] = []
        self.labels: list[int] = []
        self.cache: list[torch.Tensor] | None = [] if cache else None
        self.skipped: list[tuple[Path, str]] = []
        for name, path in items:
            if self.cache is not None:
                try:
                    self.cache.append(self.base(load_image(path)))
                except ImageError as exc:
                    self.skipped.append((path, str(exc)))
                    continue
                if on_loaded:
                    on_loaded(1)
            self.paths.append(Path(path))
            self.labels.append(index[name])
        if not self.labels:
            raise DataError("no loadable images in the training set")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.cache[i] if self.cache is not None else self.base(load_image(self.paths[i]))
        return self.finish(img), self.labels[i]
