"""face-api.js's two face detectors as one verikit box detector: images in, face boxes out.

:class:`FaceApiBoxDetector` runs either network (:mod:`verikit_faceapi.ssd`,
:mod:`verikit_faceapi.tiny_yolo`) the way face-api.js does on an image tensor, so its boxes are
face-api.js's:

1. the image is zero-padded at the bottom or right to a square (``padToSquare``, not centred)
   and resized to the network's input with TensorFlow's legacy bilinear rule
   (``resizeBilinear(alignCorners=false, halfPixelCenters=false)``: source = destination x
   in/out, no half-pixel shift; :func:`resize_to_square`);
2. normalised (SSD: x / 127.5 - 1; Tiny-YOLO: (x - mean) / 255) and run, several images per
   forward;
3. decoded, thresholded (score > threshold, strictly), and suppressed with greedy NMS
   (``torchvision.ops.nms``: the same rule as face-api.js's, IoU above the threshold suppresses);
4. mapped back to the image through face-api.js's correction for the padding, which uses the
   *rounded* size of the image inside the square (``computeReshapedDimensions``).

Two differences from face-api.js, both at the end: face-api.js leaves boxes that reach into the
padding or past the image's edge, and verikit's contract wants boxes inside the image, so they are
clipped to it; and an image where nothing is found is searched once more inside a grey border
(``border``, a fraction of its longer side on every side), because both networks miss a face that
fills the whole frame -- a photo already cropped to a face, as in ORL (measured on 42 ORL photos:
SSD finds 41 with a border of 0.5 and few without). ``border=0`` gives face-api.js's boxes exactly.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from verikit.plugin_api import Detections, shared_pool


def resize_to_square(pixels: np.ndarray, size: int, mean: Sequence[float] = (0.0, 0.0, 0.0),
                     scale: float = 1.0, out: np.ndarray | None = None) -> torch.Tensor:
    """(H, W, C) pixels -> (C, size, size) float32: zero-padded at the bottom/right to a square
    (face-api.js's ``padToSquare``), resized with tfjs's ``resizeBilinear(alignCorners=false,
    halfPixelCenters=false)`` -- output pixel i reads source position i * side / size, between
    entries floor and min(ceil, side - 1) -- and normalised, (x - mean) / scale. Normalising is
    linear, so it is done on the padded source, before the resize. ``out``: a (size, size, C)
    float32 array (a view into a channels-last batch) that receives the result as well.

    One ``grid_sample`` does it (two to three times faster here than gathering in numpy): a grid with
    ``align_corners=True`` addresses pixel indices exactly; one zero row / column on the short
    side stands for the padding, and ``padding_mode='border'`` repeats it beyond, as it repeats
    the long side's last pixel where TensorFlow clamps to it.

    Everything around that one call is numpy, on purpose: the uint8 -> float conversion, the mean
    subtracted, the padding, the division and the copy into the batch are each exact or a single
    correctly rounded float32 operation, so the values are bitwise those torch's
    elementwise ops give, but numpy runs them on the calling thread. Torch would open a parallel
    region for each of them (and ``grid_sample`` parallelises over the batch only, so one image
    runs on one thread): with two threads on two shared cores each region waits for the other
    thread to be scheduled, which made preparing a photo several times slower at 2 threads than
    at 1 (measured under load) and left the forward, which does gain from threads, with less."""
    h, w, channels = pixels.shape
    side = max(h, w)
    rows, cols = h + int(h < side), w + int(w < side)
    mean32 = np.asarray(mean, np.float32)
    x = np.empty((rows, cols, channels), np.float32)
    # Rows of (width x channels) values, so numpy's inner loops run along a row, not over 3 channels.
    image = x.reshape(rows, cols * channels)[:h, :w * channels]
    image[...] = pixels.reshape(h, w * channels)
    image -= np.tile(mean32, w)
    x[h:] = -mean32  # the padding row / column (at most one of the two exists): (0 - mean) / scale
    x[:h, w:] = -mean32
    x /= np.float32(scale)
    grid = _sample_grid(rows, cols, side, size)
    source = torch.from_numpy(x)[None].permute(0, 3, 1, 2)
    result = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    if out is not None:  # channel by channel: a plane into every third float, faster than one transposing copy
        planes = result.numpy()
        for c in range(channels):
            out[..., c] = planes[c]
    return result


@functools.lru_cache(maxsize=64)
def _sample_grid(rows: int, cols: int, side: int, size: int) -> torch.Tensor:
    """resize_to_square's sampling grid (1, size, size, 2) for a padded source of rows x cols.
    Made outside inference mode so the cached tensor can serve any caller; never written to."""
    with torch.inference_mode(False):
        pos = torch.arange(size, dtype=torch.float64) * (side / size)
        gx = (2 * pos / max(cols - 1, 1) - 1).float()
        gy = (2 * pos / max(rows - 1, 1) - 1).float()
        return torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]


def _each_image(fn: Callable[[int], None], count: int) -> None:
    """``fn(k)`` for k in range(count): on the calling thread when torch may use one thread, else
    spread over that many worker threads (at most one per image).

    Preparing an image is single-threaded work -- numpy, and a ``grid_sample`` of one image, which
    torch parallelises over the batch only -- so with two torch threads one core sat idle while the
    other prepared the whole batch, the part of verikit's path the raw forward does not have
    (measured on 32 FDDB photos at 2 threads: 3.5 -> 2.3 ms a photo). Each image writes its own
    slot, and the result does not depend on which thread made it. The workers never exceed the
    threads torch was given, so ``torch.set_num_threads(1)`` still means one core. The threads are
    verikit's shared pool of that size (``verikit.plugin_api.shared_pool``)."""
    workers = min(torch.get_num_threads(), count)
    if workers <= 1:
        for k in range(count):
            fn(k)
        return
    for _ in shared_pool(workers).map(fn, range(count)):  # re-raises the first error
        pass


def reshaped_dims(width: int, height: int, size: int) -> tuple[int, int]:
    """face-api.js's computeReshapedDimensions: the image's size inside the square, rounded
    (JavaScript's Math.round: halves go up)."""
    scale = size / max(width, height)
    return int(np.floor(width * scale + 0.5)), int(np.floor(height * scale + 0.5))


class FaceApiBoxDetector:
    """``kind`` ``"ssd"`` or ``"tiny_yolo"``: boxes and scores, no landmarks.

    ``score_threshold`` keeps scores strictly above it; ``nms_iou`` suppresses a box whose IoU
    with a better one is above it; ``max_results`` caps the boxes per image (None: no cap);
    ``input_size`` is the square the network sees; ``border``: see the module's docstring;
    ``enhance``: the network looks at a contrast-normalised copy of each photo
    (:mod:`verikit_faceapi.contrast`; ``none``: the photo itself); the boxes are in the photo's pixels.
    """

    BORDER_FILL = (128, 128, 128)  # mid grey: about zero after either network's normalisation

    def __init__(self, net: torch.nn.Module, kind: str, *, input_size: int, score_threshold: float, nms_iou: float,
                 max_results: int | None, border: float = 0.0, batch_size: int = 8, enhance: str = "none") -> None:
        # channels-last: about 2x faster depthwise / pointwise convolutions on the CPU (measured)
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.kind = kind
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_results = max_results
        self.border = border
        self.batch_size = batch_size
        self.enhance = enhance

    def __repr__(self) -> str:
        return (f"FaceApiBoxDetector({self.kind!r}, input_size={self.input_size}, score_threshold="
                f"{self.score_threshold}, nms_iou={self.nms_iou}, max_results={self.max_results}, border={self.border}, "
                f"enhance={self.enhance!r})")

    def prepare(self, images: Sequence[Any]) -> torch.Tensor:
        """The network's input batch for ``images`` (normalised as face-api.js does), channels-last;
        with several torch threads, several images are prepared at once (:func:`_each_image`)."""
        from .tiny_yolo import TINY_MEAN_RGB

        # SSD: x / 127.5 - 1; Tiny-YOLO: (x - mean) / 255
        mean, scale = ((127.5,) * 3, 127.5) if self.kind == "ssd" else (TINY_MEAN_RGB, 255.0)
        size = self.input_size
        batch = torch.empty((len(images), size, size, 3))  # channels-last memory, filled through numpy
        slots = batch.numpy()

        def one(k: int) -> None:
            image = images[k]
            resize_to_square(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), size, mean, scale,
                             out=slots[k])

        _each_image(one, len(images))
        return batch.permute(0, 3, 1, 2)

    def raw_boxes(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward + decode: (B, N, 4) x1, y1, x2, y2 fractions of the square input, (B, N) scores."""
        if self.kind == "ssd":
            from .ssd import decode_boxes, face_scores

            encodings, logits = self.net(batch)
            yxyx = decode_boxes(encodings, self.net.anchors)
            return yxyx[..., [1, 0, 3, 2]], face_scores(logits)
        from .tiny_yolo import decode_cells

        return decode_cells(self.net(batch))

    def select(self, boxes: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image's threshold, NMS and cap; best first."""
        from torchvision.ops import nms

        keep = scores > self.score_threshold
        boxes, scores = boxes[keep], scores[keep]
        kept = nms(boxes.double(), scores.double(), self.nms_iou)
        if self.max_results is not None:
            kept = kept[:self.max_results]
        return boxes[kept], scores[kept]

    def to_image(self, boxes: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
        """Square-input fractions -> image pixels, through face-api.js's rounded correction, clipped."""
        w, h = image_size
        rw, rh = reshaped_dims(w, h, self.input_size)
        scale = np.array([self.input_size / rw * w, self.input_size / rh * h] * 2)
        if self.kind == "ssd":  # face-api.js clamps SSD boxes to the square before scaling
            boxes = boxes.clamp(0.0, 1.0)
        out = boxes.double().numpy() * scale
        return np.clip(out, 0, [w, h, w, h]).astype(np.float32)

    @torch.inference_mode()
    def boxes_and_scores(self, images: Sequence[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (N, 4) boxes in its pixels (clipped, non-empty) and (N,) scores, best first."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            all_boxes, all_scores = self.raw_boxes(self.prepare(chunk))
            for image, boxes, scores in zip(chunk, all_boxes, all_scores):
                boxes, scores = self.select(boxes, scores)
                pixels = self.to_image(boxes, image.size)
                nonempty = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
                out.append((pixels[nonempty], scores.numpy()[nonempty]))
        return out

    def detect(self, images: Sequence[Any]) -> list[Detections]:
        from PIL import ImageOps

        from .contrast import enhanced

        seen = [enhanced(image, self.enhance) for image in images]  # same sizes: boxes are the photo's
        found = self.boxes_and_scores(seen)
        missed = [k for k, (boxes, _) in enumerate(found) if not len(boxes)] if self.border > 0 else []
        if missed:
            pads = [max(1, round(self.border * max(images[k].size))) for k in missed]
            framed = [ImageOps.expand(seen[k].convert("RGB"), border=p, fill=self.BORDER_FILL)
                      for k, p in zip(missed, pads)]
            for k, pad, (boxes, scores) in zip(missed, pads, self.boxes_and_scores(framed)):
                w, h = images[k].size
                boxes = np.clip(boxes - pad, 0, [w, h, w, h])
                keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                found[k] = (boxes[keep], scores[keep])
        return [Detections(boxes, scores, image_size=image.size) for image, (boxes, scores) in zip(images, found)]
