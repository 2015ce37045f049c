"""Fine-tune a torchvision detector on annotated boxes (what ``verikit detect train`` runs).

The models compute their own losses in train mode (Faster R-CNN: RPN objectness + box regression
and ROI classification + box regression; SSD: confidence + localisation; RetinaNet: focal +
box regression; FCOS: focal + GIoU + centerness); this loop sums them and steps AdamW. One class
(background + the annotated object, num_classes=2). Augmentation: random horizontal flip.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .model import build_model, load_weights, save_weights, to_tensor

WEIGHTS_FILE = "detector.safetensors"


def _samples(items: Sequence[Any]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from verikit.plugin_api import DataError, load_image

    out = []
    for item in items:
        image = to_tensor(load_image(item.path))
        boxes = torch.as_tensor(item.boxes[~item.ignore], dtype=torch.float32).reshape(-1, 4)
        out.append((image, boxes))
    if not any(len(b) for _, b in out):
        raise DataError("the training annotations contain no (non-ignored) box")
    return out


def _flip(image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    width = image.shape[-1]
    boxes = boxes.clone()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    return image.flip(-1), boxes


def fine_tune(arch: str, *, items: Sequence[Any], out: str | Path, epochs: int = 10, weights: str | None = None,
              batch_size: int = 2, lr: float = 1e-4, device: str = "cpu", seed: int = 0,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``arch`` with num_classes=2 on ``items`` (:class:`verikit.evaluate.detection.annotations.AnnotatedImage`).

    ``weights`` starts from a local state dict (layers of another shape, e.g. a 91-class COCO
    head, are left at their fresh initialisation). Writes ``out/detector.safetensors`` and
    ``out/detector.json`` (arch, num_classes, training summary); returns the summary.
    ``progress`` is called with 1 after each optimiser step.
    """
    from verikit.plugin_api import DataError, ModelError

    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise DataError(f"epochs and batch size must be >= 1 and lr > 0 (got {epochs}, {batch_size}, {lr})")
    torch.manual_seed(seed)
    samples = _samples(items)
    model = build_model(arch, 2)
    skipped = load_weights(model, weights, strict=False) if weights else []
    dev = torch.device(device)
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    history, start = [], time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(samples), generator=generator).tolist()
        total, steps = 0.0, 0
        for first in range(0, len(order), batch_size):
            images, targets = [], []
            for i in order[first:first + batch_size]:
                image, boxes = samples[i]
                if torch.rand((), generator=generator) < 0.5:
                    image, boxes = _flip(image, boxes)
                images.append(image.to(dev))
                labels = torch.ones(len(boxes), dtype=torch.int64, device=dev)  # class 1; 0 is background
                targets.append({"boxes": boxes.to(dev), "labels": labels})
            losses = model(images, targets)
            loss = sum(losses.values())
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ModelError(f"training diverged (loss {value}); try a smaller --lr")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            total, steps = total + value, steps + 1
            if progress is not None:
                progress(1)
        history.append(round(total / steps, 5))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_weights(model, out / WEIGHTS_FILE)
    summary = {"arch": arch, "num_classes": 2, "label": 1, "epochs": epochs, "batch_size": batch_size, "lr": lr,
               "seed": seed, "images": len(samples), "boxes": int(sum(len(b) for _, b in samples)),
               "initial_weights": str(weights) if weights else None, "reinitialised_keys": len(skipped),
               "loss_per_epoch": history, "seconds": round(time.perf_counter() - start, 2)}
    meta = {"format": "verikit-torchvision/1", "arch": arch, "num_classes": 2, "classes": ["background", "object"],
            "weights": WEIGHTS_FILE, "training": summary}
    (out / "detector.json").write_text(json.dumps(meta, indent=2) + "\n")
    return summary
