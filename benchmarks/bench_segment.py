"""Segmenters on real photos: mask IoU after training from random weights, and verikit's overhead.

There is no mask dataset in $VERIKIT_DATA (default ../shared/data), so masks are made from the
hand-drawn face boxes of ``dlib_faces``: each box (ignored ones included: they are faces too)
becomes a filled ellipse inscribed in it, the "face region". The image/mask folders are written to
a temporary directory and trained with the same code ``verikit segment train`` runs
(``create.train`` of the plugin) on ``training.xml`` (4 photos), from random weights (nothing can
be downloaded here), no validation split (the last epoch is kept). Scored on ``testing.xml``
(5 photos, 25 faces): each whole photo is segmented (one whole-image box), thresholded at 0.5,
and compared with the ellipse mask: IoU per photo, mean. Baselines in the same run: the same
network untrained, and "everything is face" (IoU = face share of the photo).

Overhead: verikit's ``segment()`` on the 25 test face boxes (context 0.2: crop, resize, batch,
forward, resize back, paste into full-size masks) against the raw network forward on the same
crops already resized and normalised, in batches of the same size; alternating rounds, median;
ratio = raw time / verikit time (1.0 = no overhead). 1 thread unless ``--threads``.

Run: ``.venv/bin/python benchmarks/bench_segment.py [--epochs 50] [--size 192] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from verikit.evaluate.detection.annotations import load_annotations
from verikit.io import load_image
from verikit.registry import segmenters
from verikit.segment.base import context_region, image_tensor, resize_batch
from verikit.segment.data import find_mask_pairs
from verikit.segment.training import mask_iou
from verikit.structures import Detections

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {"smp:unet": {"encoder": "tu-resnet18"}, "torchvision:lraspp_mobilenet_v3_large": {}}


def ellipse_mask(size: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    for x1, y1, x2, y2 in boxes:
        draw.ellipse((x1, y1, x2 - 1, y2 - 1), fill=255)
    return np.asarray(mask) > 127


def write_folders(items, root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for item in items:
        image = load_image(item.path)
        image.save(root / "images" / f"{item.path.stem}.png")
        Image.fromarray(ellipse_mask(image.size, item.boxes).astype(np.uint8) * 255, "L").save(
            root / "masks" / f"{item.path.stem}.png")


def whole(image) -> Detections:
    return Detections([[0, 0, *image.size]], [1], image_size=image.size)


def score(seg, images, truths) -> list[float]:
    return [mask_iou(seg.segment([im], [whole(im)])[0].masks[0] >= 0.5, t) for im, t in zip(images, truths)]


def overhead(seg, images, dets, rounds: int) -> dict:
    """verikit segment() vs the raw forward on the same crops, pre-resized and normalised."""
    crops = []
    for image, d in zip(images, dets):
        pixels = image_tensor(image)
        for box in d.boxes:
            x1, y1, x2, y2 = context_region(box, seg.context, *image.size)
            crops.append(resize_batch(pixels[None, :, y1:y2, x1:x2], seg.input_size)[0])
    batch = seg.normalise(torch.stack(crops))
    model, bs = seg.model, seg.batch_size

    def raw():
        with torch.inference_mode():
            for i in range(0, len(batch), bs):
                model(batch[i:i + bs])

    def ours():
        seg.segment(images, dets)

    ours(), raw()  # warm-up
    t_raw, t_ours = [], []
    for _ in range(rounds):
        for fn, sink in ((raw, t_raw), (ours, t_ours)):
            t = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - t)
    r, o = statistics.median(t_raw), statistics.median(t_ours)
    return {"crops": len(crops), "batch_size": bs, "raw_forward_s": round(r, 4), "verikit_segment_s": round(o, 4),
            "crops_per_s_raw": round(len(crops) / r, 2), "crops_per_s_verikit": round(len(crops) / o, 2),
            "ratio_raw_over_verikit": round(r / o, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--write-folders", type=Path, default=None, metavar="DIR",
                    help="only write the box-ellipse image/mask folders (DIR/train, DIR/test: images/, masks/) "
                         "for `verikit segment train`, and exit")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data") / "dlib_faces"
    train_items, test_items = load_annotations(data / "training.xml"), load_annotations(data / "testing.xml")
    if args.write_folders is not None:
        write_folders(train_items, args.write_folders / "train")
        write_folders(test_items, args.write_folders / "test")
        print(f"wrote {args.write_folders}/train and {args.write_folders}/test (images/, masks/)")
        return
    test_images = [load_image(i.path) for i in test_items]
    truths = [ellipse_mask(im.size, i.boxes) for im, i in zip(test_images, test_items)]
    test_dets = [Detections(i.boxes, np.ones(len(i.boxes)), image_size=im.size) for im, i in zip(test_images, test_items)]
    everything = [float(t.mean()) for t in truths]  # IoU of an all-face mask = face share
    results = {"data": "dlib_faces training.xml (4 photos, 18 faces) -> testing.xml (5 photos, 25 faces); "
                       "masks = ellipses inscribed in the hand-drawn boxes",
               "threads": args.threads, "epochs": args.epochs, "size": args.size, "lr": args.lr,
               "baseline_all_face_iou": round(float(np.mean(everything)), 4), "models": {}}
    print(f"baseline 'everything is face': mean IoU {results['baseline_all_face_iou']:.4f}")
    with tempfile.TemporaryDirectory() as tmp:
        write_folders(train_items, Path(tmp) / "train")
        pairs = find_mask_pairs(Path(tmp) / "train" / "images", Path(tmp) / "train" / "masks")
        for spec in args.models:
            options = MODELS.get(spec, {})
            name, _, arch = spec.partition(":")
            torch.manual_seed(0)
            untrained = segmenters.create(spec, input_size=args.size, **options)
            before = score(untrained, test_images, truths)
            out = Path(tmp) / spec.replace(":", "_")
            start = time.perf_counter()
            summary = segmenters.get(name).train(arch or None, pairs=pairs, out=out, options=options, epochs=args.epochs,
                                                 batch_size=4, lr=args.lr, size=args.size, val_fraction=0.0, seed=0,
                                                 device="cpu", weights=None, progress=None)
            seconds = time.perf_counter() - start
            seg = segmenters.create(spec, weights=str(out / "segmenter.safetensors"))
            after = score(seg, test_images, truths)
            train_iou = score(seg, [load_image(p.image) for p in pairs],
                              [np.asarray(Image.open(p.mask)) > 127 for p in pairs])
            row = {"options": options, "train_seconds": round(seconds, 1),
                   "loss_first_last": [summary["loss_per_epoch"][0], summary["loss_per_epoch"][-1]],
                   "test_iou_untrained": round(float(np.mean(before)), 4),
                   "test_iou_trained": round(float(np.mean(after)), 4),
                   "test_iou_per_photo": [round(v, 4) for v in after],
                   "train_iou_trained": round(float(np.mean(train_iou)), 4),
                   "overhead": overhead(seg, test_images, test_dets, args.rounds)}
            results["models"][spec] = row
            o = row["overhead"]
            print(f"{spec} {options or ''}: trained {args.epochs} epochs in {seconds:.0f} s, loss "
                  f"{row['loss_first_last'][0]} -> {row['loss_first_last'][1]}; test IoU untrained "
                  f"{row['test_iou_untrained']:.4f} -> trained {row['test_iou_trained']:.4f} "
                  f"(train photos {row['train_iou_trained']:.4f})")
            print(f"  overhead on {o['crops']} face crops: raw forward {o['crops_per_s_raw']} crops/s, "
                  f"verikit segment() {o['crops_per_s_verikit']} crops/s, ratio raw/verikit "
                  f"{o['ratio_raw_over_verikit']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "segment.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'segment.json'}")


if __name__ == "__main__":
    main()
