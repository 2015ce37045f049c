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

from .common import (EXIT_PARTIAL, FormatOpt, OutputFormat, QuietOpt, emit, images_with_progress, info, output_name,
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


def detector_spec_line(spec: str, options: dict[str, Any]) -> str:
    """The detector as a command line names it: ``faceapi:ssd -O score_threshold=0.1``."""
    parts = [spec] + [f"-O {k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in options.items()]
    return " ".join(parts)


def _read_result(path: Path) -> list[dict[str, Any]]:
    """A ``benchmark detection --format json`` document (one result, or a list of them)."""
    from ..errors import DataError

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"cannot read detection result '{path}': {' '.join(str(exc).split())}") from exc
    docs = doc if isinstance(doc, list) else [doc]
    for d in docs:
        if not (isinstance(d, dict) and isinstance(d.get("roc"), dict) and "ap" in d and "detector" in d):
            raise DataError(f"'{path}' is not a result of `verikit benchmark detection --format json` "
                            "(no detector, ap and roc)")
    return docs


def benchmark_detection(
    annotations: Annotated[Optional[Path], typer.Option(
        "--annotations", "-a", help="dlib XML, Pascal VOC XML (file or folder), CSV path,x1,y1,x2,y2, or FDDB "
                                    "ellipse lists (a FDDB-fold-NN-ellipseList.txt or the FDDB-folds folder).",
        show_default=False)] = None,
    detector: Annotated[Optional[list[str]], typer.Option(
        "--detector", "-d", show_default=False,
        help="Detector spec; repeat to compare several (each gets every -O option). Default: as for "
             "`verikit detect`.")] = None,
    detector_option: DetectorOptionOpt = None,
    iou: Annotated[float, typer.Option(
        "--iou", min=0.05, max=1.0,
        help="Overlap for a detection to count as a hit (boxes: IoU >= it; FDDB ellipses: region overlap > it).")] = 0.5,
    at_fp: Annotated[int, typer.Option(
        "--at-fp", min=1, help="Report the recall reached with at most this many false positives.")] = 1000,
    images_root: Annotated[Optional[Path], typer.Option(
        "--images", help="Folder the annotation's image paths are relative to (default: the file's folder; "
                         "FDDB: its originalPics folder).", show_default=False)] = None,
    label: Annotated[Optional[str], typer.Option(
        "--label", help="VOC only: score objects of this class name (default: every object).", show_default=False)] = None,
    result: Annotated[Optional[list[Path]], typer.Option(
        "--result", show_default=False,
        help="An earlier `benchmark detection --format json` output to show beside this run in --report; "
             "repeatable. With only --result, nothing is detected.")] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", show_default=False,
        help="Write report.html (ROC curves of all the detectors side by side), report.json and figures/ to DIR.")] = None,
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Score detectors on annotated images: precision, recall, AP, the discrete ROC and the recall
    at --at-fp false positives. FDDB's ellipse lists are scored by FDDB's own rule.

    Example: verikit benchmark detection --annotations fddb/FDDB-folds --detector faceapi:ssd --detector haar --report out/
    """
    import time

    from rich.text import Text

    from ..registry import detectors

    earlier = [d for p in (result or []) for d in _read_result(p)]
    specs = list(detector or ([] if earlier else [detectors.preferred()]))
    if specs and annotations is None:
        raise typer.BadParameter("needed to run a detector", param_hint="--annotations")
    options = parse_detector_options(detector_option)
    built = [(spec, detectors.create(spec, **options)) for spec in specs]  # every spec checked before any runs
    runs: list[dict[str, Any]] = []
    skipped = False
    if built:
        from ..evaluate.detection.annotations import load_annotations
        from ..evaluate.detection.run import evaluate_detector

        items = load_annotations(annotations, images_root=images_root, label=label)
        for spec, det in built:
            line = detector_spec_line(spec, options)
            with progress_bar(f"{line}: detecting in {len(items)} image(s)", len(items), quiet) as advance:
                res = evaluate_detector(det, items, iou_threshold=iou, progress=advance, at_fp=at_fp)
            for _, reason in res.failures:
                warn(f"skipped {reason}")
            skipped = skipped or bool(res.failures)
            runs.append({"detector": spec, "options": options, "spec": line, "annotations": str(annotations),
                         "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **res.to_dict()})
    shown = runs + earlier
    if report is not None:
        from ..report.detection import write_detection_report

        paths = write_detection_report(shown, report)
        info(f"report: {paths['html']}")
    if fmt is OutputFormat.json:
        emit(runs[0] if len(runs) == 1 else runs, fmt)
    else:
        lines = []
        for r in runs:
            at = r.get("recall_at_fp") or {}
            reach = "" if at.get("reached", True) else f" (its curve ends at {at['curve_ends_at_fp']:,} FP)"
            lines.append(f"{r['spec']} on {r['annotations']} ({r['images']} images, {r['ground_truth']} faces; "
                         f"{r['scoring']}): recall at {at_fp:,} FP {at.get('recall', float('nan')):.4f}{reach}, "
                         f"AP {r['ap']:.4f}; at its lowest score precision {r['precision']:.4f}, recall "
                         f"{r['recall']:.4f} ({r['true_positives']} TP, {r['false_positives']} FP); "
                         f"{r['seconds']:.2f} s detecting")
        emit(runs, fmt, Text("\n".join(lines)))
    if skipped:
        raise typer.Exit(EXIT_PARTIAL)
