"""Train a segmentation network on image/mask pairs (what ``verikit segment train`` runs).

Shared by every trainable segmenter plugin: the plugin builds the network, this module trains it.
Loss: binary cross-entropy on the foreground logit plus soft Dice (1 - 2|P.T| / (|P| + |T|)),
so a small object is not drowned by its background. AdamW. Augmentation, applied identically to
image and mask: a random crop keeping 60-100 % of each side, resized to the square input, and a
horizontal flip with probability 0.5. After every epoch the BatchNorm statistics are recomputed
on the whole training images (and their mirror images) at the input size
(:func:`recalibrate_batchnorm`), then the validation images are segmented whole (one whole-image
box, no context) through :class:`~verikit.segment.base.TorchMaskSegmenter` (the exact inference
path), thresholded at 0.5, and scored by IoU (mean over images; an image
where both masks are empty counts 1). The best epoch's weights are saved (the last epoch's when
there is no validation set).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, ModelError
from . import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_FILE
from .base import TorchMaskSegmenter, foreground_logits, network_output, resize_batch
from .data import MaskPair, load_pair, split_pairs
from .weights import load_weights, save_weights, write_sidecar

MIN_CROP = 0.6  # the random crop keeps at least this fraction of each side


def recalibrate_batchnorm(model: torch.nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Recompute BatchNorm running statistics as the plain average over ``batches`` (normalised
    inputs), forwarded in train mode without gradients ("precise BN").

    Running averages updated during training lag behind the weights; with a few hundred steps
    (a small mask set) and torchvision MobileNetV3's momentum 0.01 they stay mostly at their
    initial (0, 1), and the network that trained well predicted nothing in eval mode (measured
    on dlib_faces: IoU 0 on its own training photos, 0.3-0.56 with batch statistics).
    """
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or not batches:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def dice_loss(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image, averaged: (B, H, W) probabilities and (B, H, W) targets in [0, 1]."""
    p, t = probs.flatten(1), target.flatten(1)
    return (1.0 - (2.0 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def segmentation_loss(fg_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE (with logits) + Dice on (B, H, W) foreground logits and soft targets."""
    return F.binary_cross_entropy_with_logits(fg_logits, target) + dice_loss(torch.sigmoid(fg_logits), target)


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """IoU of two bool masks; 1.0 when both are empty."""
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def _whole(image: Any) -> Any:
    from ..structures import Detections

    w, h = image.size
    return Detections([[0.0, 0.0, float(w), float(h)]], [1.0], image_size=(w, h))


def evaluate_iou(segmenter: TorchMaskSegmenter, images: Sequence[Any], truths: Sequence[np.ndarray],
                 threshold: float = 0.5) -> list[float]:
    """Per-image IoU of whole-image masks (``segmenter`` should have context 0) against bool ``truths``."""
    out = []
    for first in range(0, len(images), segmenter.batch_size):
        batch = list(images[first:first + segmenter.batch_size])
        for masks, truth in zip(segmenter.segment(batch, [_whole(im) for im in batch]),
                                truths[first:first + segmenter.batch_size]):
            out.append(mask_iou(masks.masks[0] >= threshold, truth))
    return out


class _Samples:
    """Training pairs in memory: (3, H, W) uint8 pixels and (1, H, W) float masks, shrunk so the
    longer side is at most twice the input size (crops are resized to it anyway)."""

    def __init__(self, pairs: Sequence[MaskPair], size: int) -> None:
        self.items: list[tuple[torch.Tensor, torch.Tensor]] = []
        for pair in pairs:
            pixels, mask = load_pair(pair)
            image = torch.from_numpy(pixels).permute(2, 0, 1)
            target = torch.from_numpy(mask.astype(np.float32))[None]
            scale = 2 * size / max(image.shape[1:])
            if scale < 1:
                shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale)))
                image = F.interpolate(image[None].float(), size=shape, mode="bilinear", antialias=True)[0]
                image = image.round().clamp(0, 255).to(torch.uint8)
                target = F.interpolate(target[None], size=shape, mode="bilinear", antialias=True)[0].clamp(0, 1)
            self.items.append((image, target))

    def __len__(self) -> int:
        return len(self.items)

    def whole(self, size: int) -> list[torch.Tensor]:
        """Every image resized to (3, S, S) float 0..255, and its mirror image."""
        out = [resize_batch(image[None], size)[0] for image, _ in self.items]
        return out + [image.flip(-1) for image in out]

    def augmented(self, index: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random crop + flip of sample ``index``: (3, S, S) float 0..255 and (S, S) target."""
        image, target = self.items[index]
        h, w = image.shape[1:]
        u = torch.rand(5, generator=generator).tolist()
        ch, cw = max(1, round(h * (MIN_CROP + (1 - MIN_CROP) * u[0]))), max(1, round(w * (MIN_CROP + (1 - MIN_CROP) * u[1])))
        top, left = int(u[2] * (h - ch + 1)), int(u[3] * (w - cw + 1))
        both = torch.cat([image.float(), target * 255.0])[None, :, top:top + ch, left:left + cw]
        both = resize_batch(both, size)[0]
        if u[4] < 0.5:
            both = both.flip(-1)
        return both[:3], (both[3] / 255.0).clamp(0, 1)


def _chunks(order: list[int], batch_size: int) -> list[list[int]]:
    """Batches of ``order``; never a batch of one (BatchNorm cannot train on it): a last single
    sample joins the previous batch, and a lone sample is drawn twice (two augmentations)."""
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(chunks[-1]) == 1:
        if len(chunks) > 1:
            chunks[-2].extend(chunks.pop())
        else:
            chunks[0] = chunks[0] * 2
    return chunks


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return len(_chunks(list(range(n_train)), batch_size))


def fit_segmenter(build: Callable[[], torch.nn.Module], *, spec: str, options: dict[str, Any],
                  pairs: Sequence[MaskPair], out: str | Path, epochs: int = 20, batch_size: int = 4,
                  lr: float = 1e-3, size: int = 256, val_fraction: float = 0.2, seed: int = 0,
                  device: str = "cpu", weights: str | None = None, foreground: int = 1,
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train the network ``build()`` makes (seeded first) and save the best epoch to ``out``.

    ``spec`` and ``options`` (the factory options that rebuild this network, e.g. the encoder)
    go into ``out/segmenter.json`` with the training summary; ``input_size`` is added to them.
    ``weights`` starts from a local state dict (keys of another shape start fresh).
    ``progress`` is called with 1 after each optimiser step. Returns the summary.
    """
    from ..models.embedder import resolve_device

    if epochs < 1 or batch_size < 1 or not lr > 0 or size < 8:
        raise DataError(f"epochs and batch size must be >= 1, lr > 0 and size >= 8 "
                        f"(got {epochs}, {batch_size}, {lr}, {size})")
    train_pairs, val_pairs = split_pairs(pairs, val_fraction, seed)
    torch.manual_seed(seed)
    model = build()
    skipped = load_weights(model, weights, strict=False) if weights else []
    dev = resolve_device(device)
    samples = _Samples(train_pairs, size)
    from ..io import load_image

    val_images = [load_image(p.image) for p in val_pairs]
    val_truths = [load_pair(p)[1] for p in val_pairs]
    judge = TorchMaskSegmenter(model, input_size=size, mean=mean, std=std, foreground=foreground, context=0.0,
                               batch_size=batch_size, device=dev, name=spec)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    ious: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, steps = 0.0, 0
        for chunk in _chunks(torch.randperm(len(samples), generator=generator).tolist(), batch_size):
            drawn = [samples.augmented(i, size, generator) for i in chunk]
            images = judge.normalise(torch.stack([d[0] for d in drawn]).to(dev))
            targets = torch.stack([d[1] for d in drawn]).to(dev)
            logits = network_output(model(images))
            if tuple(logits.shape[-2:]) != (size, size):
                logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
            loss = segmentation_loss(foreground_logits(logits, foreground), targets)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ModelError(f"training diverged at epoch {epoch} (loss {value}); try a smaller --lr")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + value, steps + 1
            if progress is not None:
                progress(1)
        losses.append(round(total / steps, 5))
        whole = samples.whole(size)
        recalibrate_batchnorm(model, [judge.normalise(torch.stack(c).to(dev))
                                      for c in (whole[i:i + batch_size] for i in range(0, len(whole), batch_size))
                                      if len(c) > 1])
        score = float(np.mean(evaluate_iou(judge, val_images, val_truths))) if val_pairs else None
        if score is not None:
            ious.append(round(score, 5))
        if best is None or score is None or score > best[0]:
            best = (score if score is not None else -1.0, epoch,
                    {k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    assert best is not None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(best[2], out / WEIGHTS_FILE)
    summary = {"epochs": epochs, "best_epoch": best[1], "val_iou": ious[best[1] - 1] if ious else None,
               "val_iou_per_epoch": ious, "loss_per_epoch": losses, "images": len(train_pairs),
               "val_images": len(val_pairs), "batch_size": batch_size, "lr": lr, "size": size, "seed": seed,
               "val_fraction": val_fraction, "initial_weights": str(weights) if weights else None,
               "reinitialised_keys": len(skipped), "device": str(dev),
               "mask_rule": "foreground = 8-bit value > 127 (0/1 label maps: value 1)",
               "seconds": round(time.perf_counter() - start, 2)}
    write_sidecar(out, spec, {**options, "input_size": size}, summary)
    return summary
