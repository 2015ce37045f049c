"""``verikit calibrate``: the threshold at a target false-match rate, saved next to the model.

Exit status follows the rule every batch command shares (README): 4 when an image that was to
be used could not be (unreadable, or no face found through ``--detector``), after saving the
calibration from the rest; files that are not images, or images outside an identity folder, are
not inputs: they are counted and named, but change nothing. The calibration records the skipped
images with their reasons, and the table says how many next to the rates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (EXIT_PARTIAL, BatchOpt, DeviceOpt, FormatOpt, OutputFormat, QuietOpt, emit, progress_bar,
                     warn, warn_skipped)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt, SegmenterOpt,
                               SegmenterOptionOpt, requested_pipeline)


def calibrate(
    data_dir: Annotated[Path, typer.Argument(help="Validation set: one sub-folder per identity, identities the "
                                                  "model was NOT trained on.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", envvar="VERIKIT_MODEL", help="Model directory.",
                                        show_default=False)],
    target_fmr: Annotated[float, typer.Option(min=1e-9, max=1.0,
                                              help="False-match rate to allow (fraction of impostor pairs accepted).")] = 1e-3,
    norm: Annotated[Optional[str], typer.Option(
        help="Normalise scores against --cohort: z, t, s (symmetric S-norm) or as (adaptive S-norm, top-k "
             "cohort). verify/search then normalise the same way.", show_default=False)] = None,
    cohort: Annotated[Optional[Path], typer.Option(
        help="Cohort for --norm: a folder with one sub-folder per identity (people not in the validation "
             "set), or a gallery directory, whose templates then serve as the cohort.", show_default=False)] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=2, help="Cohort members per side for --norm as.")] = 100,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
    detector: DetectorOpt = None,
    detector_option: DetectorOptionOpt = None,
    crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_option: SegmenterOptionOpt = None,
    background: BackgroundOpt = None,
) -> None:
    """Choose the threshold that gives --target-fmr on all pairs of a validation set.

    Every pair of images of the same identity is a genuine comparison, every other pair an
    impostor one. The threshold is the lowest score at which at most target-fmr of the impostor
    pairs would be accepted. It is written to MODEL/calibration.json, bound to the model's
    fingerprint, and `verify`/`search` use it from then on.

    Example: verikit calibrate data/val --model runs/orl --target-fmr 1e-3

    For galleries enrolled with --detector/--segmenter, calibrate with the same options: the
    validation images then go through the same steps (largest face, background masked), the
    pipeline is recorded, and verify/search warn when a gallery's pipeline differs from it.
    """
    import numpy as np

    from ..evaluate.metrics import min_supported_fmr
    from ..io import scan_identity_folders
    from ..models.embedder import Embedder
    from ..pipeline.calibration import calibrate_embeddings
    from ..pipeline.files import FileEmbedder

    net = Embedder.load(model, device=device)
    pipeline = requested_pipeline(detector, detector_option, crop_margin, segmenter, segmenter_option, background)
    embed = FileEmbedder(net, pipeline, batch_size).embed

    scan = scan_identity_folders(data_dir)
    if scan.skipped:
        warn(f"{len(scan.skipped)} file(s) under '{data_dir}' not used (not an image, or not in an identity "
             f"folder), e.g. '{scan.skipped[0]}'")
    label_of = {p: n for n, p in scan.items}
    with progress_bar(f"embedding {len(scan.items)} image(s)", len(scan.items), quiet) as advance:
        out = embed([p for _, p in scan.items], advance)
    for _, reason in out.failures:
        warn_skipped(reason)
    cohort_obj = None
    if (norm is None) != (cohort is None):
        raise typer.BadParameter("--norm and --cohort go together")
    if norm is not None:
        from ..calibrate.cohort import Cohort
        from ..pipeline.calibration import require_cosine

        require_cosine(net)
        if (cohort / "gallery.sqlite").exists():
            # The gallery itself as the cohort: its templates, embedded by this same model.
            from ..index.gallery import Gallery

            with Gallery.open(cohort, fingerprint=net.fingerprint) as g:
                names = [p.name for p in g.identities()]
                cohort_vectors = np.concatenate([g.templates(n) for n in names]) if names else np.zeros((0, 1))
        else:
            cohort_scan = scan_identity_folders(cohort)
            names = cohort_scan.identities
            with progress_bar(f"embedding {len(cohort_scan.items)} cohort image(s)", len(cohort_scan.items),
                              quiet) as adv:
                cohort_vectors = embed([p for _, p in cohort_scan.items], adv).embeddings
        overlap = set(names) & set(scan.identities)
        if overlap:
            warn(f"{len(overlap)} identities are in both the cohort and the validation set (e.g. "
                 f"{sorted(overlap)[0]!r}): normalisation assumes they are different people")
        cohort_obj = Cohort(cohort_vectors, norm, min(top_k, len(cohort_vectors)) if norm == "as" else None,
                            net.fingerprint)
    no_face = set(getattr(out, "no_face", ()))
    skipped = [{"path": str(p), "reason": r} for p, r in out.failures]
    cal = calibrate_embeddings(net, out.embeddings, [label_of[p] for p in out.paths], target_fmr, cohort=cohort_obj,
                               data={"path": str(data_dir), "identities": len(scan.identities),
                                     "images": len(out.paths),
                                     "pipeline": FileEmbedder(net, pipeline).pipeline_record(),
                                     "skipped": skipped, "skipped_no_face": len(no_face),
                                     "not_used": len(scan.skipped)})
    cal.save(model)
    supported = min_supported_fmr(cal.n_impostor)
    if target_fmr < supported:
        warn(f"{cal.n_impostor} impostor pairs cannot support FMR {target_fmr:g} (need FMR >= {supported:.2g} "
             "for ~30 errors); the threshold is an extrapolation: add identities to the validation set")
    d = {k: v for k, v in cal.to_dict().items() if k != "impostor_tail"}
    inputs = f"images: {len(out.paths)} of {len(scan.items)} used"
    if skipped:
        inputs += (f"; {len(skipped)} skipped ({len(no_face)} no face found, {len(skipped) - len(no_face)} "
                   "unreadable): the rates leave them out")
    emit(d, fmt, _text(f"threshold {cal.threshold:.4f} at target FMR {target_fmr:g}: measured FMR {cal.measured_fmr:.4g} "
                       f"[{cal.fmr_interval[0]:.3g}, {cal.fmr_interval[1]:.3g}], FNMR {cal.measured_fnmr:.4g} "
                       f"[{cal.fnmr_interval[0]:.3g}, {cal.fnmr_interval[1]:.3g}] from {cal.n_genuine} genuine / "
                       f"{cal.n_impostor} impostor pairs\n{inputs}\nsaved {Path(model) / 'calibration.json'}"))
    if skipped:
        raise typer.Exit(EXIT_PARTIAL)


def _text(text: str):
    """Plain text for the table format: paths in it are data, never rich markup."""
    from rich.text import Text

    return Text(text)
