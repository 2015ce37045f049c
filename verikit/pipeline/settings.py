"""How an image file becomes the picture that gets embedded, and the gallery's record of it.

This module owns:

* :class:`PipelineSettings`: which detector (spec + options) finds the face and how its box
  becomes a crop (margin, eye alignment); which segmenter (spec + options) masks the background
  and what the background is replaced by. Either step may be absent (no detector: the whole
  image is the one "face"; no segmenter: nothing is masked). Everything here changes the
  embeddings, so a gallery records it at creation and every later enroll or probe must match.
* :class:`FacePolicy`: per-run choices that do not change embeddings: what to do with several
  faces (``largest``, ``all``, ``error``) and where to save the crops.
* Gallery binding (:func:`bind_to_gallery`): a gallery created with a pipeline makes later runs
  use it automatically when none is given; different settings are refused, and so is a pipeline
  on a gallery created without one. Probes thus go through exactly the steps that made the
  templates.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ..errors import DataError, GalleryError

GALLERY_META_KEY = "pipeline"
LEGACY_META_KEY = "detector"  # galleries written before segmenters existed recorded only the detector
MULTIPLE_FACES = ("largest", "all", "error")
DEFAULT_CROP_MARGIN = 0.2
# What a masked-out pixel becomes. Mid grey is the default: after the usual mean/std normalisation
# it sits near zero, so suppressed background carries little signal either way.
BACKGROUNDS = {"grey": (128, 128, 128), "black": (0, 0, 0), "white": (255, 255, 255)}
DEFAULT_BACKGROUND = "grey"


def _json_options(options: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(options or {}), sort_keys=True))  # tuples -> lists, so equal compares
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} options must be JSON-serialisable: {exc}") from exc


def weights_digest(options: Mapping[str, Any]) -> str | None:
    """SHA-256 (16 hex digits) of the local file an options dict loads as ``weights``, if any."""
    path = options.get("weights")
    if not isinstance(path, str) or not Path(path).is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _describe(spec: str, options: Mapping[str, Any]) -> str:
    opts = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(options.items()))
    return spec + (f" ({opts})" if opts else "")


@dataclass(frozen=True)
class PipelineSettings:
    """Detector and/or segmenter an image goes through before embedding; recorded in a gallery."""

    detector: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    crop_margin: float = DEFAULT_CROP_MARGIN
    align: bool = True
    segmenter: str | None = None
    segmenter_options: Mapping[str, Any] = field(default_factory=dict)
    background: str = DEFAULT_BACKGROUND
    # Digests of local weights files (see with_digests): recorded in a gallery so that a detector or
    # segmenter retrained into the same path is caught. Not part of equality: the settings asked
    # for are the same settings whether or not their files have been hashed yet.
    detector_weights: str | None = field(default=None, compare=False)
    segmenter_weights: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from ..registry import parse_spec

        if self.detector is None and self.segmenter is None:
            raise DataError("a pipeline needs a detector, a segmenter or both")
        if self.detector is not None:
            parse_spec(self.detector)  # raises PluginError on an empty spec
        elif self.options:
            raise DataError("detector options given without a detector")
        if self.segmenter is not None:
            parse_spec(self.segmenter)
        elif self.segmenter_options:
            raise DataError("segmenter options given without a segmenter")
        object.__setattr__(self, "options", _json_options(self.options, "detector"))
        object.__setattr__(self, "segmenter_options", _json_options(self.segmenter_options, "segmenter"))
        margin = float(self.crop_margin)
        if not math.isfinite(margin) or not 0.0 <= margin <= 2.0:
            raise DataError(f"crop margin must be between 0 and 2 (a fraction of the box size), got {self.crop_margin}")
        object.__setattr__(self, "crop_margin", margin)
        object.__setattr__(self, "align", bool(self.align))
        if self.background not in BACKGROUNDS:
            raise DataError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "options": dict(self.options), "crop_margin": self.crop_margin,
                "align": self.align, "segmenter": self.segmenter,
                "segmenter_options": dict(self.segmenter_options), "background": self.background,
                "detector_weights": self.detector_weights, "segmenter_weights": self.segmenter_weights}

    def to_meta(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_meta(cls, raw: str | None) -> "PipelineSettings | None":
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(data.get("detector"), data.get("options") or {}, data.get("crop_margin", DEFAULT_CROP_MARGIN),
                       data.get("align", True), data.get("segmenter"), data.get("segmenter_options") or {},
                       data.get("background", DEFAULT_BACKGROUND), data.get("detector_weights"),
                       data.get("segmenter_weights"))
        except (ValueError, KeyError, TypeError, AttributeError, DataError) as exc:
            raise GalleryError(f"gallery's recorded pipeline settings are malformed: {raw!r}") from exc

    def describe(self) -> str:
        parts = []
        if self.detector is not None:
            parts.append(f"detector {_describe(self.detector, self.options)}, crop margin {self.crop_margin:g}")
        if self.segmenter is not None:
            parts.append(f"segmenter {_describe(self.segmenter, self.segmenter_options)}, "
                         f"{self.background} background")
        return "; ".join(parts)

    def with_digests(self) -> "PipelineSettings":
        """These settings with the digests of their local weights files as they are now."""
        return replace(self, detector_weights=weights_digest(self.options),
                       segmenter_weights=weights_digest(self.segmenter_options))

    def check_weights(self) -> None:
        """Refuse weights files that changed since these settings recorded their digests."""
        now = self.with_digests()
        for what, recorded, current, options in (
                ("detector", self.detector_weights, now.detector_weights, self.options),
                ("segmenter", self.segmenter_weights, now.segmenter_weights, self.segmenter_options)):
            if recorded is not None and current != recorded:
                state = "is missing" if current is None else f"has changed (sha256 {current}, recorded {recorded})"
                raise GalleryError(f"the {what} weights file '{options.get('weights')}' {state} since the gallery "
                                   "was enrolled: its templates were made with other weights; restore the file or "
                                   "enroll into a new gallery")

    def build_detector(self) -> Any:
        from ..registry import detectors

        return None if self.detector is None else detectors.create(self.detector, **dict(self.options))

    def build_segmenter(self) -> Any:
        from ..registry import segmenters

        return None if self.segmenter is None else segmenters.create(self.segmenter, **dict(self.segmenter_options))


@dataclass(frozen=True)
class FacePolicy:
    """Per-run choices that do not change embeddings: several faces, where to save crops."""

    multiple_faces: str = "largest"
    save_crops: Path | None = None

    def __post_init__(self) -> None:
        if self.multiple_faces not in MULTIPLE_FACES:
            raise DataError(f"multiple-faces policy must be one of {', '.join(MULTIPLE_FACES)}, "
                            f"got {self.multiple_faces!r}")
        if self.save_crops is not None:
            object.__setattr__(self, "save_crops", Path(self.save_crops))


def recorded_settings(gallery: Any) -> PipelineSettings | None:
    """The pipeline a gallery was created with (None: it embeds whole images as they are)."""
    raw = gallery.meta(GALLERY_META_KEY)
    return PipelineSettings.from_meta(raw if raw else gallery.meta(LEGACY_META_KEY))


def resolve_settings(recorded: PipelineSettings | None, requested: PipelineSettings | None,
                     gallery_label: str) -> PipelineSettings | None:
    """The settings to use with a gallery: the recorded ones; a different request is refused."""
    if requested is None or requested == recorded:
        return recorded
    if recorded is None:
        flags = " ".join(f for f, v in (("--detector", requested.detector), ("--segmenter", requested.segmenter)) if v)
        raise GalleryError(f"gallery '{gallery_label}' was enrolled without a detector or segmenter, so its probes "
                           f"must not use one (drop {flags}, or enroll into a new gallery with it)")
    raise GalleryError(f"gallery '{gallery_label}' was enrolled with {recorded.describe()}, not "
                       f"{requested.describe()}; drop the pipeline options to use the recorded ones")


def bind_to_gallery(gallery: Any, requested: PipelineSettings | None) -> PipelineSettings | None:
    return resolve_settings(recorded_settings(gallery), requested, str(gallery.path))
