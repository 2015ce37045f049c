"""``verikit segment train`` and ``verikit segment run``: train a segmenter plugin on an
image/mask folder pair, and look at what a segmenter does to images.

A segmenter plugin is trainable when its factory carries a ``train`` function
(:class:`verikit.interfaces.TrainableSegmenter`): ``train(argument, pairs=..., out=..., options=...,
epochs=..., batch_size=..., lr=..., size=..., val_fraction=..., seed=..., device=..., weights=...,
progress=...)`` returning a JSON-able summary (see :mod:`verikit.segment.training`). Commands only
parse, call the library and render; nothing heavy is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (EXIT_PARTIAL, FormatOpt, OutputFormat, QuietOpt, emit, images_with_progress, output_name,
                     progress_bar, report_skipped)
from .detect import DetectorOptionOpt, parse_detector_options
from .pipeline_options import SegmenterOptionOpt

app = typer.Typer(help="Segmenters: train one on image/mask folders, run one on images.", no_args_is_help=True)


def _usage_line(spec: str, out: Path) -> str:
    """The options that load what ``segment train`` wrote, spelled out (a gallery records them)."""
    import json

    from ..segment import WEIGHTS_FILE
    from ..segment.weights import read_sidecar

    weights = out / WEIGHTS_FILE
    parts = [f"--segmenter {spec}", f"-S weights={weights}"]
    for key, value in read_sidecar(str(weights)).get("options", {}).items():
        parts.append(f"-S {key}={value if isinstance(value, str) else json.dumps(value)}")
    return " ".join(parts)


@app.command("train")
def train(
    segmenter: Annotated[str, typer.Argument(help="A trainable segmenter spec, e.g. smp:unet or "
                                                  "torchvision:lraspp_mobilenet_v3_large (`verikit plugins`).",
                                             show_default=False)],
    images: Annotated[Path, typer.Option("--images", help="Folder of images.", show_default=False)],
    masks: Annotated[Path, typer.Option(
        "--masks", help="Folder of masks named like the images (cat.jpg -> cat.png); foreground = value > 127 "
                        "(0/1 label maps: 1).", show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for segmenter.safetensors and segmenter.json.", show_default=False)],
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, help="Passes over the training images.")] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per optimiser step.")] = 4,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate.")] = 1e-3,
    size: Annotated[Optional[int], typer.Option(
        "--size", min=8, help="Square input side (default: the plugin's, 256).", show_default=False)] = None,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", min=0.0, max=0.95, help="Share of pairs held out to pick the best epoch by IoU.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (split, order, augmentation, initial weights).")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N, or auto.")] = "cpu",
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="Start from this state dict (.safetensors or torch file); layers of another shape "
                          "start fresh. Default: random weights.", show_default=False)] = None,
    segmenter_option: SegmenterOptionOpt = None,
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Train a segmenter on an image folder and a mask folder; the best epoch (validation IoU) goes to --out.

    Example: verikit segment train smp:unet --images imgs --masks masks --out seg -S encoder=tu-resnet18
    """
    from ..interfaces import TrainableSegmenter
    from ..registry import parse_spec, segmenters
    from ..segment import WEIGHTS_FILE
    from ..segment.data import find_mask_pairs, split_pairs
    from .common import trainer_of

    name, argument = parse_spec(segmenter)
    trainer = trainer_of(segmenters, name, TrainableSegmenter, "verikit segment train")
    options = parse_detector_options(segmenter_option, param_hint="--segmenter-option")
    pairs = find_mask_pairs(images, masks)
    n_train = len(split_pairs(pairs, val_fraction, seed)[0])
    from ..segment.training import steps_per_epoch  # torch: only once the data is known to be there
    with progress_bar(f"training {segmenter} on {n_train} image(s)", epochs * steps_per_epoch(n_train, batch_size),
                      quiet) as advance:
        summary = trainer(argument, pairs=pairs, out=out, options=options, epochs=epochs, batch_size=batch_size,
                          lr=lr, size=size, val_fraction=val_fraction, seed=seed, device=device,
                          weights=str(weights) if weights else None, progress=advance)
    usage = _usage_line(segmenter, out)
    data = {"segmenter": segmenter, "out": str(out), "weights": str(out / WEIGHTS_FILE), "usage": usage, **summary}
    if fmt is OutputFormat.json:
        emit(data, fmt)
        return
    iou = summary.get("val_iou")
    losses = summary.get("loss_per_epoch") or ["?"]
    scored = (f"validation IoU {iou:.4f} on {summary.get('val_images')} image(s)" if iou is not None
              else "no validation set")
    emit(data, fmt, f"trained {segmenter} on {summary.get('images')} image(s), {epochs} epoch(s), loss "
                    f"{losses[0]} -> {losses[-1]}; best epoch {summary.get('best_epoch')} ({scored})"
                    f"\nuse it with: {usage}")


@app.command("run")
def run(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    segmenter: Annotated[str, typer.Option("--segmenter", "-s", help="Segmenter spec (`verikit plugins` lists them).",
                                           show_default=False)],
    segmenter_option: SegmenterOptionOpt = None,
    detector: Annotated[Optional[str], typer.Option(
        "--detector", "-d", show_default=False,
        help="Segment each detected face instead of the whole image: a detector spec such as haar.")] = None,
    detector_option: DetectorOptionOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", show_default=False,
        help="Write each image's mask (NAME.mask.png, union over its boxes) and background-suppressed image "
             "(NAME.masked.png) to DIR.")] = None,
    background: Annotated[str, typer.Option(
        "--background", help="What suppressed pixels become in --out images: grey, black or white.")] = "grey",
    fmt: FormatOpt = OutputFormat.json,
    quiet: QuietOpt = False,
) -> None:
    """Segment images: the foreground fraction of each (mask >= 0.5) as JSON or a table.

    Without --detector the whole image is the one box. Unreadable images are skipped and listed;
    the exit status is then 4.

    Example: verikit segment run photo.jpg --segmenter smp:unet -S weights=seg/segmenter.safetensors --out masks/
    """
    import numpy as np
    from PIL import Image

    from ..pipeline.segmentation import run_segmenter, suppress_background, whole_image
    from ..pipeline.settings import BACKGROUNDS
    from ..registry import detectors, segmenters

    if background not in BACKGROUNDS:
        raise typer.BadParameter(f"expected one of {', '.join(BACKGROUNDS)}, got {background!r}",
                                 param_hint="--background")
    seg = segmenters.create(segmenter, **parse_detector_options(segmenter_option, param_hint="--segmenter-option"))
    det = detectors.create(detector, **parse_detector_options(detector_option)) if detector else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results, failures, used = [], [], set()
    for path, image in images_with_progress(images, f"segmenting {len(images)} image(s)", quiet, failures):
        dets = det.detect([image])[0] if det is not None else whole_image(image)
        masks = run_segmenter(seg, segmenter, [image], [dets])[0].masks
        union = masks.max(axis=0) if len(masks) else np.zeros((image.size[1], image.size[0]), np.float32)
        row: dict[str, Any] = {
            "image": str(path), "boxes": [[round(float(v), 2) for v in b] for b in dets.boxes],
            "foreground_fraction": round(float((union >= 0.5).mean()), 6),
            "box_foreground_fractions": [_inside_fraction(m, b) for m, b in zip(masks, dets.boxes)]}
        if out is not None:
            target = output_name(out, path, used, ".mask.png")
            Image.fromarray(np.rint(union * 255).astype(np.uint8), "L").save(target)
            masked = target.with_name(target.name[:-len(".mask.png")] + ".masked.png")
            suppress_background(image, union, background).save(masked)
            row.update(mask=str(target), masked=str(masked))
        results.append(row)
    report_skipped(images, failures)
    if fmt is OutputFormat.json:
        emit(results, fmt)
    else:
        from rich.table import Table

        t = Table("image", "boxes", "foreground", "per box")
        for r in results:
            t.add_row(r["image"], str(len(r["boxes"])), f"{r['foreground_fraction']:.3f}",
                      ", ".join(f"{v:.3f}" for v in r["box_foreground_fractions"]))
        emit(results, fmt, t)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


def _inside_fraction(mask: Any, box: Any) -> float:
    """Share of the box's own pixels whose mask value is >= 0.5."""
    import math

    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    inside = mask[y1:max(y1 + 1, math.ceil(box[3])), x1:max(x1 + 1, math.ceil(box[2]))]
    return round(float((inside >= 0.5).mean()), 6) if inside.size else 0.0
