"""``verikit enroll``: add identities to a gallery from image files or a folder per identity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DEFAULT_GALLERY, EXIT_PARTIAL, BatchOpt, DeviceOpt, FormatOpt, GalleryOpt, ModelOpt,
                     OutputFormat, QuietOpt, emit, info, load_model, progress_bar, warn)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt, MultipleFaces,
                               MultipleFacesOpt, SaveCropsOpt, SegmenterOpt, SegmenterOptionOpt, face_policy,
                               requested_pipeline)


def enroll(
    name: Annotated[Optional[str], typer.Argument(help="Identity to enroll (omit with --from-folder).", show_default=False)] = None,
    images: Annotated[Optional[list[Path]], typer.Argument(help="Image files of that identity.", show_default=False)] = None,
    from_folder: Annotated[Optional[Path], typer.Option(
        "--from-folder", help="Enroll every sub-folder of DIR as one identity (folder name = identity).",
        show_default=False)] = None,
    model: ModelOpt = None,
    gallery: GalleryOpt = DEFAULT_GALLERY,
    index: Annotated[str, typer.Option(help="Index for a NEW gallery: faiss:Flat (exact), faiss:HNSW32, "
                                            "faiss:IVF1024,Flat, ... (any faiss index_factory string).")] = "faiss:Flat",
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
    """
    from ..errors import DataError
    from ..io import scan_identity_folders
    from ..pipeline.settings import bind_to_gallery
    from ..pipeline.operations import commit_enrollment, open_gallery_for, prepare_enrollment

    if from_folder is not None:
        if name or images:
            raise typer.BadParameter("give either NAME IMAGE... or --from-folder DIR, not both")
        scan = scan_identity_folders(from_folder)
        todo = {n: [str(p) for p in ps] for n, ps in scan.by_identity.items()}
        if scan.skipped:
            warn(f"{len(scan.skipped)} non-image file(s) under '{from_folder}' ignored")
    else:
        if not name or not images:
            raise typer.BadParameter("give NAME and at least one IMAGE, or --from-folder DIR")
        todo = {name: [str(p) for p in images]}
    existing = (gallery / "gallery.sqlite").exists()
    net, model_dir = load_model(model, device, gallery if existing else None)
    # Open an existing gallery first, so another model's gallery is refused before any embedding.
    g = open_gallery_for(net, gallery) if existing else None
    try:
        recorded = bind_to_gallery(g, None) if g is not None else None
        pipeline = requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option, background,
                                      recorded)
        pipeline = bind_to_gallery(g, pipeline) if g is not None else pipeline
        total = sum(len(v) for v in todo.values())
        with progress_bar(f"embedding {total} image(s)", total, quiet) as advance:
            prepared = prepare_enrollment(net, todo, batch_size=batch_size, progress=advance, pipeline=pipeline,
                                          faces=face_policy(multiple_faces, save_crops))
        if not prepared.templates:  # nothing to store: do not even create the gallery
            failures = prepared.report.failures
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise DataError(f"nothing enrolled: {failures[0][1] if failures else 'no images'}{more}")
        if g is None:
            g = open_gallery_for(net, gallery, create=True, index=index, model_path=str(Path(model_dir).resolve()),
                                 pipeline=pipeline)
        report = commit_enrollment(g, prepared)
        summary = g.info()
    finally:
        if g is not None:
            g.close()
    for _, reason in report.failures:
        warn(f"skipped: {reason}")
    result = {**report.to_dict(), "gallery": {"path": str(gallery), "identities": summary["identities"],
                                              "templates": summary["templates"]}}
    if fmt is OutputFormat.json:
        emit(result, fmt)
    else:
        from rich.table import Table
        t = Table("identity", "templates added", title=f"enrolled into {gallery}")
        for n, c in sorted(report.enrolled.items()):
            t.add_row(n, str(c))
        emit(result, fmt, t)
        info(f"gallery now holds {summary['identities']} identities, {summary['templates']} templates")
    if report.failures:
        raise typer.Exit(EXIT_PARTIAL)
