"""face-api.js's ``TinyFaceDetector``, rebuilt in PyTorch from its TypeScript source.

A Tiny-YOLOv2 design with depthwise-separable convolutions (face-api.js's ``TinyYolov2Base``
with ``withSeparableConvs``, ``isFirstLayerConv2d`` and seven filter sizes), published as
``tiny_face_detector_model`` in ``@vladmandic/face-api``:

* a 3x3 convolution without padding, leaky ReLU (slope 0.1);
* five depthwise-separable convolutions (zero-pad 1, depthwise 3x3, pointwise 1x1, bias, leaky
  ReLU), each after a 2x2 max pool ('same', stride 2);
* a 2x2 max pool ('same', stride 1), then a 1x1 convolution to 5 anchors x (x, y, w, h, objectness) per cell: 13x13 cells at 416 px.

:func:`decode_cells` turns that map into boxes the way face-api.js's ``extractBoxes`` does:
``((column + sigmoid(tx)) / cells, (row + sigmoid(ty)) / cells)`` centres and
``exp(tw) * anchor_w / cells`` sizes, as fractions of the square input; score
``sigmoid(objectness)`` (one class, so no class scores).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .nets import _conv

# face-api.js tinyFaceDetector/const.ts
TINY_ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857),
                (9.041765, 10.66308))
TINY_MEAN_RGB = (117.001, 114.697, 97.404)
TINY_IOU = 0.4
TINY_SIZE = 416
CHANNELS = (3, 16, 32, 64, 128, 256, 512)  # face-api.js's filterSizes
LEAK = 0.10000000149011612                 # float32 0.1, as face-api.js's leaky()


def leaky(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAK)


def max_pool_same(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's 2x2 max pool with ``'same'`` padding: the missing row/column (bottom/right)
    is padded with -inf, so it never wins."""
    pad_h = max((-(-x.shape[-2] // stride) - 1) * stride + 2 - x.shape[-2], 0)
    pad_w = max((-(-x.shape[-1] // stride) - 1) * stride + 2 - x.shape[-1], 0)
    if pad_h or pad_w:
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
    return F.max_pool2d(x, 2, stride)


class SeparableLeaky(nn.Module):
    """face-api.js's tinyYolov2 depthwiseSeparableConv: zero-pad 1, depthwise 3x3, pointwise 1x1,
    bias, leaky ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky(self.pointwise(self.depthwise(x)))


class TinyYolo(nn.Module):
    """(B, 3, S, S) (x - TINY_MEAN_RGB) / 255, S a multiple of 32 -> (B, 25, S/32, S/32)."""

    num_anchors = len(TINY_ANCHORS)

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(3, 16, 3, 1, 0)
        self.separable = nn.ModuleList([SeparableLeaky(cin, cout) for cin, cout in zip(CHANNELS[1:-1], CHANNELS[2:])])
        self.head = nn.Conv2d(CHANNELS[-1], self.num_anchors * 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = leaky(self.conv0(x))
        for layer in self.separable:
            x = layer(max_pool_same(x, 2))
        return self.head(max_pool_same(x, 1))

    @staticmethod
    def tfjs_state_dict(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = {"conv0.weight": _conv(w["conv0/filters"]), "conv0.bias": w["conv0/bias"],
                 "head.weight": _conv(w["conv8/filters"]), "head.bias": w["conv8/bias"]}
        for k in range(len(CHANNELS) - 2):
            theirs = f"conv{k + 1}"
            state[f"separable.{k}.depthwise.weight"] = w[f"{theirs}/depthwise_filter"].permute(2, 3, 0, 1).contiguous()
            state[f"separable.{k}.pointwise.weight"] = _conv(w[f"{theirs}/pointwise_filter"])
            state[f"separable.{k}.pointwise.bias"] = w[f"{theirs}/bias"]
        return state


def decode_cells(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 25, n, n) head output -> (boxes (B, n*n*5, 4) x1, y1, x2, y2 as fractions of the square
    input, scores (B, n*n*5)), in face-api.js's order (row, column, anchor)."""
    b, _, n, _ = out.shape
    a = len(TINY_ANCHORS)
    cells = out.permute(0, 2, 3, 1).reshape(b, n, n, a, 5)
    rows = torch.arange(n, dtype=out.dtype).view(1, n, 1, 1)
    cols = torch.arange(n, dtype=out.dtype).view(1, 1, n, 1)
    anchors = torch.tensor(TINY_ANCHORS, dtype=out.dtype)
    cx = (cols + torch.sigmoid(cells[..., 0])) / n
    cy = (rows + torch.sigmoid(cells[..., 1])) / n
    w = torch.exp(cells[..., 2]) * anchors[:, 0] / n
    h = torch.exp(cells[..., 3]) * anchors[:, 1] / n
    x1, y1 = cx - w / 2, cy - h / 2
    boxes = torch.stack([x1, y1, x1 + w, y1 + h], -1).reshape(b, -1, 4)
    return boxes, torch.sigmoid(cells[..., 4]).reshape(b, -1)
