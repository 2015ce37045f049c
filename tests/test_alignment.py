"""Alignment on 68 landmarks: the least-squares similarity, the face chip's geometry (read back
from an image whose pixels encode their own coordinates), and FaceCropper choosing it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from verikit.pipeline.alignment import (IBUG68_NAMES, MEAN_FACE_X, MEAN_FACE_Y, TEMPLATE_FIRST, face_chip,
                                        ibug68_points, similarity_transform)
from verikit.pipeline.detection import FaceCropper
from verikit.pipeline.settings import PipelineSettings
from verikit.registry import detectors
from verikit.structures import Detections

TEMPLATE = np.stack([MEAN_FACE_X, MEAN_FACE_Y], 1)


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a, b = scale * math.cos(math.radians(angle_deg)), scale * math.sin(math.radians(angle_deg))
    return np.array([[a, -b, tx], [b, a, ty]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_a_known_one_and_fits_least_squares():
    truth = similarity(23.0, 1.7, 40.0, -12.5)
    assert np.allclose(similarity_transform(TEMPLATE, apply(truth, TEMPLATE)), truth, atol=1e-9)
    # Noisy targets: the closed form equals a generic least-squares solve over (a, b, tx, ty).
    rng = np.random.default_rng(0)
    dst = apply(truth, TEMPLATE) + rng.normal(0, 0.05, TEMPLATE.shape)
    rows = [[x, -y, 1, 0] for x, y in TEMPLATE] + [[y, x, 0, 1] for x, y in TEMPLATE]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
    assert np.allclose(similarity_transform(TEMPLATE, dst), [[a, -b, tx], [b, a, ty]], atol=1e-9)
    with pytest.raises(ValueError, match="two distinct"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def coordinate_image(w: int = 240, h: int = 220) -> Image.Image:
    """Red = x, green = y of each pixel's centre (integers below 256), blue = 0."""
    x, y = np.meshgrid(np.arange(w), np.arange(h))
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8))


@pytest.mark.parametrize("angle, margin", [(0.0, 0.25), (17.0, 0.25), (-30.0, 0.1)])
def test_face_chip_puts_the_landmarks_on_the_mean_face(angle, margin):
    to_image = similarity(angle, 90.0, 70.0, 60.0)  # a face 90 px wide, tilted by `angle`
    points = np.zeros((68, 2))
    points[TEMPLATE_FIRST:] = apply(to_image, TEMPLATE)
    chip = face_chip(coordinate_image(), points, margin)
    side = round(90.0 * (1 + 2 * margin))
    assert chip.size == (side, side)  # the face keeps its resolution
    pixels = np.asarray(chip).astype(float)
    for k in (19, 30, 36, 45, 48, 57):  # brow, nose tip, eye corners, mouth
        u, v = (TEMPLATE[k - TEMPLATE_FIRST] + margin) / (1 + 2 * margin) * side  # where dlib's chip puts it
        read = pixels[int(v), int(u), :2]  # the image coordinates that pixel was sampled from
        assert np.abs(read - points[k]).max() < 2.0, (k, read, points[k])


def test_ibug68_points_needs_all_68():
    pts = np.arange(68 * 2, dtype=np.float32).reshape(1, 68, 2)
    dets = Detections([[0, 0, 10, 10]], [1.0], landmarks=pts, landmark_names=IBUG68_NAMES)
    assert np.array_equal(ibug68_points(dets, 0), pts[0])
    missing = pts.copy()
    missing[0, 40] = np.nan
    assert ibug68_points(Detections([[0, 0, 10, 10]], [1.0], landmarks=missing, landmark_names=IBUG68_NAMES), 0) is None
    eyes = Detections([[0, 0, 10, 10]], [1.0], landmarks=pts[:, :2], landmark_names=("left_eye", "right_eye"))
    assert ibug68_points(eyes, 0) is None
    assert ibug68_points(Detections([[0, 0, 10, 10]], [1.0]), 0) is None


class TemplateFace:
    """A detector plugin that reports a tilted face's 68 points (and a box around them)."""

    to_image = similarity(12.0, 80.0, 80.0, 70.0)

    def detect(self, images):
        points = np.zeros((68, 2))
        points[TEMPLATE_FIRST:] = apply(self.to_image, TEMPLATE)
        box = [*points[TEMPLATE_FIRST:].min(0), *points[TEMPLATE_FIRST:].max(0)]
        return [Detections([box], [1.0], landmarks=points[None].astype(np.float32), landmark_names=IBUG68_NAMES,
                           image_size=im.size) for im in images]


def test_face_cropper_cuts_the_chip_when_68_landmarks_come_and_aligning_is_on():
    image = coordinate_image()
    with detectors.temporary("templateface", lambda *a, **k: TemplateFace()):
        aligned = FaceCropper(PipelineSettings("templateface", crop_margin=0.25)).crops_of_images([image], ["f.png"])[0][0]
        plain = FaceCropper(PipelineSettings("templateface", crop_margin=0.25, align=False)
                            ).crops_of_images([image], ["f.png"])[0][0]
    assert aligned.aligned and not plain.aligned
    assert aligned.image.size == (120, 120)  # 80 px face, 0.25 margin per side
    expected = face_chip(image, TemplateFace().detect([image])[0].landmarks[0].astype(float), 0.25)
    assert np.array_equal(np.asarray(aligned.image), np.asarray(expected))
    assert plain.image.size != aligned.image.size  # the box with its margin, not rotated
