"""face-api.js's ``SsdMobilenetv1`` face detector, rebuilt in PyTorch from its TypeScript source.

An SSD (single-shot multibox detector) on a MobileNetV1 feature extractor, trained by face-api.js's
author on WIDER FACE, published as ``ssd_mobilenetv1_model`` in ``@vladmandic/face-api``:

* :class:`MobileNetV1` -- a 3x3 convolution, then 13 depthwise-separable pairs (depthwise 3x3 +
  batch norm + ReLU6, pointwise 1x1 + offset + ReLU6); strides 2 at pairs 2, 4, 6 and 12. It
  returns pair 11's map (stride 16, 512 channels) and the last one (stride 32, 1024 channels).
* :class:`SsdMobileNetV1` -- four extra stride-2 stages on top (1x1 then 3x3 convolutions), six
  box predictors (3 anchors on pair 11's map, 6 on each of the others: 5,118 anchors at 512 px),
  each a 1x1 convolution for the box encoding and one for the class logits.

:func:`decode_boxes` turns encodings into boxes against the anchors shipped with the weights
(``Output/extra_dim``, ``[ymin, xmin, ymax, xmax]`` fractions of the input), the way
face-api.js's ``outputLayer`` does: centre offsets scaled by 1/10, log sizes by 1/5. The score is
the sigmoid of class 1's logit. Every convolution pads as TensorFlow's ``'same'`` does
(:func:`verikit_faceapi.nets.same_pad`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .nets import _conv, same_pad

SSD_SIZE = 512              # the input side the shipped anchors were made for
SSD_ANCHORS = 5118          # 32*32*3 + (16*16 + 8*8 + 4*4 + 2*2 + 1) * 6
BN_EPSILON = 0.0010000000474974513  # face-api.js's batch-norm epsilon (float32 0.001)
# MobileNetV1 pair -> (in, out) channels; stride 2 at pairs 2, 4, 6, 12 (face-api.js getStridesForLayerIdx)
PAIRS = [(32, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
         (512, 512), (512, 512), (512, 512), (512, 1024), (1024, 1024)]
STRIDE2 = {2, 4, 6, 12}
# prediction layer's extra convolutions: (in, out, kernel, stride)
EXTRA = [(1024, 256, 1, 1), (256, 512, 3, 2), (512, 128, 1, 1), (128, 256, 3, 2), (256, 128, 1, 1),
         (128, 256, 3, 2), (256, 64, 1, 1), (64, 128, 3, 2)]
# box predictor k: (feature channels, anchors per cell)
PREDICTORS = [(512, 3), (1024, 6), (512, 6), (256, 6), (256, 6), (128, 6)]


class OffsetConv(nn.Module):
    """face-api.js's pointwiseConvLayer: a convolution ('same', no bias), + offset, ReLU6.
    (Named "pointwise", but the first layer and the stride-2 extras are 3x3.)"""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, bias=False)
        self.offset = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # stride 1: TensorFlow's 'same' is symmetric, so the convolution pads; stride 2 pads the
        # odd pixel after, which only an explicit pad does. The offset rides as the bias.
        padding = self.kernel // 2 if self.stride == 1 else 0
        if self.stride > 1:
            x = same_pad(x, self.kernel, self.stride)
        return F.relu6(F.conv2d(x, self.conv.weight, self.offset, self.stride, padding))


class DepthwiseBN(nn.Module):
    """face-api.js's depthwiseConvLayer: depthwise 3x3 ('same'), batch norm, ReLU6."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels, 3, stride, 1 if stride == 1 else 0, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self.bn(self.conv(same_pad(x, 3, self.stride) if self.stride > 1 else x)))


class MobileNetV1(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (pair 11's map, the last map)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0 = OffsetConv(3, 32, 3, 2)
        self.depthwise = nn.ModuleList([DepthwiseBN(cin, 2 if i in STRIDE2 else 1)
                                        for i, (cin, _) in enumerate(PAIRS, 1)])
        self.pointwise = nn.ModuleList([OffsetConv(cin, cout) for cin, cout in PAIRS])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv0(x)
        conv11 = x
        for i, (dw, pw) in enumerate(zip(self.depthwise, self.pointwise), 1):
            x = pw(dw(x))
            if i == 11:
                conv11 = x
        return conv11, x


class SsdMobileNetV1(nn.Module):
    """(B, 3, 512, 512) RGB scaled to [-1, 1] -> (box encodings (B, A, 4), class logits (B, A, 3)),
    A = 5,118 anchors, in face-api.js's order (predictor, row, column, anchor)."""

    def __init__(self) -> None:
        super().__init__()
        self.mobilenet = MobileNetV1()
        self.extra = nn.ModuleList([OffsetConv(cin, cout, k, s) for cin, cout, k, s in EXTRA])
        self.box = nn.ModuleList([nn.Conv2d(c, a * 4, 1) for c, a in PREDICTORS])
        self.cls = nn.ModuleList([nn.Conv2d(c, a * 3, 1) for c, a in PREDICTORS])
        # the anchors ship with the weights; [ymin, xmin, ymax, xmax] as fractions of the input
        self.register_buffer("anchors", torch.zeros(SSD_ANCHORS, 4))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        conv11, out = self.mobilenet(x)
        feats, y = [conv11, out], out
        for k, layer in enumerate(self.extra):
            y = layer(y)
            if k % 2 == 1:  # the stride-2 stages feed predictors 2..5
                feats.append(y)
        b = x.shape[0]
        boxes = torch.cat([p(f).permute(0, 2, 3, 1).reshape(b, -1, 4) for p, f in zip(self.box, feats)], 1)
        logits = torch.cat([p(f).permute(0, 2, 3, 1).reshape(b, -1, 3) for p, f in zip(self.cls, feats)], 1)
        return boxes, logits

    @staticmethod
    def tfjs_state_dict(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}

        def offset_conv(ours: str, theirs: str) -> None:
            state[f"{ours}.conv.weight"] = _conv(w[f"{theirs}/weights"])
            state[f"{ours}.offset"] = w[f"{theirs}/convolution_bn_offset"]

        offset_conv("mobilenet.conv0", "MobilenetV1/Conv2d_0_pointwise")
        for i in range(1, len(PAIRS) + 1):
            theirs, ours = f"MobilenetV1/Conv2d_{i}_depthwise", f"mobilenet.depthwise.{i - 1}"
            state[f"{ours}.conv.weight"] = w[f"{theirs}/depthwise_weights"].permute(2, 3, 0, 1).contiguous()
            for leaf, name in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                               ("running_var", "moving_variance")):
                state[f"{ours}.bn.{leaf}"] = w[f"{theirs}/BatchNorm/{name}"]
            state[f"{ours}.bn.num_batches_tracked"] = torch.tensor(0)
            offset_conv(f"mobilenet.pointwise.{i - 1}", f"MobilenetV1/Conv2d_{i}_pointwise")
        for k in range(len(EXTRA)):
            offset_conv(f"extra.{k}", f"Prediction/Conv2d_{k}_pointwise")
        for k in range(len(PREDICTORS)):
            for ours, theirs in (("box", "BoxEncodingPredictor"), ("cls", "ClassPredictor")):
                state[f"{ours}.{k}.weight"] = _conv(w[f"Prediction/BoxPredictor_{k}/{theirs}/weights"])
                state[f"{ours}.{k}.bias"] = w[f"Prediction/BoxPredictor_{k}/{theirs}/biases"]
        state["anchors"] = w["Output/extra_dim"].reshape(-1, 4)
        return state


def decode_boxes(encodings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(..., A, 4) encodings against (A, 4) anchors -> (..., A, 4) ``[ymin, xmin, ymax, xmax]``
    fractions of the input, as face-api.js's ``decodeBoxesLayer`` computes them."""
    sizes = anchors[:, 2:] - anchors[:, :2]
    centres = anchors[:, :2] + sizes / 2
    half = torch.exp(encodings[..., 2:] / 5) * sizes / 2
    centre = encodings[..., :2] / 10 * sizes + centres
    return torch.cat([centre - half, centre + half], -1)


def face_scores(logits: torch.Tensor) -> torch.Tensor:
    """face-api.js's score: the sigmoid of class 1's logit (class 0 is the background)."""
    return torch.sigmoid(logits[..., 1])
