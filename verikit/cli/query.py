"""``verikit verify`` (1:1) and ``verikit search`` (1:N, open-set)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from .common import (DEFAULT_GALLERY, EXIT_NO_MATCH, EXIT_PARTIAL, DeviceOpt, FormatOpt, GalleryOpt, ModelOpt,
                     OutputFormat, ThresholdOpt, emit, printed_warnings, warn)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt, MultipleFaces,
                               MultipleFacesOpt, SaveCropsOpt, SegmenterOpt, SegmenterOptionOpt, face_policy,
                               pipeline_request, pipeline_usage_errors)

ExitCodeOpt = Annotated[bool, typer.Option("--exit-code", help="Exit with status 3 when the answer is no match / unknown.")]


class Scorer(str, Enum):
    similarity = "similarity"
    pair_head = "pair-head"


ScorerOpt = Annotated[Scorer, typer.Option(
    "--scorer", help="similarity: the model's measure (calibration.json threshold); pair-head: the learned pair "
                     "head next to the model (`verikit pair-head train`; its own threshold).")]


def verify(
    image: Annotated[Path, typer.Argument(help="Probe image.", show_default=False)],
    claim: Annotated[str, typer.Option("--claim", "-c", help="Identity the probe claims to be.", show_default=False)],
    model: ModelOpt = None,
    gallery: GalleryOpt = DEFAULT_GALLERY,
    threshold: ThresholdOpt = None,
    exit_code: ExitCodeOpt = False,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    detector: DetectorOpt = None,
    detector_option: DetectorOptionOpt = None,
    multiple_faces: MultipleFacesOpt = MultipleFaces.largest,
    crop_margin: CropMarginOpt = None,
    save_crops: SaveCropsOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_option: SegmenterOptionOpt = None,
    background: BackgroundOpt = None,
    scorer: ScorerOpt = Scorer.similarity,
) -> None:
    """Is this probe the claimed identity? Prints score, threshold and decision.

    The score is the best similarity (the model's measure, cosine by default) between the probe
    and the identity's templates; it is a match when score >= threshold. The threshold comes from
    the model's calibration.json (`verikit calibrate`) unless --threshold is given. With
    --scorer pair-head the score is the learned pair head's sigmoid output instead.

    Example: verikit verify probe.jpg --claim alice --gallery people --exit-code

    A gallery enrolled with --detector/--segmenter runs the probe through the same steps (no face: error);
    --multiple-faces all is refused here (one face is compared with the claim).
    """
    from ..service import Service

    with printed_warnings(), pipeline_usage_errors(), Service.open(
            gallery, model=model, device=device, threshold=threshold, scorer=scorer.value,
            pipeline=pipeline_request(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                      background)) as service:
        decision = service.verify(image, claim, faces=face_policy(multiple_faces, save_crops))
    data = decision.to_dict()
    if fmt is OutputFormat.json:
        emit(data, fmt)
    else:
        verdict = "[green]MATCH[/]" if decision.match else "[red]NO MATCH[/]"
        est = f"  (est. FMR at this score {decision.estimated_fmr:.2g})" if decision.estimated_fmr is not None else ""
        emit(data, fmt, f"{verdict}  {image} vs {claim!r}: score {decision.score:.4f}, "
                        f"threshold {decision.threshold:.4f}{est}")
    if exit_code and not decision.match:
        raise typer.Exit(EXIT_NO_MATCH)


def search(
    images: Annotated[list[Path], typer.Argument(help="Probe image(s).", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Identities to list per probe.")] = 5,
    model: ModelOpt = None,
    gallery: GalleryOpt = DEFAULT_GALLERY,
    threshold: ThresholdOpt = None,
    exit_code: ExitCodeOpt = False,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    detector: DetectorOpt = None,
    detector_option: DetectorOptionOpt = None,
    multiple_faces: MultipleFacesOpt = MultipleFaces.largest,
    crop_margin: CropMarginOpt = None,
    save_crops: SaveCropsOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_option: SegmenterOptionOpt = None,
    background: BackgroundOpt = None,
) -> None:
    """Who is this? Ranks the gallery's identities for each probe.

    Open-set: when the best score is below the threshold (the model's calibration, or
    --threshold) the answer is "unknown". Without any threshold the ranking is printed with no
    decision.

    Example: verikit search probe.jpg --top-k 3 --gallery people

    A gallery enrolled with --detector/--segmenter runs probes through the same steps; with
    --multiple-faces all every face is a probe (named FILE#k); images without a face are skipped.
    """
    from ..errors import ImageError
    from ..service import Service

    with printed_warnings(), pipeline_usage_errors(), Service.open(
            gallery, model=model, device=device, threshold=threshold,
            pipeline=pipeline_request(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                      background)) as service:
        results, failures = service.search([str(p) for p in images], top_k=top_k,
                                           faces=face_policy(multiple_faces, save_crops))
    for _, reason in failures:
        warn(f"skipped: {reason}")
    if not results:
        raise ImageError(failures[0][1] if failures else "no probe images")
    if fmt is OutputFormat.json:
        emit([r.to_dict() for r in results], fmt)
    else:
        from rich.table import Table
        t = Table("probe", "answer", "rank", "identity", "score")
        for r in results:
            answer = r.identity if r.identity is not None else "[red]unknown[/]"
            for rank, hit in enumerate(r.hits, 1):
                t.add_row(r.probe if rank == 1 else "", answer if rank == 1 else "", str(rank), hit.identity,
                          f"{hit.score:.4f}")
        emit(None, fmt, t)
    if failures:
        raise typer.Exit(EXIT_PARTIAL)
    if exit_code and any(r.identity is None for r in results):
        raise typer.Exit(EXIT_NO_MATCH)
