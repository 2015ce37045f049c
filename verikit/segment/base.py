"""A mask network behind verikit's ``Segmenter`` protocol: crop, resize, forward, paste back.

:class:`TorchMaskSegmenter` is what segmenter plugins wrap. It owns the geometry every segmenter
needs and none should re-invent: each box is grown by ``context`` (a fraction of its width/height
on every side, clipped to the image), cut out in whole pixels, resized to the network's square
input, normalised with ``mean``/``std``, run in batches under ``torch.inference_mode()``, turned
into foreground probabilities, resized back to the crop's size and pasted into an image-sized
zero mask. Pixels outside the grown box are 0: mask ``i`` only speaks for box ``i``.

The network may return foreground logits (B, 1, s, s) (sigmoid) or class logits (B, C, s, s)
(softmax, channel ``foreground``), as a tensor or a torchvision-style ``{"out": tensor}``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import IMAGENET_MEAN, IMAGENET_STD


def network_output(output: Any) -> torch.Tensor:
    """The logits tensor of a segmentation network's output (torchvision models return ``{"out": ...}``)."""
    if isinstance(output, dict):
        output = output["out"]
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        raise ValueError(f"a segmentation network must return (B, C, H, W) logits, got "
                         f"{getattr(output, 'shape', type(output).__name__)}")
    return output


def foreground_logits(logits: torch.Tensor, foreground: int = 1) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) logit of "foreground".

    One channel: that channel (sigmoid gives the probability). C channels: the logit of softmax
    channel ``foreground``, ``l_fg - logsumexp(l_others)``, so sigmoid of it equals the softmax
    probability exactly; for two classes that makes BCE on it the two-class cross-entropy.
    """
    if logits.shape[1] == 1:
        return logits[:, 0]
    if not 0 <= foreground < logits.shape[1]:
        raise ValueError(f"foreground channel {foreground} is not among the network's {logits.shape[1]} outputs")
    others = torch.cat([logits[:, :foreground], logits[:, foreground + 1:]], dim=1)
    return logits[:, foreground] - torch.logsumexp(others, dim=1)


def context_region(box: Sequence[float], context: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` grown by ``context`` x its size on every side, in whole pixels, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = context * (x2 - x1), context * (y2 - y1)
    left, top = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
    right, bottom = min(width, math.ceil(x2 + dx)), min(height, math.ceil(y2 + dy))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def image_tensor(image: Any) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) uint8 tensor (no copy of the pixels beyond numpy's)."""
    return torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) tensor -> (B, C, size, size) float, bilinear (antialiased when shrinking)."""
    pixels = pixels.float()
    if tuple(pixels.shape[-2:]) == (size, size):
        return pixels
    shrink = pixels.shape[-2] > size or pixels.shape[-1] > size
    return F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


class TorchMaskSegmenter:
    """A segmentation ``nn.Module`` as a :class:`verikit.interfaces.Segmenter`.

    ``input_size``: the square side S the network sees. ``mean``/``std``: per-channel
    normalisation of [0, 1] pixels. ``foreground``: the class channel that is the object (for
    multi-class output). ``context``: grow each box by this fraction before cropping (0.2 matches
    the pipeline's default crop margin, so the mask covers the whole crop). ``threshold``: None
    returns soft probabilities; a number returns 0/1 masks (``p >= threshold``). ``batch_size``:
    crops per forward pass.
    """

    def __init__(self, model: torch.nn.Module, *, input_size: int = 256, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, foreground: int = 1, context: float = 0.2,
                 threshold: float | None = None, batch_size: int = 8, device: str | torch.device = "cpu",
                 name: str = "segmenter") -> None:
        from ..models.embedder import resolve_device

        if int(input_size) < 8:
            raise ValueError(f"input_size must be at least 8, got {input_size}")
        if not context >= 0:
            raise ValueError(f"context must be >= 0, got {context}")
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.input_size, self.foreground, self.context = int(input_size), int(foreground), float(context)
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size, self.name = max(1, int(batch_size)), name
        self._mean = torch.tensor([float(m) for m in mean], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor([float(s) for s in std], device=self.device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (f"TorchMaskSegmenter({self.name!r}, input_size={self.input_size}, context={self.context}, "
                f"threshold={self.threshold}, device={str(self.device)!r})")

    # -- the network on prepared input ---------------------------------------------------------
    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float 0..255 -> the network's normalised input."""
        return (pixels / 255.0 - self._mean) / self._std

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Normalised (B, 3, S, S) -> (B, S, S) foreground probabilities (the network's own size)."""
        logits = network_output(self.model(batch))
        if tuple(logits.shape[-2:]) != tuple(batch.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(batch.shape[-2:]), mode="bilinear", align_corners=False)
        return torch.sigmoid(foreground_logits(logits, self.foreground))

    # -- the Segmenter protocol ----------------------------------------------------------------
    @torch.inference_mode()
    def segment(self, images: Sequence[Any], detections: Sequence[Any]) -> list[Any]:
        from ..errors import DataError
        from ..structures import Masks

        if len(images) != len(detections):
            raise DataError(f"segment() got {len(images)} images but {len(detections)} detections")
        self.model.eval()
        outputs: list[np.ndarray] = []
        jobs: list[tuple[int, int, tuple[int, int, int, int], torch.Tensor]] = []  # (image, box, region, pixels)
        for i, (image, dets) in enumerate(zip(images, detections)):
            w, h = image.size
            if dets.image_size is not None and tuple(dets.image_size) != (w, h):
                raise DataError(f"detections for image {i} are for a {dets.image_size[0]}x{dets.image_size[1]} "
                                f"image, not {w}x{h}")
            outputs.append(np.zeros((len(dets), h, w), dtype=np.float32))
            if not len(dets):
                continue
            pixels = image_tensor(image).to(self.device)
            for k, box in enumerate(dets.boxes):
                region = context_region(box, self.context, w, h)
                x1, y1, x2, y2 = region
                jobs.append((i, k, region, resize_batch(pixels[None, :, y1:y2, x1:x2], self.input_size)[0]))
        for first in range(0, len(jobs), self.batch_size):
            chunk = jobs[first:first + self.batch_size]
            probs = self.probabilities(self.normalise(torch.stack([j[3] for j in chunk])))
            for (i, k, (x1, y1, x2, y2), _), prob in zip(chunk, probs):
                pasted = F.interpolate(prob[None, None], size=(y2 - y1, x2 - x1), mode="bilinear",
                                       align_corners=False)[0, 0].clamp_(0.0, 1.0)
                if self.threshold is not None:
                    pasted = (pasted >= self.threshold).float()
                outputs[i][k, y1:y2, x1:x2] = pasted.float().cpu().numpy()
        return [Masks(m) for m in outputs]
