"""The pipeline options enroll / verify / search / benchmark share: ``--detector``,
``--detector-option``, ``--crop-margin``, ``--segmenter``, ``--segmenter-option``,
``--background``, ``--multiple-faces``, ``--save-crops``, and how they become
:class:`verikit.pipeline.settings.PipelineSettings`. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .detect import (PIPELINE_PANEL, CropMarginOpt, DetectorOpt, DetectorOptionOpt, MultipleFaces, MultipleFacesOpt,
                     SaveCropsOpt, parse_detector_options)

__all__ = ["Background", "BackgroundOpt", "CropMarginOpt", "DetectorOpt", "DetectorOptionOpt", "MultipleFaces",
           "MultipleFacesOpt", "SaveCropsOpt", "SegmenterOpt", "SegmenterOptionOpt", "face_policy",
           "requested_pipeline"]


class Background(str, Enum):
    grey = "grey"
    black = "black"
    white = "white"


SegmenterOpt = Annotated[Optional[str], typer.Option(
    "--segmenter", show_default=False,
    help="Mask the background before embedding: a segmenter spec such as smp:unet or torchvision:fcn_resnet50 "
         "(`verikit plugins` lists them; train one with `verikit segment train`). Recorded in a new gallery.",
    rich_help_panel=PIPELINE_PANEL)]
SegmenterOptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--segmenter-option", "-S", show_default=False,
    help="KEY=VALUE passed to the segmenter factory (VALUE is JSON), e.g. -S weights=seg/segmenter.safetensors; "
         "repeatable.",
    rich_help_panel=PIPELINE_PANEL)]
BackgroundOpt = Annotated[Optional[Background], typer.Option(
    "--background", show_default=False,
    help="What masked-out pixels become: grey (default), black or white (recorded).",
    rich_help_panel=PIPELINE_PANEL)]


def requested_pipeline(detector: str | None, detector_option: list[str] | None, crop_margin: float | None,
                       segmenter: str | None = None, segmenter_option: list[str] | None = None,
                       background: Background | None = None, recorded: Any = None):
    """The pipeline the options ask for; unset parts default to the gallery's recorded ones.

    Returns None when nothing was asked (the caller then uses what the gallery recorded, if anything).
    """
    from ..pipeline.settings import DEFAULT_BACKGROUND, DEFAULT_CROP_MARGIN, PipelineSettings

    d_opts = parse_detector_options(detector_option)
    s_opts = parse_detector_options(segmenter_option, param_hint="--segmenter-option")
    if detector is None and not d_opts and crop_margin is None and segmenter is None and not s_opts \
            and background is None:
        return None
    det = detector if detector is not None else (recorded.detector if recorded is not None else None)
    seg = segmenter if segmenter is not None else (recorded.segmenter if recorded is not None else None)
    if det is None and (d_opts or crop_margin is not None):
        raise typer.BadParameter("--detector-option and --crop-margin need --detector SPEC")
    if seg is None and (s_opts or background is not None):
        raise typer.BadParameter("--segmenter-option and --background need --segmenter SPEC")
    same_det = recorded is not None and recorded.detector == det
    same_seg = recorded is not None and recorded.segmenter == seg
    return PipelineSettings(
        det,
        d_opts if (d_opts or not same_det) else recorded.options,
        crop_margin if crop_margin is not None else (recorded.crop_margin if recorded is not None else DEFAULT_CROP_MARGIN),
        recorded.align if same_det else True,
        seg,
        s_opts if (s_opts or not same_seg) else recorded.segmenter_options,
        background.value if background is not None else (recorded.background if recorded is not None
                                                          else DEFAULT_BACKGROUND))


def face_policy(multiple_faces: MultipleFaces, save_crops: Path | None):
    from ..pipeline.settings import FacePolicy

    return FacePolicy(multiple_faces.value, save_crops)
