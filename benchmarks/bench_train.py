"""Training throughput: ``verikit.train.loop.train`` versus a bare pytorch-metric-learning loop.

Both train the same model (an Embedder: backbone -> head -> L2) with the same loss
(TripletMarginLoss, margin 0.2, cosine), miner (BatchHardMiner, cosine), sampler
(MPerClassSampler, m=4) and batch size (32) on real images (bundled ORL, s1-s30, grey, 64 px, no
augmentation), one after the other in the same process and in alternating rounds, with 1 and 2
torch threads.

The bare loop is the fastest version one would write by hand: images decoded and resized once
into one uint8 tensor (untimed), each batch indexed and normalised in place, then forward, miner,
loss, backward, AdamW step. No scheduler, no clipping, no DataLoader.

verikit's figure is its own per-epoch images/s (the training pass only: batches from its
DataLoader, forward, loss, backward, clipping, AdamW, LR schedule). Validation is switched off
in the timed run (no held-out identities are passed) and measured separately: its time per
epoch is reported next to the ratio, as is the end-to-end wall time of ``train()`` (decoding,
model build, all epochs). Epoch 1 of every run is a warm-up and is left out of both figures.

Run: ``.venv/bin/python benchmarks/bench_train.py [--backbone timm:resnet18] [--epochs 3] [--rounds 2]``.
Writes ``benchmarks/results/train.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from verikit.io import scan_identity_folders
from verikit.models.embedder import Embedder
from verikit.structures import InputSpec
from verikit.train.data import Split
from verikit.train.config import TrainConfig
from verikit.train.loop import train, validate

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ORL = REPO / "data" / "orl_faces"


def orl_split() -> Split:
    """ORL's identity-disjoint protocol: s1-s30 train, s31-s40 held out."""
    items = scan_identity_folders(ORL, min_images=2).items
    train_ids = {f"s{i}" for i in range(1, 31)}
    return Split([it for it in items if it[0] in train_ids], [it for it in items if it[0] not in train_ids])


def config(args) -> TrainConfig:
    return TrainConfig(backbone=args.backbone, embedding_size=128, image_size=(args.size, args.size), channels=1,
                       epochs=args.epochs, batch_size=args.batch, m_per_class=4, lr=1e-3, loss="triplet",
                       miner="batch_hard", distance="cosine", augment="none", workers=0, device="cpu", seed=0)


def run_verikit(split: Split, cfg: TrainConfig) -> dict:
    start = time.perf_counter()
    result = train(None, cfg, split=Split(split.train, []))  # no validation inside the timed run
    wall = time.perf_counter() - start
    timed = result.history[1:]
    images = sum(r.images_per_s * r.seconds for r in timed)
    t = time.perf_counter()
    validate(result.model, split.val)
    return {"images_per_s": images / sum(r.seconds for r in timed), "train_wall_s": wall,
            "validation_s": time.perf_counter() - t, "epoch_s": [round(r.seconds, 3) for r in result.history]}


def run_bare(split: Split, cfg: TrainConfig) -> dict:
    from pytorch_metric_learning import distances, losses, miners, samplers

    torch.manual_seed(cfg.seed)
    size = tuple(cfg.image_size)
    names = sorted({n for n, _ in split.train})
    labels = torch.tensor([names.index(n) for n, _ in split.train])
    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("L").resize(size[::-1], Image.BILINEAR)))
                          for _, p in split.train])[:, None]   # (N, 1, H, W) uint8, untimed
    spec = cfg.input_spec()
    mean, std = torch.tensor(spec.mean).view(1, -1, 1, 1), torch.tensor(spec.std).view(1, -1, 1, 1)
    model = Embedder.build(cfg.backbone, embedding_size=cfg.embedding_size, input_spec=spec)
    loss_fn = losses.TripletMarginLoss(margin=0.2, distance=distances.CosineSimilarity())
    miner = miners.BatchHardMiner(distance=distances.CosineSimilarity())
    sampler = samplers.MPerClassSampler(labels, m=cfg.m_per_class, batch_size=cfg.batch_size,
                                        length_before_new_iter=len(labels))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    epoch_s, seen = [], []
    for _ in range(cfg.epochs):
        order = torch.tensor(list(iter(sampler)))
        start, n = time.perf_counter(), 0
        for b in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            x = (images[idx].float() / 255 - mean) / std
            y = labels[idx]
            emb = model(x)
            loss = loss_fn(emb, y, miner(emb, y))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(y)
        epoch_s.append(time.perf_counter() - start)
        seen.append(n)
    return {"images_per_s": sum(seen[1:]) / sum(epoch_s[1:]), "epoch_s": [round(s, 3) for s in epoch_s]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="timm:resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3, help="per run; the first is a warm-up")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs must be >= 2 (the first epoch is a warm-up)")
    split, cfg = orl_split(), config(args)
    out: dict = {"backbone": args.backbone, "image_size": args.size, "batch_size": args.batch, "channels": 1,
                 "loss": "triplet", "miner": "batch_hard", "sampler": "MPerClassSampler(m=4)",
                 "train_images": len(split.train), "epochs_per_run": args.epochs, "rounds": args.rounds,
                 "validation": "off in verikit's timed run; measured separately", "by_threads": {}}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        bare, ours = [], []
        for _ in range(args.rounds):  # alternate so drift in a shared machine's load hits both
            bare.append(run_bare(split, cfg))
            ours.append(run_verikit(split, cfg))
        b = statistics.median(r["images_per_s"] for r in bare)
        v = statistics.median(r["images_per_s"] for r in ours)
        row = {"bare_images_per_s": round(b, 1), "verikit_images_per_s": round(v, 1), "ratio": round(v / b, 3),
               "verikit_validation_s_per_epoch": round(statistics.median(r["validation_s"] for r in ours), 2),
               "verikit_train_wall_s": round(statistics.median(r["train_wall_s"] for r in ours), 2),
               "bare_epoch_s": [r["epoch_s"] for r in bare], "verikit_epoch_s": [r["epoch_s"] for r in ours]}
        out["by_threads"][str(threads)] = row
        print(f"threads={threads}: bare {b:.1f} img/s, verikit {v:.1f} img/s, ratio {v / b:.3f} (target >= 0.9); "
              f"validation on s31-s40 {row['verikit_validation_s_per_epoch']} s/epoch, not in verikit's figure",
              flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'train.json'}")


if __name__ == "__main__":
    main()
