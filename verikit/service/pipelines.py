"""Which detector/segmenter pipeline a run uses: the options asked for, merged with the gallery's.

A gallery records the pipeline its templates were made through (:mod:`verikit.pipeline.settings`).
A run may name the whole pipeline again, change nothing, or name only a part (``--background
black``): the unnamed parts then default to the recorded ones. :func:`merge_pipeline` makes that
one decision for the CLI, the Python service and the server alike; binding the result to the
gallery (refusing different settings) stays :func:`verikit.pipeline.settings.bind_to_gallery`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import DataError


class PipelineOptionsError(DataError):
    """Options for a detector or segmenter step that the run neither asks for nor the gallery records."""


@dataclass(frozen=True)
class PipelineRequest:
    """Pipeline options as a user gives them; ``None``/empty means "not asked"."""

    detector: str | None = None
    detector_options: Mapping[str, Any] = field(default_factory=dict)
    crop_margin: float | None = None
    segmenter: str | None = None
    segmenter_options: Mapping[str, Any] = field(default_factory=dict)
    background: str | None = None

    @property
    def empty(self) -> bool:
        return (self.detector is None and not self.detector_options and self.crop_margin is None
                and self.segmenter is None and not self.segmenter_options and self.background is None)


def merge_pipeline(request: PipelineRequest | None, recorded: Any = None):
    """The :class:`PipelineSettings` ``request`` asks for, unset parts taken from ``recorded``.

    Returns None when nothing was asked (the gallery's recorded pipeline, if any, then applies).
    Options for a step that is neither asked for nor recorded are refused (:class:`PipelineOptionsError`).
    """
    from ..pipeline.settings import DEFAULT_BACKGROUND, DEFAULT_CROP_MARGIN, PipelineSettings

    if request is None or request.empty:
        return None
    det = request.detector if request.detector is not None else (recorded.detector if recorded is not None else None)
    seg = request.segmenter if request.segmenter is not None else (recorded.segmenter if recorded is not None else None)
    if det is None and (request.detector_options or request.crop_margin is not None):
        raise PipelineOptionsError("--detector-option and --crop-margin need --detector SPEC")
    if seg is None and (request.segmenter_options or request.background is not None):
        raise PipelineOptionsError("--segmenter-option and --background need --segmenter SPEC")
    same_det = recorded is not None and recorded.detector == det
    same_seg = recorded is not None and recorded.segmenter == seg
    return PipelineSettings(
        det,
        request.detector_options if (request.detector_options or not same_det) else recorded.options,
        request.crop_margin if request.crop_margin is not None else (
            recorded.crop_margin if recorded is not None else DEFAULT_CROP_MARGIN),
        recorded.align if same_det else True,
        seg,
        request.segmenter_options if (request.segmenter_options or not same_seg) else recorded.segmenter_options,
        request.background if request.background is not None else (
            recorded.background if recorded is not None else DEFAULT_BACKGROUND))
