"""Identity-disjoint verification accuracy of several losses on ORL and Extended Yale B, against raw pixels.

Protocols (people tested are never trained on; all pairs of the test people are scored):

- ORL (``data/orl_faces``): train s1-s30, test all pairs of s31-s40 (400 images: 450 genuine,
  4,500 impostor pairs).
- Extended Yale B, cropped (``$VERIKIT_DATA/cropped_yale_b``, default ``../shared/data``): the
  38 ``yaleBxx`` folders sorted by name, the first 28 (yaleB01-yaleB29; there is no yaleB14)
  train, the last 10 (yaleB30-yaleB39) are tested on all their pairs (about 640 images: ~20,000
  genuine, ~184,000 impostor pairs). Strong lighting changes: a robustness-to-lighting test.
  ``.info`` files and ``excluded_listing/`` are not images; verikit's folder scan skips them.

The same recipe for every loss (the demo's): narrow ResNet-18 (channels 32-64-128-256) from
random weights (no pretrained weights offline), grey 64x64, 128-d, batch 32 (m=4), AdamW 2e-3,
1 warm-up epoch then cosine, strong augmentation, seed 0 (``--seeds 0,1,2`` trains each loss once per seed
and adds a mean/range table: training noise, which the subject bootstrap does not cover), a fixed epoch budget per dataset
(``--orl-epochs``, ``--yale-epochs``). Losses: contrastive (all pairs in the batch), triplet +
batch-hard, multi-similarity (+ its miner), normalized softmax, ArcFace.

Every model is saved with test-time mirroring (``tta: hflip``, ``verikit train --tta``'s ``auto``
for strong augmentation), so its embeddings average each photo with its mirror image; each row
also records the same weights scored single-view (``single_view``), to show what mirroring adds,
and with templates read from the pooled backbone features under the neck (``embed_from_pooled``,
``verikit train --embed-from pooled``; mirrored too).

Scoring is what ``verikit benchmark`` does: cosine of L2-normalised embeddings, EER and TAR at
FAR 1e-2 / 1e-3 from :func:`verikit.evaluate.evaluation.evaluate_verification` with its
subject-bootstrap 95% interval (1,000 replicates over test people). The baseline, scored the
same way in the same run: raw pixels (grey, area-downsampled to 16x16, flattened, L2-normalised).

Run: ``.venv/bin/python benchmarks/bench_accuracy.py [--threads 1] [--losses arcface,triplet]
[--datasets orl,yale] [--orl-epochs 40] [--yale-epochs 12]``. Writes
``benchmarks/results/accuracy.json`` (after every row) and prints a markdown table.

``--equalize none,histogram`` (default ``none``: the rows above) trains and scores every loss once per
listed mode of the model's photometric normalisation (``InputSpec.equalize``, ``verikit train
--equalize``), and scores the raw-pixel baseline with the same normalisation (the grey image is
histogram-equalised at full size, then box-downsampled). ``--append`` keeps the rows already in
``--out`` (e.g. to add a longer run to ``benchmarks/results/accuracy_equalize.json``).

``--transfer`` adds one more ORL row (task 4 of the training issue): pretrain on all 38 Yale B
people (disjoint from ORL's), then fine-tune on ORL s1-s30 with a frozen-backbone warm-up and
gradual unfreezing, tested on s31-s40 like the other rows.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from verikit.evaluate.evaluation import evaluate_verification, pair_scores
from verikit.io import scan_identity_folders
from verikit.models.embedder import Embedder
from verikit.models.inference import embed_files
from verikit.train.data import Split
from verikit.train.config import TrainConfig
from verikit.train.loop import train

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ORL = REPO / "data" / "orl_faces"
SHARED = Path(os.environ.get("VERIKIT_DATA", REPO.parent / "shared" / "data"))
YALE = SHARED / "cropped_yale_b"
FARS = (1e-2, 1e-3)
RAW_SIZE = 16

# loss -> miner ("none": contrastive on every pair of the batch; proxy losses take no miner)
LOSSES = {"contrastive": "none", "triplet": "batch_hard", "multi_similarity": "multi_similarity",
          "normalized_softmax": "none", "arcface": "none"}
BACKBONE, OPTIONS = "timm:resnet18", {"channels": [32, 64, 128, 256]}


def orl_split() -> Split:
    items = scan_identity_folders(ORL, min_images=2).items
    train_ids = {f"s{i}" for i in range(1, 31)}
    return Split([it for it in items if it[0] in train_ids], [it for it in items if it[0] not in train_ids])


def yale_split(n_train: int = 28) -> Split:
    items = scan_identity_folders(YALE, min_images=2).items
    names = sorted({n for n, _ in items})
    train_ids = set(names[:n_train])
    return Split([it for it in items if it[0] in train_ids], [it for it in items if it[0] not in train_ids])


def config(loss: str, epochs: int, **kw) -> TrainConfig:
    base = dict(backbone=BACKBONE, backbone_options=dict(OPTIONS), embedding_size=128, image_size=(64, 64),
                channels=1, epochs=epochs, batch_size=32, m_per_class=4, lr=2e-3, loss=loss,
                miner=LOSSES.get(loss, "none"), augment="strong", workers=0, device="cpu", seed=0, val_fraction=0.0)
    return TrainConfig(**{**base, **kw})


def score(embeddings: np.ndarray, labels: list[str], n_boot: int) -> dict:
    """All pairs, cosine, evaluated with the subject bootstrap (what ``verikit benchmark`` reports)."""
    names = sorted(set(labels))
    subj = np.array([names.index(n) for n in labels], np.int64)
    a, b = np.triu_indices(len(labels), 1)
    s = pair_scores(embeddings, a, b)
    g = subj[a] == subj[b]
    ev = evaluate_verification(s[g], s[~g], subj[a][g], (subj[a][~g], subj[b][~g]), fars=FARS, n_boot=n_boot)
    return {"eer": ev["eer"]["value"], "eer_ci": ev["eer"]["bootstrap_ci"],
            "tar_at_far_1e_2": ev["tar_at_far"][0]["tar"], "tar_at_far_1e_3": ev["tar_at_far"][1]["tar"],
            "tar_at_far_1e_2_ci": ev["tar_at_far"][0]["tar_bootstrap_ci"],
            "tar_at_far_1e_3_ci": ev["tar_at_far"][1]["tar_bootstrap_ci"],
            "tar_at_far_1e_3_supported": ev["tar_at_far"][1]["supported"],
            "n_genuine": ev["n_genuine"], "n_impostor": ev["n_impostor"], "n_subjects": ev["n_subjects"]}


def raw_pixels(items, equalize: str = "none") -> tuple[np.ndarray, list[str]]:
    rows = []
    for _, p in items:
        with Image.open(p) as im:
            grey = im.convert("L")
            if equalize == "histogram":
                grey = equalize_grey(grey)
            x = np.asarray(grey.resize((RAW_SIZE, RAW_SIZE), Image.BOX), np.float32).ravel()
        rows.append(x / max(np.linalg.norm(x), 1e-12))
    return np.stack(rows), [n for n, _ in items]


def equalize_grey(grey: Image.Image) -> Image.Image:
    """The model's histogram equalisation (torchvision's) applied to a grey PIL image."""
    from torchvision.transforms.v2 import functional as F

    t = F.equalize(torch.from_numpy(np.asarray(grey, np.uint8).copy())[None])
    return Image.fromarray(t[0].numpy())


def variant(model: Embedder, **changes) -> Embedder:
    """The same weights read another way at inference (``tta``, ``embed_from``)."""
    twin = Embedder(dataclasses.replace(model.config, **changes), copy.deepcopy(model.backbone))
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def model_embeddings(model, items) -> tuple[np.ndarray, list[str]]:
    out = embed_files(model, [p for _, p in items], batch_size=128, num_workers=0)
    label_of = {p: n for n, p in items}
    assert not out.failures, out.failures
    return out.embeddings, [label_of[p] for p in out.paths]


def fmt(r: dict) -> str:
    lo, hi = r["eer_ci"] or (float("nan"), float("nan"))
    star = "" if r["tar_at_far_1e_3_supported"] else "*"  # fewer than 30 impostor errors expected at 1e-3
    return (f"{100 * r['eer']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] | {100 * r['tar_at_far_1e_2']:.1f}% | "
            f"{100 * r['tar_at_far_1e_3']:.1f}%{star}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", default="orl,yale")
    ap.add_argument("--losses", default=",".join(LOSSES))
    ap.add_argument("--orl-epochs", type=int, default=40)
    ap.add_argument("--yale-epochs", type=int, default=12)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seeds", default="0", help="comma list of training seeds; with several, a mean/range table")
    ap.add_argument("--equalize", default="none", help="comma list of InputSpec.equalize modes: none, histogram")
    ap.add_argument("--append", action="store_true", help="keep the rows already in --out and add these")
    ap.add_argument("--transfer", action="store_true", help="add the Yale B -> ORL pretrain/fine-tune row")
    ap.add_argument("--transfer-loss", default="normalized_softmax")
    ap.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(x) for x in args.seeds.split(",") if x]
    splits = {"orl": ("ORL: train s1-s30, all pairs of s31-s40", orl_split, args.orl_epochs),
              "yale": ("Extended Yale B cropped: train the first 28 people by name (yaleB01-yaleB29), "
                       "all pairs of the last 10 (yaleB30-yaleB39)", yale_split, args.yale_epochs)}
    out = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": args.threads,
           "backbone": BACKBONE, "backbone_options": OPTIONS, "pretrained": False,
           "recipe": "grey 64x64, 128-d, batch 32 (m=4), AdamW 2e-3, warm-up 1 + cosine, strong augmentation, tta hflip; seeds: see rows",
           "baseline": f"raw pixels: grey, box-downsampled to {RAW_SIZE}x{RAW_SIZE}, flattened, L2-normalised; cosine",
           "scoring": "all pairs, cosine; EER / TAR@FAR from verikit.evaluate.evaluation.evaluate_verification, "
                      f"subject bootstrap {args.bootstrap} replicates, 95% percentile interval",
           "datasets": {}, "rows": []}
    modes = [m for m in args.equalize.split(",") if m]
    if args.append and args.out.is_file():
        old = json.loads(args.out.read_text())
        out["rows"], out["datasets"] = old.get("rows", []), old.get("datasets", {})
        out["earlier_runs"] = [*old.get("earlier_runs", []), {k: old[k] for k in ("created", "threads") if k in old}]
    lines = ["| dataset | loss | backbone | EER [95% CI] | TAR@1e-2 | TAR@1e-3 | train s | EER vs raw pixels | "
             "EER single view | EER pooled |", "|---|---|---|---|---|---|---|---|---|---|"]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")

    for ds, eq in [(ds, eq) for ds in args.datasets.split(",") for eq in modes]:
        protocol, make_split, epochs = splits[ds]
        split = make_split()
        tag = "" if eq == "none" else f", equalize={eq}"
        raw = score(*raw_pixels(split.val, eq), args.bootstrap)
        entry = {**out["datasets"].get(ds, {}), "protocol": protocol, "train_images": len(split.train),
                 "test_images": len(split.val)}
        if modes == ["none"] and not args.append:  # the default run: accuracy.json's layout
            entry["epochs"] = epochs
        if eq == "none":
            entry["raw_pixels"] = raw
        else:
            entry.setdefault("raw_pixels_equalized", {})[eq] = raw
        out["datasets"][ds] = entry
        lines.append(f"| {ds} | raw pixels {RAW_SIZE}x{RAW_SIZE}{tag} (baseline) | - | {fmt(raw)} | 0 | 1.00 | - | - |")
        print(lines[-1], flush=True)
        save()
        runs = [(loss, config(loss, epochs, equalize=eq, seed=seed), seed)
                for loss in args.losses.split(",") if loss for seed in seeds]
        if ds == "orl" and args.transfer and eq == "none":
            runs.append(("transfer", None, 0))
        for loss, cfg, seed in runs:
            start = time.perf_counter()
            if loss == "transfer":
                model, detail = transfer(args)
                label = f"{args.transfer_loss}, Yale B pretrain -> ORL fine-tune"
            else:
                model, detail = train(None, cfg, split=Split(split.train, [])).model, {"epochs": epochs}
                label = loss + tag
            train_s = time.perf_counter() - start
            r = score(*model_embeddings(model, split.val), args.bootstrap)
            one = score(*model_embeddings(variant(model, tta="none"), split.val), args.bootstrap)
            pooled = score(*model_embeddings(variant(model, embed_from="pooled"), split.val), args.bootstrap)
            row = {"dataset": ds, "loss": label, "seed": seed, "equalize": eq if loss != "transfer" else "none",
                   "tta": model.config.tta, "single_view": one, "embed_from_pooled": pooled,
                   "backbone": f"{BACKBONE} {OPTIONS}", "train_s": round(train_s, 1),
                   **detail, **r, "raw_pixels_eer": raw["eer"], "eer_minus_raw": r["eer"] - raw["eer"], "eer_ratio_to_raw": r["eer"] / raw["eer"]}
            out["rows"].append(row)
            save()
            lines.append(f"| {ds} | {label}{'' if len(seeds) == 1 else f' (seed {seed})'} | resnet18 narrow | "
                         f"{fmt(r)} | {train_s:.0f} | "
                         f"{100 * row['eer_minus_raw']:+.1f} pt ({row['eer_ratio_to_raw']:.2f}x) | "
                         f"{100 * one['eer']:.1f}% | {100 * pooled['eer']:.1f}% |")
            print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    if len(seeds) > 1:
        print("\n" + seed_summary(out["rows"], seeds))
    print("\n* below the rule-of-30 floor (too few impostor pairs for FAR 1e-3): indicative only")
    print(f"\nwrote {args.out} ({args.threads} torch thread(s))")


def seed_summary(rows: list[dict], seeds: list[int]) -> str:
    """Per dataset and loss: EER mean and range over the training seeds, for each way of reading
    the model. Training noise, which the subject bootstrap (over test people) does not cover."""
    out = [f"| dataset | loss | EER over seeds {seeds}: mean [min, max] | single view | pooled |", "|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("seed") in seeds and "single_view" in r:  # rows --append kept from older runs lack the variants
            groups.setdefault((r["dataset"], r["loss"]), []).append(r)

    def agg(values: list[float]) -> str:
        return f"{100 * np.mean(values):.1f}% [{100 * min(values):.1f}, {100 * max(values):.1f}]"
    for (ds, loss), rs in groups.items():
        out.append(f"| {ds} | {loss} | {agg([r['eer'] for r in rs])} | {agg([r['single_view']['eer'] for r in rs])} "
                   f"| {agg([r['embed_from_pooled']['eer'] for r in rs])} |")
    return "\n".join(out)


def transfer(args):
    """Pretrain on all 38 Yale B people, fine-tune on ORL s1-s30 (gradual unfreezing)."""
    yale = scan_identity_folders(YALE, min_images=2).items
    pre_run = train(None, config(args.transfer_loss, args.yale_epochs), split=Split(list(yale), []))
    pre = pre_run.model
    ft_epochs = args.orl_epochs
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "yale_backbone.safetensors"  # what `verikit train --weights FILE` reads
        save_file({k: v.contiguous() for k, v in pre.backbone.state_dict().items()}, str(weights))
        cfg = config(args.transfer_loss, ft_epochs, backbone_options={**OPTIONS, "weights": str(weights)},
                     freeze_epochs=2, gradual_unfreeze=2, backbone_lr_scale=0.3)
        model = train(None, cfg, split=Split(orl_split().train, [])).model
    return model, {"epochs": ft_epochs, "pretrain_epochs": args.yale_epochs, "pretrain": "all 38 Yale B people",
                   "pretrain_loss_first_last": [round(pre_run.history[0].loss, 4), round(pre_run.history[-1].loss, 4)],
                   "freeze_epochs": 2, "gradual_unfreeze": 2, "backbone_lr_scale": 0.3}


if __name__ == "__main__":
    main()
