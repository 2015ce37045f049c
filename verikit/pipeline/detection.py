"""From image files to the crops that get embedded: detect, choose faces, mask, crop, align.

This module owns :class:`FaceCropper`, which runs a :class:`~verikit.pipeline.settings.PipelineSettings`
on batches of images: the detector finds boxes (no detector: the whole image is the one box),
the :class:`~verikit.pipeline.settings.FacePolicy` decides which faces to keep (no face: a failure
naming the file; several: ``largest``, ``all`` or ``error``), the segmenter's masks replace the
background (:mod:`verikit.pipeline.segmentation`), and each kept box becomes a crop (margin, eyes
levelled, or the face chip of :mod:`verikit.pipeline.alignment` when the detector gives 68
landmarks), optionally saved so a person can see what was embedded. The settings themselves and
the gallery's record of them live in :mod:`verikit.pipeline.settings`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import DataError, FaceNotFoundError, ImageError
from ..image_input import as_source, check_sequence, input_name, to_image
from ..structures import Detections
from .alignment import face_chip, ibug68_points
from .decoding import decode_batch
from .segmentation import run_segmenter, suppress_background, whole_image
from .settings import FacePolicy, PipelineSettings

# -- crops -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Crop:
    """One face cut out of one source image, ready to embed."""

    source: Any         # the input it came from: a Path for a file, else the in-memory image as given
    face: int           # index among the faces kept for this source (0 unless policy 'all')
    of: int             # how many faces were kept for this source
    image: Any          # PIL RGB image
    box: tuple[float, float, float, float]
    score: float
    aligned: bool

    @property
    def label(self) -> str:
        """The name this crop goes by: the file (as :func:`verikit.io.path_text`), or ``file#k`` when
        one file gave several faces."""
        name = input_name(self.source)
        return name if self.of == 1 else f"{name}#{self.face}"


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
        raise FaceNotFoundError(f"no face found in '{source}'")
    if n == 1 or policy == "all":
        return list(range(n))
    if policy == "error":
        raise ImageError(f"{n} faces found in '{source}' (--multiple-faces error; use largest or all)")
    areas = dets.areas
    return [int(max(range(n), key=lambda i: (float(areas[i]), float(dets.scores[i]))))]


class FaceCropper:
    """Pipeline settings + policy: image files in, crops to embed (and reasons for failures) out."""

    def __init__(self, settings: PipelineSettings, policy: FacePolicy | None = None, *, detector: Any = None,
                 segmenter: Any = None) -> None:
        self.settings = settings
        self.policy = policy or FacePolicy()
        settings.check_weights()
        self.detector = detector if detector is not None else settings.build_detector()
        self.segmenter = segmenter if segmenter is not None else settings.build_segmenter()
        self._saved: dict[str, int] = {}
        if self.policy.save_crops is not None:
            self.policy.save_crops.mkdir(parents=True, exist_ok=True)

    def _detect(self, images: Sequence[Any]) -> list[Detections]:
        if self.detector is None:
            return [whole_image(im) for im in images]
        all_dets = self.detector.detect(list(images))
        if len(all_dets) != len(images):
            raise DataError(f"detector {self.settings.detector} returned {len(all_dets)} results for {len(images)} images")
        return list(all_dets)

    def crops_of_images(self, images: Sequence[Any], sources: Sequence[Any] | None = None
                        ) -> list[list[Crop] | ImageError]:
        """Per image: its crops, or the ImageError that says why it has none to embed.

        ``images`` may be in any form :func:`verikit.image_input.to_image` accepts (one that
        cannot be used raises its ImageError); ``sources`` name them (default: the images).
        """
        images = check_sequence(images)
        sources = list(images) if sources is None else [as_source(s) for s in sources]
        return self._crops([to_image(im) for im in images], sources)

    def _crops(self, images: list[Any], sources: list[Any]) -> list[list[Crop] | ImageError]:
        """:meth:`crops_of_images` of images already converted to RGB."""
        if not images:
            return []
        kept: list[tuple[Any, Detections, str | Path] | ImageError] = []
        for image, dets, source in zip(images, self._detect(images), sources):
            try:
                kept.append((image, dets.select(choose_faces(dets, self.policy.multiple_faces, input_name(source))), source))
            except ImageError as exc:
                kept.append(exc)
        todo = [k for k in kept if not isinstance(k, ImageError)]
        masks = (run_segmenter(self.segmenter, str(self.settings.segmenter), [k[0] for k in todo], [k[1] for k in todo])
                 if self.segmenter is not None else [None] * len(todo))
        mask_of = {id(k): m for k, m in zip(todo, masks)}
        out: list[list[Crop] | ImageError] = []
        for item in kept:
            if isinstance(item, ImageError):
                out.append(item)
                continue
            image, dets, source = item
            image_masks = mask_of[id(item)]
            crops = []
            for i in range(len(dets)):
                eyes, points = None, None
                if self.settings.align:
                    points = ibug68_points(dets, i)
                if self.settings.align and points is None:
                    left, right = dets.landmark(i, "left_eye"), dets.landmark(i, "right_eye")
                    eyes = (left, right) if left is not None and right is not None else None
                # Mask the whole image first, then crop: the margin around the box is background too.
                source_image = image if image_masks is None else \
                    suppress_background(image, image_masks.masks[i], self.settings.background)
                if points is not None:  # 68 landmarks: the full similarity alignment onto the mean face
                    img, aligned = face_chip(source_image, points, self.settings.crop_margin), True
                else:
                    img, aligned = crop_face(source_image, dets.boxes[i], eyes, self.settings.crop_margin)
                crop = Crop(source, i, len(dets), img, tuple(float(v) for v in dets.boxes[i]),
                            float(dets.scores[i]), aligned)
                self._save(crop)
                crops.append(crop)
            out.append(crops)
        return out

    def crops_of_files(self, paths: Sequence[Any], *, batch_size: int = 16
                       ) -> Iterator[tuple[list[Crop], list[tuple[Any, str]]]]:
        """Batches of (crops, failures): unreadable files (or in-memory images that cannot be
        used) and files without a usable face are failures. Each batch's files are decoded on a
        few threads at once (:func:`verikit.pipeline.decoding.decode_batch`)."""
        paths = check_sequence(paths, "paths")
        for start in range(0, len(paths), batch_size):
            images, sources, failures = [], [], []
            batch = paths[start:start + batch_size]
            for p, image in zip(batch, decode_batch(batch)):  # the batch's files decoded on a few threads at once
                if isinstance(image, ImageError):
                    failures.append((as_source(p), str(image)))
                else:
                    images.append(image)
                    sources.append(as_source(p))
            crops: list[Crop] = []
            for source, result in zip(sources, self._crops(images, sources)):
                if isinstance(result, ImageError):
                    failures.append((source, str(result)))
                else:
                    crops.extend(result)
            yield crops, failures

    def crops_of_file(self, path: Any) -> list[Crop]:
        """The crops of one probe (a file or an in-memory image); ImageError (one line naming it)
        when it has none."""
        result = self._crops([to_image(path)], [as_source(path)])[0]
        if isinstance(result, ImageError):
            raise result
        return result

    def _save(self, crop: Crop) -> None:
        folder = self.policy.save_crops
        if folder is None:
            return
        source = crop.source if isinstance(crop.source, Path) else Path("image")  # in memory: no file name
        stem = f"{source.stem or source.name}{source.suffix.replace('.', '_')}_face{crop.face}"
        # Two inputs with the same file name (different folders) get distinct crop files in one run.
        n = self._saved.get(stem, 0)
        self._saved[stem] = n + 1
        name = f"{stem}.png" if n == 0 else f"{stem}-{n}.png"
        tmp = folder / f".{name}.tmp"
        crop.image.save(tmp, format="PNG")
        os.replace(tmp, folder / name)
