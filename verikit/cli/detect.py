"""``verikit detect`` and ``verikit benchmark detection``, and the detector option types that
:mod:`verikit.cli.pipeline_options` builds the shared pipeline options from (``--detector``,
``--detector-option``, ``--multiple-faces``, ``--crop-margin``, ``--save-crops``). Nothing heavy is
imported at module level.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import (EXIT_PARTIAL, FormatOpt, OutputFormat, QuietOpt, emit, images_with_progress, output_name,
                     progress_bar, report_skipped, warn)

PIPELINE_PANEL = "Detection and segmentation"


class MultipleFaces(str, Enum):
    largest = "largest"
    all = "all"
    error = "error"


DetectorOpt = Annotated[Optional[str], typer.Option(
    "--detector", "-d", show_default=False,
    help="Detect faces first and embed the crops: a detector spec such as haar or haar:frontalface_alt2 "
         "(`verikit plugins` lists them). Recorded in a new gallery; later runs reuse it automatically.",
    rich_help_panel=PIPELINE_PANEL)]
DetectorOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--detector-option", "-O", show_default=False,
    help="KEY=VALUE passed to the detector factory (VALUE is JSON: 3, 1.2, [40,40], true); repeatable.",
    rich_help_panel=PIPELINE_PANEL)]
MultipleFacesOpt = Annotated[MultipleFaces, typer.Option(
    "--multiple-faces", help="With several faces in an image: embed the largest, all of them, or treat it as an error.",
    rich_help_panel=PIPELINE_PANEL)]
CropMarginOpt = Annotated[Optional[float], typer.Option(
    "--crop-margin", min=0.0, max=2.0, show_default=False,
    help="Grow each box by this fraction of its size on every side before cropping (default 0.2; recorded).",
    rich_help_panel=PIPELINE_PANEL)]
SaveCropsOpt = Annotated[Optional[Path], typer.Option(
    "--save-crops", show_default=False, help="Write every crop that gets embedded to DIR as PNG.",
    rich_help_panel=PIPELINE_PANEL)]


def parse_detector_options(items: list[str] | None, param_hint: str = "--detector-option") -> dict[str, Any]:
    """``["min_neighbors=3", "min_size=[40,40]"]`` -> ``{"min_neighbors": 3, "min_size": [40, 40]}``.

    The same KEY=VALUE parsing serves ``--segmenter-option`` (pass its ``param_hint``)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=param_hint)
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw  # a bare word is a string
    return out


def detect(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    detector: Annotated[Optional[str], typer.Option(
        "--detector", "-d", show_default=False,
        help="Detector spec (`verikit plugins` lists them). Default: the installed detector that needs no "
             "downloads and ranks first (haar when verikit-haar is installed).")] = None,
    detector_option: DetectorOptionOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", show_default=False, help="Write each image with its boxes drawn to DIR (PNG).")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Result format on stdout.")] = OutputFormat.json,
    quiet: QuietOpt = False,
) -> None:
    """Find faces: boxes (x1, y1, x2, y2 pixels), scores and eyes as JSON on stdout.

    Unreadable images are skipped and listed; the exit status is then 4.

    Example: verikit detect group.jpg --detector haar:frontalface_alt2 --out annotated/
    """
    from ..registry import detectors

    det = detectors.create(detector or detectors.preferred(), **parse_detector_options(detector_option))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results, failures, used = [], [], set()
    for path, image in images_with_progress(images, f"detecting in {len(images)} image(s)", quiet, failures):
        dets = det.detect([image])[0]
        row = {"image": str(path), **dets.to_dict()}
        if out is not None:
            from ..report.draw import annotate

            target = output_name(out, path, used)
            annotate(image, dets).save(target)
            row["annotated"] = str(target)
        results.append(row)
    report_skipped(images, failures)
    if fmt is OutputFormat.json:
        emit(results, fmt)
    else:
        from rich.table import Table
        t = Table("image", "faces", "boxes (x1,y1,x2,y2)")
        for r in results:
            t.add_row(r["image"], str(len(r["detections"])),
                      "; ".join(",".join(f"{v:g}" for v in d["box"]) for d in r["detections"]))
        emit(results, fmt, t)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)


def benchmark_detection(
    annotations: Annotated[Path, typer.Option(
        "--annotations", "-a", help="dlib XML, Pascal VOC XML (file or folder) or CSV path,x1,y1,x2,y2.",
        show_default=False)],
    detector: Annotated[Optional[str], typer.Option(
        "--detector", "-d", show_default=False,
        help="Detector spec. Default: as for `verikit detect`.")] = None,
    detector_option: DetectorOptionOpt = None,
    iou: Annotated[float, typer.Option("--iou", min=0.05, max=1.0, help="IoU for a detection to count as a hit.")] = 0.5,
    images_root: Annotated[Optional[Path], typer.Option(
        "--images", help="Folder the annotation's image paths are relative to (default: the file's folder).",
        show_default=False)] = None,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="VOC only: score objects of this class name (default: every object).", show_default=False)] = None,
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Precision, recall and AP of a detector on annotated images, at IoU >= --iou.

    Example: verikit benchmark detection --annotations dlib_faces/testing.xml --detector haar
    """
    from ..evaluate.detection.annotations import load_annotations
    from ..evaluate.detection.run import evaluate_detector
    from ..registry import detectors

    items = load_annotations(annotations, images_root=images_root, label=label)
    detector = detector or detectors.preferred()
    det = detectors.create(detector, **parse_detector_options(detector_option))
    with progress_bar(f"detecting in {len(items)} image(s)", len(items), quiet) as advance:
        result = evaluate_detector(det, items, iou_threshold=iou, progress=advance)
    for path, reason in result.failures:
        warn(f"skipped {reason}")
    data = {"detector": detector, "options": parse_detector_options(detector_option),
            "annotations": str(annotations), **result.to_dict()}
    if fmt is OutputFormat.json:
        emit(data, fmt)
    else:
        m = result.metrics
        emit(data, fmt, f"{detector} on {annotations} ({result.images} images, {m.ground_truth} boxes) at IoU >= {iou:g}: "
                        f"precision {m.precision:.4f}, recall {m.recall:.4f}, AP {m.average_precision:.4f} "
                        f"({m.true_positives} TP, {m.false_positives} FP; {result.seconds:.2f} s detecting)")
    if result.failures:
        raise typer.Exit(EXIT_PARTIAL)
