"""verikit's training loop: metric-learning loss + miner + m-per-class batches, validation EER
each epoch on held-out identities, the best epoch kept.

The loop owns only the orchestration; the losses, miners and sampler are pytorch-metric-learning's
(see :mod:`verikit.train.losses`). Progress is reported through callbacks so the CLI can draw bars
and the Python API can stay quiet.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..calibrate.metrics import eer as equal_error_rate
from ..calibrate.pairs import all_pairs_scores
from ..errors import DataError
from ..io import scan_identity_folders
from ..models.embedder import Embedder, resolve_device
from ..models.inference import embed_files
from ..structures import InputSpec
from .data import LabelledImages, Split, augmentation, identity_split
from .losses import PROXY_LOSSES, build_loss, build_miner, build_sampler


@dataclass
class TrainConfig:
    """Every training choice; saved in the model's config.json under ``training``."""

    backbone: str = "timm:resnet18"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = 128
    pooling: str = "avg"
    image_size: tuple[int, int] = (112, 112)
    channels: int = 3
    epochs: int = 20
    batch_size: int = 32
    m_per_class: int = 4
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    loss: str = "triplet"
    margin: float | None = None      # None: the loss's own default (0.2 for triplet, 0.35 for cosface, ...)
    miner: str = "batch_hard"        # ignored by proxy losses (normalized_softmax, cosface, arcface)
    keep: str = "last"               # "last" epoch, or the "best" validation EER (noisy on few identities)
    augment: str = "light"
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int = 0

    def input_spec(self) -> InputSpec:
        return InputSpec(channels=self.channels, size=tuple(self.image_size))


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    images_per_s: float
    val_eer: float | None
    seconds: float


@dataclass
class TrainResult:
    model: Embedder
    history: list[EpochRecord]
    kept_epoch: int
    kept_val_eer: float | None
    split: Split

    def summary(self) -> dict[str, Any]:
        return {"kept_epoch": self.kept_epoch, "kept_val_eer": self.kept_val_eer,
                "train_identities": len(self.split.train_identities),
                "val_identities": self.split.val_identities,
                "history": [asdict(r) for r in self.history]}


StepCallback = Callable[[int, int, int, float], None]     # epoch, step, steps, loss
EpochCallback = Callable[[EpochRecord], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def validation_eer(model: Embedder, items: list[tuple[str, Path]], batch_size: int = 128) -> float | None:
    """EER over all pairs of the held-out identities; None when there is nothing to validate on."""
    if len({n for n, _ in items}) < 2:
        return None
    out = embed_files(model, [p for _, p in items], batch_size=batch_size, num_workers=0)
    label_of = {p: n for n, p in items}
    genuine, impostor = all_pairs_scores(out.embeddings, [label_of[p] for p in out.paths])
    if len(genuine) == 0 or len(impostor) == 0:
        return None
    return float(equal_error_rate(genuine, impostor)[0])


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return f


def train(data_dir: str | Path, cfg: TrainConfig, *, on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None, on_loaded: Callable[[int], None] | None = None,
          split: Split | None = None) -> TrainResult:
    """Train an embedder on a folder-per-identity dataset; returns the best epoch's model."""
    if cfg.keep not in ("last", "best"):
        raise DataError(f"keep must be 'last' or 'best', got {cfg.keep!r}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if split is None:
        split = identity_split(scan_identity_folders(data_dir, min_images=2), cfg.val_fraction, cfg.seed)
    spec = cfg.input_spec()
    model = Embedder.build(cfg.backbone, embedding_size=cfg.embedding_size, pooling=cfg.pooling,
                           input_spec=spec, backbone_options=cfg.backbone_options).to(device)
    dataset = LabelledImages(split.train, spec, augmentation(spec, cfg.augment), on_loaded=on_loaded)
    sampler = build_sampler(dataset.labels, cfg.m_per_class, cfg.batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda")
    loss_fn = build_loss(cfg.loss, margin=cfg.margin, num_classes=len(dataset.names),
                         embedding_size=cfg.embedding_size).to(device)
    # Proxy losses compare each embedding with every identity's proxy: there is nothing to mine.
    miner = None if cfg.loss in PROXY_LOSSES else build_miner(cfg.miner, margin=0.2 if cfg.margin is None else cfg.margin)
    groups = [{"params": list(model.parameters())}]
    if list(loss_fn.parameters()):  # the proxies train with the model but are not saved with it
        groups.append({"params": list(loss_fn.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))

    history: list[EpochRecord] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start, seen, total_loss = time.perf_counter(), 0, 0.0
        for step, (x, y) in enumerate(loader, 1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            emb = model(x)
            loss = loss_fn(emb, y, miner(emb, y)) if miner is not None else loss_fn(emb, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            seen += len(y)
            total_loss += loss.item()
            if on_step:
                on_step(epoch, step, steps, total_loss / step)
        elapsed = time.perf_counter() - start
        val = validation_eer(model, split.val)
        record = EpochRecord(epoch, total_loss / max(1, steps), seen / elapsed, val, elapsed)
        history.append(record)
        if on_epoch:
            on_epoch(record)
        # "best" keeps the lowest validation EER; "last" (or no validation set) keeps the last epoch.
        # On a handful of validation identities the EER jumps by several points between
        # neighbouring epochs, so "best" there mostly picks noise: "last" is the default.
        if cfg.keep == "best" and val is not None and (best is None or val < best[0]):
            best = (val, epoch, copy.deepcopy(model.state_dict()))
    kept_epoch = cfg.epochs
    if best is not None:
        model.load_state_dict(best[2])
        kept_epoch = best[1]
    kept_eer = history[kept_epoch - 1].val_eer
    result = TrainResult(model, history, kept_epoch, kept_eer, split)
    config_record = asdict(cfg)
    config_record["image_size"] = list(cfg.image_size)
    model.config.training = {"config": config_record, **result.summary()}
    model.eval()  # after the config is final: an eval-mode model caches its fingerprint
    return result
