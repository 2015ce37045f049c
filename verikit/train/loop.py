"""verikit's training loop: metric-learning loss + miner + m-per-class batches, validation EER
and TAR@FAR each epoch on held-out identities, the last or best epoch kept.

The loop owns only the orchestration of one epoch after another: optimizer and schedule, mixed
precision, clipping, freezing, early stopping. The pieces it calls own the rest: losses, miners
and sampler (:mod:`verikit.train.losses`, pytorch-metric-learning's), the epoch's batches
(:mod:`verikit.train.data`), checkpoints (:mod:`verikit.train.checkpoint`), logs
(:mod:`verikit.train.run_log`), data parallelism (:mod:`verikit.train.distributed`) and config
files (:mod:`verikit.train.config`). Progress is reported through callbacks so the CLI can draw
bars and the Python API can stay quiet.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..evaluate.metrics import eer as equal_error_rate
from ..evaluate.metrics import tar_at_far
from ..errors import DataError
from ..io import scan_identity_folders
from ..models.backbones import pretrained_normalization
from ..models.embedder import Embedder
from ..models.inference import embed_files
from ..evaluate.pairs import all_pairs
from ..similarity import parse_measure
from ..structures import InputSpec
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import CONFIG_FILE, TrainConfig, check_config, config_to_dict, write_config
from .data import (EpochSampler, LabelledImages, Split, augmentation, epoch_seed,
                   identity_split)
from .distributed import (World, broadcast_flag, loss_scale, process_group, sync_loss_gradients, unwrap,
                          wrap_loss_and_miner, wrap_model)
from .run_log import RunLog
from .losses import PROXY_LOSSES, build_loss, build_miner, build_sampler


@dataclass
class EpochRecord:
    """One epoch's figures: a row of train_log.csv and of the model's training history."""

    epoch: int
    loss: float
    images_per_s: float
    val_eer: float | None
    seconds: float
    lr: float | None = None
    val_tar_at_far_1e_2: float | None = None
    val_tar_at_far_1e_3: float | None = None


@dataclass
class TrainResult:
    model: Embedder
    history: list[EpochRecord]
    kept_epoch: int
    kept_val_eer: float | None
    split: Split
    stopped_early: bool = False
    rank: int = 0                # under torchrun only rank 0 saves and reports

    def summary(self) -> dict[str, Any]:
        return {"kept_epoch": self.kept_epoch, "kept_val_eer": self.kept_val_eer, "stopped_early": self.stopped_early,
                "train_identities": len(self.split.train_identities),
                "val_identities": self.split.val_identities,
                "history": [asdict(r) for r in self.history]}


StepCallback = Callable[[int, int, int, float, float], None]     # epoch, step, steps, mean loss, images/s
EpochCallback = Callable[[EpochRecord], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


VAL_FARS = (1e-2, 1e-3)


@dataclass(frozen=True)
class Validation:
    eer: float
    tar_at_far: tuple[float, ...]    # at VAL_FARS


def validate(model: Embedder, items: list[tuple[str, Path]], batch_size: int = 128) -> Validation | None:
    """EER and TAR at FAR 1e-2 / 1e-3 over all pairs of the held-out identities; None when there
    is nothing to validate on."""
    if len({n for n, _ in items}) < 2:
        return None
    out = embed_files(model, [p for _, p in items], batch_size=batch_size, num_workers=0)
    label_of = {p: n for n, p in items}
    # Scored with the model's own measure (EER only changes for l1, the one not monotone in cosine).
    genuine, impostor = all_pairs(out.embeddings, [label_of[p] for p in out.paths], model.config.similarity)
    if len(genuine) == 0 or len(impostor) == 0:
        return None
    tars = tar_at_far(genuine, impostor, VAL_FARS)
    return Validation(float(equal_error_rate(genuine, impostor)[0]), tuple(float(t) for t in tars))


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return f


def build_optimizer(cfg: TrainConfig, model: Embedder, loss_fn: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD over three groups: backbone (at ``lr * backbone_lr_scale``), head, loss proxies."""
    groups = [{"params": list(model.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_scale},
              {"params": list(model.head.parameters())}]
    if list(loss_fn.parameters()):  # the proxies train with the model but are not saved with it
        groups.append({"params": list(loss_fn.parameters()), "weight_decay": 0.0})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def backbone_groups(backbone: torch.nn.Module) -> list[set[str]]:
    """The backbone's units of unfreezing, bottom (stem) first: each a set of parameter, buffer and
    module names relative to the backbone.

    timm models group themselves (``group_matcher(coarse=True)``: the stem, each stage, then
    whatever follows the last stage); verikit uses that grouping rather than guessing layer
    names. A backbone without a ``group_matcher`` is split into its top-level children. Groups
    that hold no parameter (a pooling layer, an identity classifier) join the group above them
    (or the top group), so every unit unfreezes something.
    """
    names = ([n for n, _ in backbone.named_parameters()] + [n for n, _ in backbone.named_buffers()]
             + [n for n, _ in backbone.named_modules() if n])
    if callable(getattr(backbone, "group_matcher", None)):
        # timm's own grouping (what its group_parameters/group_modules use), over all names at once
        from timm.models._manipulate import group_with_matcher

        of = group_with_matcher(((n, n) for n in names), backbone.group_matcher(coarse=True), reverse=True)
    else:
        order = {n: k for k, (n, _) in enumerate(backbone.named_children())}
        of = {n: order.get(n.split(".")[0], len(order)) for n in names}
    params = {n for n, _ in backbone.named_parameters()}
    raw: dict[int, set[str]] = {}
    for n, g in of.items():
        raw.setdefault(g, set()).add(n)
    groups: list[set[str]] = []
    pending: set[str] = set()
    for g in sorted(raw):
        pending |= raw[g]
        if pending & params:
            groups.append(pending)
            pending = set()
    if pending:  # parameter-free layers above the last stage
        if groups:
            groups[-1] |= pending
        else:
            groups.append(pending)
    return groups


def frozen_group_count(cfg: TrainConfig, epoch: int, n_groups: int) -> int:
    """How many backbone groups, counted from the bottom, are frozen in ``epoch`` (1-based).

    All of them for the first ``freeze_epochs`` epochs; then all at once are unfrozen, or, with
    ``gradual_unfreeze N``, the top group in the first epoch after the freeze and one more group
    every N epochs.
    """
    if epoch <= cfg.freeze_epochs:
        return n_groups
    if cfg.gradual_unfreeze <= 0:
        return 0
    unfrozen = 1 + (epoch - cfg.freeze_epochs - 1) // cfg.gradual_unfreeze
    return max(0, n_groups - unfrozen)


def set_train_mode(model: Embedder, cfg: TrainConfig, epoch: int) -> int:
    """Train mode for ``epoch``: the backbone frozen (no gradients, batch-norm statistics kept) for the
    first ``freeze_epochs`` epochs, so a pretrained backbone is not disturbed while the freshly
    initialised head still produces poor gradients; then unfrozen all at once or, with
    ``gradual_unfreeze``, one group of :func:`backbone_groups` at a time from the top. Frozen
    layers are in eval mode (batch-norm uses and keeps its running statistics; dropout is off).
    Returns the number of frozen groups (0: the whole backbone trains)."""
    backbone = model.backbone
    if cfg.gradual_unfreeze > 0:
        groups = backbone_groups(backbone)
    else:  # the whole backbone is one unit
        groups = [{n for n, _ in backbone.named_parameters()} | {n for n, _ in backbone.named_modules() if n}]
    n_frozen = frozen_group_count(cfg, epoch, len(groups))
    frozen = set().union(*groups[:n_frozen])
    model.train()
    for name, p in backbone.named_parameters():
        p.requires_grad_(name not in frozen)
    if n_frozen == len(groups):
        backbone.eval()
    else:
        for name, m in backbone.named_modules():
            if name in frozen:
                m.training = False  # this module only: a frozen container may hold unfrozen children
    if cfg.freeze_batchnorm:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    return n_frozen


@dataclass
class _Parts:
    """What one epoch needs, built once per run."""

    net: torch.nn.Module              # the model, DDP-wrapped under torchrun
    loss_fn: torch.nn.Module          # wrapped to see the global batch under torchrun (proxy losses too)
    miner: Any
    proxies: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    autocast: bool
    world: World
    loss_divisor: float


def _train_epoch(parts: _Parts, loader: DataLoader, cfg: TrainConfig, epoch: int, device: torch.device,
                 on_step: StepCallback | None) -> tuple[float, int, float]:
    """One pass over ``loader``; returns (mean loss, images this process saw, seconds)."""
    start, seen, total_loss, steps = time.perf_counter(), 0, 0.0, len(loader)
    model = unwrap(parts.net)
    for step, (x, y) in enumerate(loader, 1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=parts.autocast):
            emb = parts.net(x)
        emb = emb.float()  # losses and miners in float32: margins of 0.1 drown in float16 rounding
        loss = (parts.loss_fn(emb, y, parts.miner(emb, y)) if parts.miner is not None
                else parts.loss_fn(emb, y))
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        sync_loss_gradients(parts.proxies, parts.world)
        parts.scaler.unscale_(parts.optimizer)  # clip the true gradients, not the scaled ones
        if cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        parts.scheduler.step()
        seen += len(y)
        total_loss += loss.item() / parts.loss_divisor
        if on_step:
            on_step(epoch, step, steps, total_loss / step,
                    seen * parts.world.world_size / (time.perf_counter() - start))
    return total_loss / max(1, steps), seen, time.perf_counter() - start


def normalise_like_the_weights(model: Embedder, cfg: TrainConfig) -> InputSpec:
    """The InputSpec to train with. Starting from pretrained weights (``weights`` file or hub), the
    images are normalised with the mean and std those weights were trained with (ImageNet's for
    most timm checkpoints), as timm's own data config would; the model records it, so inference
    normalises the same way. From random weights, the default (0.5, 0.5) stays."""
    spec = model.config.input_spec
    if not (cfg.backbone_options.get("weights") or cfg.backbone_options.get("pretrained")):
        return spec
    norm = pretrained_normalization(model.backbone, spec.channels)
    if norm is None:
        return spec
    spec = dataclasses.replace(spec, mean=norm[0], std=norm[1])
    model.config = dataclasses.replace(model.config, input_spec=spec)
    return spec


def train(data_dir: str | Path, cfg: TrainConfig, *, on_step: StepCallback | None = None,
          on_epoch: EpochCallback | None = None, on_loaded: Callable[[int], None] | None = None,
          split: Split | None = None, out_dir: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Train an embedder on a folder-per-identity dataset; returns the kept epoch's model.

    With ``out_dir``, a checkpoint (``out_dir/checkpoint``), ``train_log.csv``, TensorBoard logs
    and the resolved ``train_config.json`` are written there after every epoch, and ``resume``
    continues from the last completed epoch. Under ``torchrun`` every process calls this; only
    rank 0 validates, writes and calls ``on_epoch``.
    """
    check_config(cfg)
    if resume and out_dir is None:
        raise DataError("resuming needs the output directory that holds the checkpoint")
    with process_group(cfg.device) as (world, device):
        return _train(data_dir, cfg, world, device, on_step, on_epoch, on_loaded, split,
                      Path(out_dir) if out_dir is not None else None, resume)


def _train(data_dir, cfg: TrainConfig, world: World, device: torch.device, on_step, on_epoch, on_loaded,
           split: Split | None, out_dir: Path | None, resume: bool) -> TrainResult:
    seed_everything(cfg.seed)
    if split is None:
        split = identity_split(scan_identity_folders(data_dir, min_images=2), cfg.val_fraction, cfg.seed)
    spec = cfg.input_spec()
    model = Embedder.build(cfg.backbone, embedding_size=cfg.embedding_size, pooling=cfg.pooling, neck=cfg.neck,
                           input_spec=spec, backbone_options=cfg.backbone_options, tta=cfg.model_tta(),
                           embed_from=cfg.embed_from,
                           # recorded in config.json: the gallery scores with the measure trained on
                           similarity=parse_measure(cfg.distance).spec).to(device)
    spec = normalise_like_the_weights(model, cfg)
    dataset = LabelledImages(split.train, spec, augmentation(spec, cfg.augment), on_loaded=on_loaded)
    sampler = EpochSampler(lambda: build_sampler(dataset.labels, cfg.m_per_class, cfg.batch_size, len(dataset)),
                           cfg.batch_size, cfg.seed, world.rank, world.world_size)
    loader = DataLoader(dataset, batch_size=sampler.local_batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.workers, pin_memory=device.type == "cuda")
    loss_fn = build_loss(cfg.loss, margin=cfg.margin, num_classes=len(dataset.names),
                         embedding_size=cfg.embedding_size, distance=cfg.distance).to(device)
    # Proxy losses compare each embedding with every identity's proxy: there is nothing to mine.
    miner = None if cfg.loss in PROXY_LOSSES else build_miner(
        cfg.miner, margin=0.2 if cfg.margin is None else cfg.margin, distance=cfg.distance)
    optimizer = build_optimizer(cfg, model, loss_fn)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, len(loader)))
    autocast = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=autocast)

    history: list[EpochRecord] = []
    best_state: dict[str, torch.Tensor] | None = None
    if resume:
        ckpt = load_checkpoint(out_dir, device)
        history, best_state = _restore(ckpt, model, loss_fn, optimizer, scheduler, scaler)
    # Wrapped after restoring, so DDP broadcasts the restored weights; in the modes of the most
    # unfrozen (last) epoch, but with every parameter requiring grad, which DDP needs to sync each
    # part of the backbone once it is unfrozen.
    set_train_mode(model, cfg, epoch=max(cfg.epochs, cfg.freeze_epochs + 1))
    model.requires_grad_(True)
    wrapped_loss, wrapped_miner = wrap_loss_and_miner(loss_fn, miner, world)
    partly_frozen = cfg.freeze_epochs > 0 or cfg.gradual_unfreeze > 0
    parts = _Parts(wrap_model(model, world, device, find_unused=partly_frozen), wrapped_loss,
                   wrapped_miner, list(loss_fn.parameters()) if world.distributed else [], optimizer, scheduler,
                   scaler, autocast, world, loss_scale(world))
    writing = out_dir is not None and world.is_main
    log = RunLog(out_dir, start_epoch=len(history) + 1) if writing else None
    if writing:
        write_config(cfg, out_dir / CONFIG_FILE)

    stopped = False
    try:
        for epoch in range(len(history) + 1, cfg.epochs + 1):
            sampler.set_epoch(epoch)
            # Re-seeded every epoch (per process: augmentations differ between ranks), so a resumed
            # epoch draws exactly what the uninterrupted run drew; no RNG state is checkpointed.
            seed_everything(epoch_seed(cfg.seed, epoch) + world.rank)
            set_train_mode(model, cfg, epoch)
            loss, seen, seconds = _train_epoch(parts, loader, cfg, epoch, device, on_step)
            record = EpochRecord(epoch, loss, seen * world.world_size / seconds, None, seconds,
                                 lr=optimizer.param_groups[1]["lr"])  # the head's, as the last step left it
            if world.is_main:
                val = validate(model, split.val)
                if val is not None:
                    record.val_eer = val.eer
                    record.val_tar_at_far_1e_2, record.val_tar_at_far_1e_3 = val.tar_at_far
                history.append(record)
                if cfg.keep == "best" and _best_epoch(history) == epoch:
                    best_state = copy.deepcopy(model.state_dict())
                if writing:
                    save_checkpoint(out_dir, _checkpoint(epoch, cfg, model, loss_fn, optimizer, scheduler,
                                                         scaler, history, best_state))
                    log.write(history)
                if on_epoch:
                    on_epoch(record)
            else:
                history.append(record)
            best = _best_epoch(history)
            stopped = broadcast_flag(cfg.patience > 0 and best is not None and epoch - best >= cfg.patience,
                                     world, device)
            if stopped:
                break
    finally:
        if log is not None:
            log.close()
    return _finish(model, cfg, history, best_state, split, stopped, world)


def _best_epoch(history: list[EpochRecord]) -> int | None:
    """The epoch with the lowest validation EER (the earliest of ties); None without validation."""
    scored = [r for r in history if r.val_eer is not None]
    return min(scored, key=lambda r: r.val_eer).epoch if scored else None


def _finish(model: Embedder, cfg: TrainConfig, history: list[EpochRecord], best_state, split: Split,
            stopped: bool, world: World) -> TrainResult:
    # "best" keeps the lowest validation EER; "last" (or no validation set) keeps the last epoch.
    # On a handful of validation identities the EER jumps by several points between
    # neighbouring epochs, so "best" there mostly picks noise: "last" is the default.
    kept_epoch = history[-1].epoch if history else 0
    if cfg.keep == "best" and best_state is not None:
        model.load_state_dict(best_state)
        kept_epoch = _best_epoch(history) or kept_epoch
    kept_eer = next((r.val_eer for r in history if r.epoch == kept_epoch), None)
    result = TrainResult(model, history, kept_epoch, kept_eer, split, stopped_early=stopped, rank=world.rank)
    model.config.training = {"config": config_to_dict(cfg), **result.summary()}
    model.eval()  # after the config is final: an eval-mode model caches its fingerprint
    return result


def _checkpoint(epoch: int, cfg: TrainConfig, model: Embedder, loss_fn, optimizer, scheduler, scaler,
                history: list[EpochRecord], best_state) -> Checkpoint:
    return Checkpoint(epoch=epoch, model=model.state_dict(), best_model=best_state,
                      states={"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "loss": loss_fn.state_dict(), "scaler": scaler.state_dict()},
                      progress={"history": [asdict(r) for r in history], "config": config_to_dict(cfg)})


def _restore(ckpt: Checkpoint, model: Embedder, loss_fn, optimizer, scheduler, scaler):
    """Load a checkpoint into the freshly built run; returns (history, best weights or None)."""
    try:
        model.load_state_dict(ckpt.model)
        loss_fn.load_state_dict(ckpt.states["loss"])
        optimizer.load_state_dict(ckpt.states["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise DataError(f"the checkpoint does not fit this configuration (did the backbone, embedding size, "
                        f"loss or training identities change?): {str(exc).splitlines()[0]}") from exc
    scheduler.load_state_dict(ckpt.states["scheduler"])
    scaler.load_state_dict(ckpt.states["scaler"])
    history = [EpochRecord(**r) for r in ckpt.progress.get("history", [])]
    return history, ckpt.best_model
