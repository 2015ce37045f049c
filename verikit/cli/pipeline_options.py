"""The pipeline options enroll / verify / search / benchmark share: ``--detector``,
``--detector-option``, ``--crop-margin``, ``--segmenter``, ``--segmenter-option``,
``--background``, ``--multiple-faces``, ``--save-crops``, and how they become
:class:`verikit.pipeline.settings.PipelineSettings`. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from .detect import (PIPELINE_PANEL, CropMarginOpt, DetectorOpt, DetectorOptionOpt, MultipleFaces, MultipleFacesOpt,
                     SaveCropsOpt, parse_detector_options)

__all__ = ["Background", "BackgroundOpt", "CropMarginOpt", "DetectorOpt", "DetectorOptionOpt", "MultipleFaces",
           "MultipleFacesOpt", "SaveCropsOpt", "SegmenterOpt", "SegmenterOptionOpt", "face_policy",
           "pipeline_request", "pipeline_usage_errors", "requested_pipeline"]


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


def pipeline_request(detector: str | None, detector_option: list[str] | None, crop_margin: float | None,
                     segmenter: str | None = None, segmenter_option: list[str] | None = None,
                     background: Background | None = None):
    """The pipeline options as a :class:`verikit.service.PipelineRequest` (KEY=VALUE options parsed)."""
    from ..service.pipelines import PipelineRequest

    return PipelineRequest(detector, parse_detector_options(detector_option), crop_margin, segmenter,
                           parse_detector_options(segmenter_option, param_hint="--segmenter-option"),
                           background.value if background is not None else None)


def requested_pipeline(detector: str | None, detector_option: list[str] | None, crop_margin: float | None,
                       segmenter: str | None = None, segmenter_option: list[str] | None = None,
                       background: Background | None = None, recorded: Any = None):
    """The pipeline the options ask for; unset parts default to the gallery's recorded ones
    (:func:`verikit.service.pipelines.merge_pipeline`). None when nothing was asked."""
    from ..service.pipelines import merge_pipeline

    with pipeline_usage_errors():
        return merge_pipeline(pipeline_request(detector, detector_option, crop_margin, segmenter, segmenter_option,
                                               background), recorded)


@contextmanager
def pipeline_usage_errors() -> Iterator[None]:
    """Options given without the step they configure are a usage error (exit 2), wherever they are found."""
    from ..service.pipelines import PipelineOptionsError

    try:
        yield
    except PipelineOptionsError as exc:
        raise typer.BadParameter(str(exc)) from exc


def face_policy(multiple_faces: MultipleFaces, save_crops: Path | None):
    from ..pipeline.settings import FacePolicy

    return FacePolicy(multiple_faces.value, save_crops)
