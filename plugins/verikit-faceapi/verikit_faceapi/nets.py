"""The two face-api.js networks, rebuilt in PyTorch from face-api.js's TypeScript source.

* :class:`DlibResNet` -- dlib's ResNet-29 face descriptor (``dlib_face_recognition_resnet_model_v1``,
  trained by Davis King on about 3 million faces; 99.38% on LFW): a 150x150 RGB face chip in, a
  128-d descriptor out. face-api.js's ``FaceRecognitionNet``.
* :class:`Landmark68Net` -- face-api.js's ``FaceLandmark68Net``: a 112x112 RGB face crop in, the
  68 iBUG landmarks out, as fractions of the (square-padded) crop. Four dense blocks of
  depthwise-separable convolutions, average pooling, one dense layer.

Each class maps face-api.js's tensor names and TensorFlow layouts onto its own parameters
(``tfjs_state_dict``). TensorFlow's ``'same'`` padding of a strided convolution puts the odd pixel
at the bottom/right, which ``nn.Conv2d``'s symmetric padding does not: :func:`same_pad` pads the
way TensorFlow does before an unpadded convolution.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# face-api.js subtracts this mean (0-255 RGB) and divides by 255, for both networks.
MEAN_RGB = (122.782, 117.001, 104.298)
DESCRIPTOR_SIZE, LANDMARK_SIZE = 150, 112
DESCRIPTOR_MIN_SIZE = 103  # the smallest side whose map survives DlibResNet's unpadded stride-2 layers


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad ``x`` as TensorFlow's ``padding='same'`` does for this kernel and stride."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad wants (left, right, top, bottom)
        out = -(-n // stride)
        total = max((out - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def _conv(w: torch.Tensor) -> torch.Tensor:
    return w.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW


# -- dlib's ResNet descriptor ----------------------------------------------------------------------
class ConvScale(nn.Module):
    """face-api.js's convLayer: convolution + bias, then dlib's per-channel affine (scale, shift)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.scale = nn.Parameter(torch.ones(cout))
        self.shift = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale[:, None, None] + self.shift[:, None, None]


class Residual(nn.Module):
    """face-api.js's residual / residualDown. A downsampling block uses a stride-2 'valid'
    convolution, and its shortcut is a 2x2 average pool, zero-padded to twice the channels; where
    the two disagree in size by one, the convolution's output gets a zero row or column."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.conv2 = ConvScale(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            dh, dw = x.shape[-2] - out.shape[-2], x.shape[-1] - out.shape[-1]
            if dh or dw:  # each side on its own, so non-square inputs work too
                out = F.pad(out, (0, dw, 0, dh))
            if x.shape[1] != out.shape[1]:
                x = torch.cat([x, torch.zeros_like(x)], dim=1)
        return F.relu(out + x)


# (name in the tfjs weights, in channels, out channels, downsamples) in face-api.js's order
BLOCKS = [("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
          ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
          ("conv64_3", 64, 64, False), ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False),
          ("conv128_2", 128, 128, False), ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
          ("conv256_2", 256, 256, False), ("conv256_down_out", 256, 256, True)]


class DlibResNet(nn.Module):
    """A 150x150 RGB face chip (face-api.js's normalisation) in, dlib's 128-d descriptor out, as
    a (B, 128, 1, 1) map (verikit's backbone contract; the descriptor is already pooled)."""

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvScale(3, 32, 7, 2, 0)
        self.blocks = nn.ModuleDict({name: Residual(cin, cout, down) for name, cin, cout, down in BLOCKS})
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < DESCRIPTOR_MIN_SIZE:  # too small for its unpadded strided layers: upsample
            scale = DESCRIPTOR_MIN_SIZE / min(x.shape[-2:])
            size = [max(DESCRIPTOR_MIN_SIZE, round(n * scale)) for n in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks.values():
            x = block(x)
        return self.fc(x.mean((2, 3)))[:, :, None, None]

    def to_grey(self) -> "DlibResNet":
        """Take one grey channel: the stem's RGB filters summed (as timm adapts RGB weights), so a
        grey image whose three copies were normalised alike gives the same output."""
        w = self.stem.conv.weight.data.sum(1, keepdim=True)
        conv = nn.Conv2d(1, w.shape[0], w.shape[-1], self.stem.conv.stride, self.stem.conv.padding)
        conv.weight.data, conv.bias.data = w, self.stem.conv.bias.data
        self.stem.conv = conv
        return self

    @staticmethod
    def tfjs_state_dict(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        def conv_scale(ours: str, theirs: str) -> dict[str, torch.Tensor]:
            return {f"{ours}.conv.weight": _conv(w[f"{theirs}/conv/filters"]), f"{ours}.conv.bias": w[f"{theirs}/conv/bias"],
                    f"{ours}.scale": w[f"{theirs}/scale/weights"], f"{ours}.shift": w[f"{theirs}/scale/biases"]}

        state = conv_scale("stem", "conv32_down")
        for name, *_ in BLOCKS:
            state.update(conv_scale(f"blocks.{name}.conv1", f"{name}/conv1"))
            state.update(conv_scale(f"blocks.{name}.conv2", f"{name}/conv2"))
        state["fc.weight"] = w["fc"].t().contiguous()
        return state


# -- the 68-point landmark network -----------------------------------------------------------------
class SeparableConv(nn.Module):
    """TensorFlow's separableConv2d ('same' padding) + bias: depthwise 3x3, then pointwise 1x1."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, 0, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(same_pad(x, 3, self.stride)))


class PlainConv(nn.Module):
    """A 3x3 convolution with TensorFlow's 'same' padding (the first layer of the network)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(cin, cout, 3, stride, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(same_pad(x, 3, self.stride))


class DenseBlock4(nn.Module):
    """face-api.js's denseBlock4: four convolutions, each fed the sum of all earlier outputs."""

    def __init__(self, cin: int, cout: int, first: bool) -> None:
        super().__init__()
        self.conv0 = PlainConv(cin, cout, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1, self.conv2, self.conv3 = (SeparableConv(cout, cout, 1) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class Landmark68Net(nn.Module):
    """A 112x112 RGB face crop in; (B, 68, 2) landmark positions as fractions of the input out."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.ModuleList([DenseBlock4(3, 32, True), DenseBlock4(32, 64, False),
                                    DenseBlock4(64, 128, False), DenseBlock4(128, 256, False)])
        self.fc = nn.Linear(256, 136)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.dense:
            x = block(x)
        x = F.avg_pool2d(x, 7, 2)  # 7x7 map -> 1x1
        return self.fc(x.flatten(1)).view(-1, 68, 2)

    @staticmethod
    def tfjs_state_dict(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {}
        for i in range(4):
            for j in range(4):
                theirs, ours = f"dense{i}/conv{j}", f"dense.{i}.conv{j}"
                if i == 0 and j == 0:
                    state[f"{ours}.conv.weight"] = _conv(w[f"{theirs}/filters"])
                    state[f"{ours}.conv.bias"] = w[f"{theirs}/bias"]
                    continue
                state[f"{ours}.depthwise.weight"] = w[f"{theirs}/depthwise_filter"].permute(2, 3, 0, 1).contiguous()
                state[f"{ours}.pointwise.weight"] = _conv(w[f"{theirs}/pointwise_filter"])
                state[f"{ours}.pointwise.bias"] = w[f"{theirs}/bias"]
        state["fc.weight"] = w["fc/weights"].t().contiguous()
        state["fc.bias"] = w["fc/bias"]
        return state
