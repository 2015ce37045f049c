"""Backbone families on real data: ORL s1-s30 train, EER on all pairs of s31-s40 (450 genuine, 4,500 impostor).

One row per convolution family registered as a verikit backbone (mobilenet, inception, xception,
dilated_resnet) and the plain ``timm:resnet18`` for reference: parameters, training time,
validation EER and TAR at FAR 1e-2 after a few epochs from random weights (no network here, so
no pretrained weights), and CPU inference images/s at the training size (batch 32). The same
recipe for all: triplet loss, batch-hard miner, cosine, batch 32 (m=4), AdamW 1e-3, light
augmentation, grey 64 px (Inception's stem needs 75 px: it upsamples 64 px inputs to 75).

A few epochs from scratch rank the families by how fast they learn on 300 images; they are not
their accuracy after a full schedule or from pretrained weights.

Run: ``.venv/bin/python benchmarks/bench_backbones.py [--epochs 4] [--only mobilenet,dilated_resnet]``.
Writes ``benchmarks/results/backbones.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from verikit.io import scan_identity_folders
from verikit.train.data import Split
from verikit.train.config import TrainConfig
from verikit.train.loop import train, validate

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ORL = REPO / "data" / "orl_faces"

FAMILIES = {
    "timm:resnet18": ("timm:resnet18", {}),
    "mobilenet": ("mobilenet:mobilenetv3_large_100", {}),
    "inception": ("inception:inception_v3", {}),
    "xception": ("xception:xception41", {}),
    "dilated_resnet": ("dilated_resnet:resnet50", {"output_stride": 16}),
}


def orl_split() -> Split:
    items = scan_identity_folders(ORL, min_images=2).items
    train_ids = {f"s{i}" for i in range(1, 31)}
    return Split([it for it in items if it[0] in train_ids], [it for it in items if it[0] not in train_ids])


def images_per_s(model, size: int, batch: int = 32, reps: int = 3) -> float:
    x = torch.randn(batch, model.input_spec.channels, size, size)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(reps):
            model(x)
    return batch * reps / (time.perf_counter() - start)


def run(family: str, spec: str, options: dict, split: Split, args) -> dict:
    cfg = TrainConfig(backbone=spec, backbone_options=options, embedding_size=128, pooling=args.pooling,
                      image_size=(args.size, args.size), channels=1, epochs=args.epochs, batch_size=32, m_per_class=4,
                      lr=1e-3, loss="triplet", miner="batch_hard", augment="light", workers=0, device="cpu", seed=0)
    start = time.perf_counter()
    result = train(None, cfg, split=Split(split.train, []))  # validated once, below
    train_s = time.perf_counter() - start
    model = result.model.eval()
    val = validate(model, split.val)
    row = {"family": family, "backbone": spec, "options": options,
           "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "train_s": round(train_s, 1), "eer": round(val.eer, 4), "tar_at_far_1e_2": round(val.tar_at_far[0], 4),
           "cpu_images_per_s": round(images_per_s(model, args.size), 1),
           "final_loss": round(result.history[-1].loss, 4)}
    print(f"{family:<15} {spec:<34} {row['parameters_m']:>6.2f}M  train {row['train_s']:>6.1f}s  "
          f"EER {100 * row['eer']:5.1f}%  TAR@1e-2 {100 * row['tar_at_far_1e_2']:5.1f}%  "
          f"{row['cpu_images_per_s']:>7.1f} img/s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--pooling", default="avg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated family names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [f for f in FAMILIES if not args.only or f in args.only.split(",")]
    split = orl_split()
    out = {"data": "ORL s1-s30 train, s31-s40 all pairs", "epochs": args.epochs, "image_size": args.size,
           "channels": 1, "pooling": args.pooling, "threads": args.threads, "pretrained": False, "rows": []}
    RESULTS.mkdir(exist_ok=True)
    for family in chosen:  # written after every row: a long run that is stopped keeps what it measured
        out["rows"].append(run(family, *FAMILIES[family], split, args))
        (RESULTS / "backbones.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'backbones.json'}")


if __name__ == "__main__":
    main()
