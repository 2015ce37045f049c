"""From image files to the face crops that get embedded, and the gallery's record of how.

This module owns three things:

* :class:`DetectionSettings`: which detector (spec + options) and how its boxes become crops
  (margin, eye alignment). Everything here changes the embeddings, so a gallery records it at
  creation and every later enroll or probe of that gallery must use the same settings.
* :class:`FacePolicy`: what to do per run with an image that has no face (fail the single probe;
  skip and report it in a batch) or several (``largest``, ``all``, or ``error``), and where to
  save the crops (``save_crops``) so a person can see what was embedded.
* :class:`FaceCropper`: runs the detector on batches of images and applies both.

Gallery binding (:func:`bind_to_gallery`): a gallery created with a detector makes later runs use
the recorded detector automatically when none is given; a *different* detector (or crop margin)
is refused, and so is a detector on a gallery created without one. That keeps probes going through
exactly the steps that made the templates.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import DataError, GalleryError, ImageError
from ..structures import Detections

GALLERY_META_KEY = "detector"
MULTIPLE_FACES = ("largest", "all", "error")
DEFAULT_CROP_MARGIN = 0.2


def _json_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(options or {}), sort_keys=True))  # tuples -> lists, so equal compares
    except (TypeError, ValueError) as exc:
        raise DataError(f"detector options must be JSON-serialisable: {exc}") from exc


@dataclass(frozen=True)
class DetectionSettings:
    """How images become crops; recorded in a gallery (``meta['detector']``) as JSON."""

    detector: str
    options: Mapping[str, Any] = field(default_factory=dict)
    crop_margin: float = DEFAULT_CROP_MARGIN
    align: bool = True

    def __post_init__(self) -> None:
        from ..registry import parse_spec

        parse_spec(self.detector)  # raises PluginError on an empty spec
        object.__setattr__(self, "options", _json_options(self.options))
        margin = float(self.crop_margin)
        if not math.isfinite(margin) or not 0.0 <= margin <= 2.0:
            raise DataError(f"crop margin must be between 0 and 2 (a fraction of the box size), got {self.crop_margin}")
        object.__setattr__(self, "crop_margin", margin)
        object.__setattr__(self, "align", bool(self.align))

    def to_dict(self) -> dict[str, Any]:
        return {"detector": self.detector, "options": dict(self.options), "crop_margin": self.crop_margin,
                "align": self.align}

    def to_meta(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_meta(cls, raw: str | None) -> "DetectionSettings | None":
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(data["detector"], data.get("options") or {}, data.get("crop_margin", DEFAULT_CROP_MARGIN),
                       data.get("align", True))
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"gallery's recorded detector settings are malformed: {raw!r}") from exc

    def describe(self) -> str:
        opts = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.options.items()))
        return f"{self.detector}" + (f" ({opts})" if opts else "") + f", crop margin {self.crop_margin:g}"

    def build_detector(self) -> Any:
        from ..registry import detectors

        return detectors.create(self.detector, **dict(self.options))


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


def recorded_settings(gallery: Any) -> DetectionSettings | None:
    """The detector settings a gallery was created with (None: it embeds whole images)."""
    return DetectionSettings.from_meta(gallery.meta(GALLERY_META_KEY))


def resolve_settings(recorded: DetectionSettings | None, requested: DetectionSettings | None,
                     gallery_label: str) -> DetectionSettings | None:
    """The settings to use with a gallery: the recorded ones; a different request is refused."""
    if requested is None or requested == recorded:
        return recorded
    if recorded is None:
        raise GalleryError(f"gallery '{gallery_label}' was enrolled without a detector, so its probes must not use one "
                           f"(drop --detector, or enroll into a new gallery with --detector {requested.detector})")
    raise GalleryError(f"gallery '{gallery_label}' was enrolled with detector {recorded.describe()}, not "
                       f"{requested.describe()}; drop --detector/--crop-margin to use the recorded one")


def bind_to_gallery(gallery: Any, requested: DetectionSettings | None) -> DetectionSettings | None:
    return resolve_settings(recorded_settings(gallery), requested, str(gallery.path))


# -- crops -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    """One face cut out of one source image, ready to embed."""

    source: Path
    face: int           # index among the faces kept for this source (0 unless policy 'all')
    of: int             # how many faces were kept for this source
    image: Any          # PIL RGB image
    box: tuple[float, float, float, float]
    score: float
    aligned: bool

    @property
    def label(self) -> str:
        """The name this crop goes by: the file, or ``file#k`` when one file gave several faces."""
        return str(self.source) if self.of == 1 else f"{self.source}#{self.face}"


def expand_box(box: Sequence[float], margin: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """``box`` grown by ``margin`` x its width/height on every side, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    W, H = size
    return (max(0.0, x1 - margin * w), max(0.0, y1 - margin * h), min(float(W), x2 + margin * w),
            min(float(H), y2 + margin * h))


def crop_face(image: Any, box: Sequence[float], eyes: tuple[tuple[float, float], tuple[float, float]] | None,
              margin: float) -> tuple[Any, bool]:
    """Cut the (expanded) box out of ``image``; with two eyes, rotate so they are level.

    The rotated crop is sampled in one affine resampling about the crop's centre, so no
    information is lost to a second interpolation. Returns (crop, aligned).
    """
    from PIL import Image

    x1, y1, x2, y2 = expand_box(box, margin, image.size)
    out_w, out_h = max(1, round(x2 - x1)), max(1, round(y2 - y1))
    if eyes is None:
        return image.crop((round(x1), round(y1), round(x1) + out_w, round(y1) + out_h)), False
    (lx, ly), (rx, ry) = eyes
    theta = math.atan2(ry - ly, rx - lx)  # the eye line's tilt, clockwise in image coordinates
    c, s = math.cos(theta), math.sin(theta)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    # output (u, v) -> input centre + R(theta) (u - w/2, v - h/2): horizontal in the crop follows the eye line
    coeffs = (c, -s, cx - c * out_w / 2.0 + s * out_h / 2.0, s, c, cy - s * out_w / 2.0 - c * out_h / 2.0)
    return image.transform((out_w, out_h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR), True


def choose_faces(dets: Detections, policy: str, source: str) -> list[int]:
    """Indices of the faces to embed, or ImageError naming the file (no face / several with 'error')."""
    n = len(dets)
    if n == 0:
        raise ImageError(f"no face found in '{source}'")
    if n == 1 or policy == "all":
        return list(range(n))
    if policy == "error":
        raise ImageError(f"{n} faces found in '{source}' (--multiple-faces error; use largest or all)")
    areas = dets.areas
    return [int(max(range(n), key=lambda i: (float(areas[i]), float(dets.scores[i]))))]


class FaceCropper:
    """Detector + settings + policy: image files in, face crops (and reasons for failures) out."""

    def __init__(self, settings: DetectionSettings, policy: FacePolicy | None = None, *, detector: Any = None) -> None:
        self.settings = settings
        self.policy = policy or FacePolicy()
        self.detector = detector if detector is not None else settings.build_detector()
        self._saved: dict[str, int] = {}
        if self.policy.save_crops is not None:
            self.policy.save_crops.mkdir(parents=True, exist_ok=True)

    def crops_of_images(self, images: Sequence[Any], sources: Sequence[str | Path]
                        ) -> list[list[Crop] | ImageError]:
        """Per image: its crops, or the ImageError that says why it has none to embed."""
        if not images:
            return []
        all_dets = self.detector.detect(list(images))
        if len(all_dets) != len(images):
            raise DataError(f"detector {self.settings.detector} returned {len(all_dets)} results for {len(images)} images")
        out: list[list[Crop] | ImageError] = []
        for image, dets, source in zip(images, all_dets, sources):
            try:
                keep = choose_faces(dets, self.policy.multiple_faces, str(source))
            except ImageError as exc:
                out.append(exc)
                continue
            crops = []
            for k, i in enumerate(keep):
                eyes = None
                if self.settings.align:
                    left, right = dets.landmark(i, "left_eye"), dets.landmark(i, "right_eye")
                    eyes = (left, right) if left is not None and right is not None else None
                img, aligned = crop_face(image, dets.boxes[i], eyes, self.settings.crop_margin)
                crop = Crop(Path(source), k, len(keep), img, tuple(float(v) for v in dets.boxes[i]),
                            float(dets.scores[i]), aligned)
                self._save(crop)
                crops.append(crop)
            out.append(crops)
        return out

    def crops_of_files(self, paths: Sequence[str | Path], *, batch_size: int = 16
                       ) -> Iterator[tuple[list[Crop], list[tuple[Path, str]]]]:
        """Batches of (crops, failures): unreadable files and files without a usable face are failures."""
        from ..io import load_image

        for start in range(0, len(paths), batch_size):
            images, sources, failures = [], [], []
            for p in paths[start:start + batch_size]:
                try:
                    images.append(load_image(p))
                    sources.append(Path(p))
                except ImageError as exc:
                    failures.append((Path(p), str(exc)))
            crops: list[Crop] = []
            for source, result in zip(sources, self.crops_of_images(images, sources)):
                if isinstance(result, ImageError):
                    failures.append((source, str(result)))
                else:
                    crops.extend(result)
            yield crops, failures

    def crops_of_file(self, path: str | Path) -> list[Crop]:
        """The crops of one probe file; ImageError (one line naming it) when it has none."""
        from ..io import load_image

        result = self.crops_of_images([load_image(path)], [Path(path)])[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def _save(self, crop: Crop) -> None:
        folder = self.policy.save_crops
        if folder is None:
            return
        stem = f"{crop.source.stem or crop.source.name}{crop.source.suffix.replace('.', '_')}_face{crop.face}"
        # Two inputs with the same file name (different folders) get distinct crop files in one run.
        n = self._saved.get(stem, 0)
        self._saved[stem] = n + 1
        name = f"{stem}.png" if n == 0 else f"{stem}-{n}.png"
        tmp = folder / f".{name}.tmp"
        crop.image.save(tmp, format="PNG")
        os.replace(tmp, folder / name)
