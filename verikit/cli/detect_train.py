"""``verikit detect train``: fine-tune a trainable detector plugin on a box dataset.

A detector plugin is trainable when its factory carries a ``train`` function
(:class:`verikit.interfaces.TrainableDetector`): ``train(argument, items=..., out=..., epochs=...,
weights=..., batch_size=..., lr=..., device=..., seed=..., progress=...)`` returning a JSON-able summary. The
command only parses, reads the annotations and renders; nothing heavy is imported at module level.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import FormatOpt, OutputFormat, QuietOpt, emit, progress_bar


def detect_train(
    annotations: Annotated[Path, typer.Option(
        "--annotations", "-a", help="dlib XML, Pascal VOC XML (file or folder) or CSV path,x1,y1,x2,y2.",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for detector.safetensors and detector.json.", show_default=False)],
    detector: Annotated[Optional[str], typer.Option(
        "--detector", "-d", show_default=False,
        help="A trainable detector spec (default: the installed trainable detector that ranks first).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, help="Passes over the training images.")] = 10,
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="Start from this state dict (.safetensors or torch file); layers of another "
                          "shape (a different class count) start fresh. Default: random weights.",
        show_default=False)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per optimiser step.")] = 2,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate.")] = 1e-4,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (order, flips, initial weights).")] = 0,
    images_root: Annotated[Optional[Path], typer.Option(
        "--images", help="Folder the annotation's image paths are relative to (default: the file's folder).",
        show_default=False)] = None,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="VOC only: train on objects of this class name (default: every object).",
        show_default=False)] = None,
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a detector on annotated boxes (one object class) and save it to --out.

    Use the result with: --detector torchvision:ARCH -O weights=OUT/detector.safetensors -O num_classes=2

    Example: verikit detect train -a dlib_faces/training.xml --out face-det --epochs 30
    """
    from ..evaluate.detection.annotations import load_annotations
    from ..interfaces import TrainableDetector
    from ..registry import detectors, parse_spec
    from .common import trainer_of

    detector = detector or detectors.preferred(where=lambda f: isinstance(f, TrainableDetector))
    name, argument = parse_spec(detector)
    trainer = trainer_of(detectors, name, TrainableDetector, "verikit detect train")
    items = load_annotations(annotations, images_root=images_root, label=label)
    steps = epochs * math.ceil(len(items) / batch_size)
    with progress_bar(f"training {detector} on {len(items)} image(s)", steps, quiet) as advance:
        summary = trainer(argument, items=items, out=out, epochs=epochs, weights=str(weights) if weights else None,
                          batch_size=batch_size, lr=lr, device=device, seed=seed, progress=advance)
    weights_file = out / "detector.safetensors"
    data = {"detector": detector, "out": str(out), "weights": str(weights_file), **summary}
    if fmt is OutputFormat.json:
        emit(data, fmt)
    else:
        losses = summary.get("loss_per_epoch") or []
        emit(data, fmt, f"trained {detector} on {summary.get('images')} images ({summary.get('boxes')} boxes), "
                        f"{epochs} epoch(s), loss {losses[0] if losses else '?'} -> {losses[-1] if losses else '?'}; "
                        f"use it with --detector {detector} -O weights={weights_file} -O num_classes=2")
