"""``verikit enroll``: add identities to a gallery from image files or a folder per identity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DEFAULT_GALLERY, EXIT_PARTIAL, BatchOpt, DeviceOpt, FormatOpt, GalleryOpt, ModelOpt,
                     OutputFormat, QuietOpt, emit, info, printed_warnings, progress_bar, warn)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt, MultipleFaces,
                               MultipleFacesOpt, SaveCropsOpt, SegmenterOpt, SegmenterOptionOpt, face_policy,
                               pipeline_request, pipeline_usage_errors)


def enroll(
    name: Annotated[Optional[str], typer.Argument(help="Identity to enroll (omit with --from-folder).", show_default=False)] = None,
    images: Annotated[Optional[list[Path]], typer.Argument(help="Image files of that identity.", show_default=False)] = None,
    from_folder: Annotated[Optional[Path], typer.Option(
        "--from-folder", help="Enroll every sub-folder of DIR as one identity (folder name = identity).",
        show_default=False)] = None,
    model: ModelOpt = None,
    gallery: GalleryOpt = DEFAULT_GALLERY,
    index: Annotated[str, typer.Option(help="Index for a NEW gallery: faiss:Flat (exact); approximate and tuned "
                                            "to --recall: auto, faiss:ivf-flat, faiss:ivf-sq8, faiss:ivf-pq, "
                                            "faiss:hnsw (docs/scale.md); or any faiss index_factory string "
                                            "(faiss:HNSW32, faiss:IVF1024,Flat).")] = "faiss:Flat",
    recall: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0,
        help="For an approximate --index of a NEW gallery: the recall@10 its search must meet, measured "
             "on held-out templates (default 0.95).", show_default=False)] = None,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
    detector: DetectorOpt = None,
    detector_option: DetectorOptionOpt = None,
    multiple_faces: MultipleFacesOpt = MultipleFaces.largest,
    crop_margin: CropMarginOpt = None,
    save_crops: SaveCropsOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_option: SegmenterOptionOpt = None,
    background: BackgroundOpt = None,
    batch_commit: Annotated[Optional[int], typer.Option(
        "--batch-commit", min=1, show_default=False,
        help="Bulk mode (with --from-folder, whole images): stream the folder, decode with --workers processes, "
             "commit every N templates as one transaction (an interrupted run keeps earlier batches).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Bulk mode: skip files already enrolled with the same path and content (SHA-256).")] = False,
    workers: Annotated[int, typer.Option(min=0, help="Bulk mode: DataLoader decoding processes.")] = 2,
) -> None:
    """Enroll identities: embed their images and store the templates in the gallery.

    The gallery is created on first use and bound to the model. All identities of one command
    are committed in a single transaction: an interrupted enroll leaves the gallery as it was.
    Unreadable images are skipped and listed; the exit status is then 4.

    Examples:

      verikit enroll alice a1.jpg a2.jpg --model runs/orl --gallery people

      verikit enroll --from-folder faces/ --model runs/orl --gallery people

      verikit enroll --from-folder photos/ --detector haar --model runs/orl --gallery people

      verikit enroll --from-folder photos/ --detector haar --segmenter smp:unet -S weights=seg/segmenter.safetensors ...

    With --detector the face crops are embedded instead of whole images; with --segmenter the
    background is masked out first. A new gallery records both so that verify/search use them
    too; images without a face are skipped and listed.

    Identity names (NAME, or the folder names) may hold any letters, digits, punctuation,
    symbols and inner spaces, up to 200 characters; not leading or trailing spaces, nor control
    or invisible format characters (newlines, tabs, escape sequences, bidi overrides, zero-width
    spaces). They are stored in Unicode NFC form and always printed as data (docs/gallery.md).

    Bulk mode (--batch-commit N and/or --resume, for 100k+ images; docs/scale.md) streams the
    folder with bounded memory and commits every N templates in its own transaction (default
    1000 with --resume), instead of one transaction for the whole command.
    """
    from ..io import path_text, scan_identity_folders
    from ..service import Service

    if recall is not None:
        from ..errors import VerikitError
        from ..index.approximate import with_recall
        try:
            index = with_recall(index, recall)
        except VerikitError as exc:
            raise typer.BadParameter(str(exc), param_hint="--recall") from None

    if batch_commit is not None or resume:
        return _enroll_bulk(from_folder, name, images, model, gallery, index, batch_size, device, fmt, quiet,
                            batch_commit or 1000, resume, workers, detector is not None or segmenter is not None)
    if from_folder is not None:
        if name or images:
            raise typer.BadParameter("give either NAME IMAGE... or --from-folder DIR, not both")
        scan = scan_identity_folders(from_folder)
        todo = {n: [str(p) for p in ps] for n, ps in scan.by_identity.items()}
        if scan.skipped:
            warn(f"{len(scan.skipped)} file(s) under '{path_text(from_folder)}' ignored (not images, or not regular "
                 "files such as named pipes)")
    else:
        if not name or not images:
            raise typer.BadParameter("give NAME and at least one IMAGE, or --from-folder DIR")
        todo = {name: [str(p) for p in images]}
    # An existing gallery is opened first, so another model's gallery is refused before any embedding.
    with printed_warnings(), pipeline_usage_errors(), Service.open(
            gallery, model=model, device=device, index=index, batch_size=batch_size,
            pipeline=pipeline_request(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                      background)) as service:
        total = sum(len(v) for v in todo.values())
        with progress_bar(f"embedding {total} image(s)", total, quiet) as advance:
            result = service.enroll(todo, progress=advance, faces=face_policy(multiple_faces, save_crops))
    report, summary = result.report, result.gallery
    for _, reason in report.failures:
        warn(f"skipped: {reason}")
    result = result.to_dict()
    if fmt is OutputFormat.json:
        emit(result, fmt)
    else:
        from rich.table import Table
        t = Table("identity", "templates added", title=f"enrolled into {gallery}")
        from .display import safe_text
        for n, c in sorted(report.enrolled.items()):
            t.add_row(safe_text(n), str(c))  # a name is data, never markup
        emit(result, fmt, t)
        info(f"gallery now holds {summary['identities']} identities, {summary['templates']} templates")
    if report.failures:
        raise typer.Exit(EXIT_PARTIAL)


def _enroll_bulk(from_folder, name, images, model, gallery, index, batch_size, device, fmt, quiet, batch_commit,
                 resume, workers, uses_pipeline: bool) -> None:
    """``enroll --batch-commit/--resume``: verikit.pipeline.bulk through the service."""
    from ..pipeline.bulk import ALREADY, count_files
    from ..service import Service

    if from_folder is None or name or images:
        raise typer.BadParameter("bulk mode (--batch-commit/--resume) enrolls --from-folder DIR only")
    if uses_pipeline:
        raise typer.BadParameter("bulk mode (--batch-commit/--resume) embeds whole images: no --detector/--segmenter")
    if not from_folder.is_dir():
        raise typer.BadParameter(f"'{from_folder}' is not a directory", param_hint="--from-folder")
    with printed_warnings(), pipeline_usage_errors(), Service.open(
            gallery, model=model, device=device, index=index, batch_size=batch_size) as service:
        with progress_bar(f"bulk enroll of '{from_folder}'", count_files(from_folder), quiet) as advance:
            report = service.enroll_bulk(from_folder, batch_commit=batch_commit, resume=resume, workers=workers,
                                         progress=advance)
    result = report.to_dict()
    for reason, detail in result["skipped"].items():
        if reason != ALREADY:
            warn(f"skipped {detail['count']} file(s): {reason}; e.g. {', '.join(detail['examples'][:3])}")
    if fmt is OutputFormat.json:
        emit(result, fmt)
    else:
        from rich.table import Table
        t = Table("templates", "identities", "batches", "skipped (already enrolled)", "skipped (other)", "seconds",
                  title=f"bulk enroll into {gallery}")
        t.add_row(str(result["templates"]), str(result["identities"]), str(result["batches"]),
                  str(report.skipped.get(ALREADY, 0)), str(report.failed), f"{report.seconds:.1f}")
        emit(result, fmt, t)
    if report.failed:
        raise typer.Exit(EXIT_PARTIAL)
