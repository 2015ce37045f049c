"""Folder-per-identity training data: identity-disjoint splits, augmentation, decoded caches,
and the per-epoch index order (seeded, and shared out between data-parallel processes).

Validation identities never appear in training (open-set, as verification is used), so the
validation EER says how the model does on people it has never seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import v2 as T

from ..errors import DataError, ImageError
from ..io import FolderScan, load_image
from ..models.preprocess import INTERPOLATION, SingleThreaded, base_steps
from ..structures import InputSpec
from .config import AUGMENTATIONS, MIRRORING_AUGMENTATIONS


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




class RandomAffineBorder(torch.nn.Module):
    """A small random affine distortion (rotation, shear, scale, shift) whose uncovered corners take
    the image's own border colour (the median of its edge pixels per channel), so white paper stays
    white instead of gaining black corners. Koch et al. trained their Omniglot Siamese net on such
    distortions; there is no flip, because a mirrored character is often another character."""

    def __init__(self, degrees: float = 10.0, translate: float = 0.05, scale: tuple[float, float] = (0.85, 1.15),
                 shear: float = 15.0, interpolation: T.InterpolationMode = T.InterpolationMode.BILINEAR) -> None:
        super().__init__()
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, scale, shear
        self.interpolation = interpolation

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms import RandomAffine
        from torchvision.transforms.v2 import functional as F

        h, w = img.shape[-2:]
        angle, shift, scale, shear = RandomAffine.get_params(
            [-self.degrees, self.degrees], [self.translate, self.translate], list(self.scale),
            [-self.shear, self.shear, -self.shear, self.shear], [w, h])
        edges = torch.cat([img[..., 0, :], img[..., -1, :], img[..., :, 0], img[..., :, -1]], dim=-1)
        fill = edges.float().median(dim=-1).values.reshape(-1, 1, 1)
        # Warped as the difference from the border colour, whose padding is then exactly 0:
        # torchvision's own ``fill`` blends a grey seam into bilinear edges.
        out = F.affine(img.float() - fill, angle=angle, translate=list(shift), scale=scale, shear=list(shear),
                       interpolation=self.interpolation) + fill
        return out.round_().clamp_(0, 255).to(img.dtype) if not img.is_floating_point() else out


def augmentation(spec: InputSpec, strength: str = "light") -> list[torch.nn.Module]:
    """Augmentations applied to an already-resized uint8 image tensor.

    ``light``/``strong``: random resized crop, horizontal flip, small rotation, brightness and
    contrast (for faces and objects). ``affine``: only a small random affine distortion that
    keeps the border colour (:class:`RandomAffineBorder`), for handwriting such as Omniglot, where
    flips and colour changes make no sense.
    """
    if strength == "none":
        return []
    if strength == "affine":
        return [RandomAffineBorder(interpolation=INTERPOLATION[spec.interpolation])]
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
        # grey, resize and the model's photometric normalisation (InputSpec.equalize): the same
        # steps inference runs, cached here; augmentation (brightness/contrast jitter included) follows.
        self.base = SingleThreaded(T.Compose(base_steps(spec)))
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


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for ``epoch`` of a run seeded ``seed`` (neighbouring epochs differ a lot)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


class EpochSampler(Sampler[int]):
    """This process's indices for one epoch, drawn from a fresh m-per-class sampler.

    Why not hand pytorch-metric-learning's sampler to the DataLoader directly: it draws from
    numpy's global generator and shuffles its identity list in place, so an epoch's batches depend
    on every draw made before it. Here each epoch's index list depends only on ``(seed, epoch)``:
    a resumed run sees the batches the uninterrupted run would have, and every data-parallel
    process computes the same global list. The list is consecutive global batches of
    ``batch_size`` (``batch_size / m`` identities x ``m`` images); process ``rank`` of
    ``world_size`` takes the ``rank``-th contiguous slice of every batch, so the processes together
    see exactly the global batch. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, make_sampler: Callable[[], Sampler], batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise DataError(f"batch size {batch_size} must divide evenly between {world_size} processes")
        self.make_sampler, self.batch_size, self.seed = make_sampler, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.indices: list[int] = []
        self.set_epoch(1)

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def set_epoch(self, epoch: int) -> None:
        saved = np.random.get_state()  # borrow numpy's global generator, which the library samples from
        np.random.seed(epoch_seed(self.seed, epoch))
        try:
            full = [int(i) for i in self.make_sampler()]
        finally:
            np.random.set_state(saved)
        n, b = self.local_batch_size, self.batch_size
        self.indices = [i for start in range(0, len(full) - b + 1, b)
                        for i in full[start + self.rank * n: start + (self.rank + 1) * n]]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
