"""Test helper: face-api.js's four networks with random weights, written as a tfjs model folder
(manifest + shard, in TensorFlow layouts), so conversion and loading run on real files here.

The layouts below restate face-api.js's independently of ``tfjs_state_dict``: a round trip
through both checks that the two agree on every tensor's name, shape and axis order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from verikit_faceapi.nets import DlibResNet, Landmark68Net
from verikit_faceapi.ssd import SsdMobileNetV1
from verikit_faceapi.tiny_yolo import TinyYolo
from verikit_faceapi.weights import NETWORKS

HWIO = (2, 3, 1, 0)  # torch OIHW -> TensorFlow HWIO


def descriptor_tensors(net: DlibResNet) -> dict[str, np.ndarray]:
    leaves = {"conv.weight": "conv/filters", "conv.bias": "conv/bias", "scale": "scale/weights",
              "shift": "scale/biases"}
    out = {}
    for key, v in net.state_dict().items():
        if key == "fc.weight":
            out["fc"] = v.t()
            continue
        if key.startswith("stem."):
            layer, leaf = "conv32_down", key.removeprefix("stem.")
        else:  # blocks.<block>.<conv1|conv2>.<leaf>
            _, block, conv, leaf = key.split(".", 3)
            layer = f"{block}/{conv}"
        out[f"{layer}/{leaves[leaf]}"] = v.permute(*HWIO) if v.ndim == 4 else v
    return {k: v.numpy() for k, v in out.items()}


def landmark_tensors(net: Landmark68Net) -> dict[str, np.ndarray]:
    out = {}
    for key, v in net.state_dict().items():
        if key.startswith("fc."):
            out["fc/weights" if key == "fc.weight" else "fc/bias"] = v.t() if key == "fc.weight" else v
            continue
        _, block, conv, part, leaf = key.split(".")
        prefix = f"dense{block}/{conv}"
        if part == "depthwise":
            out[f"{prefix}/depthwise_filter"] = v.permute(2, 3, 0, 1)  # (C, 1, 3, 3) -> (3, 3, C, 1)
        elif leaf == "weight":
            out[f"{prefix}/{'pointwise_filter' if part == 'pointwise' else 'filters'}"] = v.permute(*HWIO)
        else:
            out[f"{prefix}/bias"] = v
    return {k: v.numpy() for k, v in out.items()}


def ssd_tensors(net: SsdMobileNetV1) -> dict[str, np.ndarray]:
    """face-api.js's SsdMobilenetv1 names (extractParamsFromWeightMap.ts), TensorFlow layouts."""
    sd = net.state_dict()
    out: dict[str, torch.Tensor] = {"MobilenetV1/Conv2d_0_pointwise/weights": sd["mobilenet.conv0.conv.weight"].permute(*HWIO),
                                    "MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset": sd["mobilenet.conv0.offset"]}
    for i in range(1, 14):
        dw, pw = f"mobilenet.depthwise.{i - 1}", f"mobilenet.pointwise.{i - 1}"
        prefix = f"MobilenetV1/Conv2d_{i}_depthwise"
        out[f"{prefix}/depthwise_weights"] = sd[f"{dw}.conv.weight"].permute(2, 3, 0, 1)  # (C,1,3,3) -> (3,3,C,1)
        out[f"{prefix}/BatchNorm/gamma"] = sd[f"{dw}.bn.weight"]
        out[f"{prefix}/BatchNorm/beta"] = sd[f"{dw}.bn.bias"]
        out[f"{prefix}/BatchNorm/moving_mean"] = sd[f"{dw}.bn.running_mean"]
        out[f"{prefix}/BatchNorm/moving_variance"] = sd[f"{dw}.bn.running_var"]
        out[f"MobilenetV1/Conv2d_{i}_pointwise/weights"] = sd[f"{pw}.conv.weight"].permute(*HWIO)
        out[f"MobilenetV1/Conv2d_{i}_pointwise/convolution_bn_offset"] = sd[f"{pw}.offset"]
    for k in range(8):
        out[f"Prediction/Conv2d_{k}_pointwise/weights"] = sd[f"extra.{k}.conv.weight"].permute(*HWIO)
        out[f"Prediction/Conv2d_{k}_pointwise/convolution_bn_offset"] = sd[f"extra.{k}.offset"]
    for k in range(6):
        for ours, theirs in (("box", "BoxEncodingPredictor"), ("cls", "ClassPredictor")):
            out[f"Prediction/BoxPredictor_{k}/{theirs}/weights"] = sd[f"{ours}.{k}.weight"].permute(*HWIO)
            out[f"Prediction/BoxPredictor_{k}/{theirs}/biases"] = sd[f"{ours}.{k}.bias"]
    out["Output/extra_dim"] = sd["anchors"][None]  # (1, 5118, 4)
    return {k: v.numpy() for k, v in out.items()}


def tiny_tensors(net: TinyYolo) -> dict[str, np.ndarray]:
    """face-api.js's TinyFaceDetector names (conv0, conv1..conv5 separable, conv8), TensorFlow layouts."""
    sd = net.state_dict()
    out = {"conv0/filters": sd["conv0.weight"].permute(*HWIO), "conv0/bias": sd["conv0.bias"],
           "conv8/filters": sd["head.weight"].permute(*HWIO), "conv8/bias": sd["head.bias"]}
    for k in range(5):
        out[f"conv{k + 1}/depthwise_filter"] = sd[f"separable.{k}.depthwise.weight"].permute(2, 3, 0, 1)
        out[f"conv{k + 1}/pointwise_filter"] = sd[f"separable.{k}.pointwise.weight"].permute(*HWIO)
        out[f"conv{k + 1}/bias"] = sd[f"separable.{k}.pointwise.bias"]
    return {k: v.numpy() for k, v in out.items()}


def random_ssd(seed: int = 0) -> SsdMobileNetV1:
    """An SSD with random weights, batch-norm statistics and valid anchors (so a swapped tensor shows)."""
    torch.manual_seed(seed)
    net = SsdMobileNetV1().eval()
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.1)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
        for name, p in net.named_parameters():
            if name.endswith("offset") or name.endswith("bn.bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif name.endswith("bn.weight"):
                p.copy_(torch.rand_like(p) + 0.5)
        centre, size = torch.rand(len(net.anchors), 2), torch.rand(len(net.anchors), 2) * 0.4 + 0.05
        net.anchors.copy_(torch.cat([centre - size / 2, centre + size / 2], 1))
    return net


def write_tfjs(folder: Path, manifest: str, shard: str, tensors: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()]
    (folder / shard).write_bytes(b"".join(np.ascontiguousarray(v, np.float32).tobytes() for v in tensors.values()))
    (folder / manifest).write_text(json.dumps([{"paths": [shard], "weights": weights}]))


class FakeNets(NamedTuple):
    descriptor: DlibResNet
    landmarks: Landmark68Net
    ssd: SsdMobileNetV1
    tiny_yolo: TinyYolo


def write_fake_package(folder: Path, seed: int = 0) -> FakeNets:
    """Random networks and their tfjs files in ``folder`` (an unpacked package's model/ folder)."""
    torch.manual_seed(seed)
    descriptor, landmarks = DlibResNet().eval(), Landmark68Net().eval()
    with torch.no_grad():  # non-trivial scales and shifts, so a swapped tensor would show
        for p in descriptor.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ssd, tiny = random_ssd(seed), TinyYolo().eval()
    write_tfjs(folder, *NETWORKS["descriptor"][:2], descriptor_tensors(descriptor))
    write_tfjs(folder, *NETWORKS["landmarks"][:2], landmark_tensors(landmarks))
    write_tfjs(folder, *NETWORKS["ssd"][:2], ssd_tensors(ssd))
    write_tfjs(folder, *NETWORKS["tiny_yolo"][:2], tiny_tensors(tiny))
    return FakeNets(descriptor, landmarks, ssd, tiny)
