"""Test helper: face-api.js's two networks with random weights, written as a tfjs model folder
(manifest + shard, in TensorFlow layouts), so conversion and loading run on real files here.

The layouts below restate face-api.js's independently of ``tfjs_state_dict``: a round trip
through both checks that the two agree on every tensor's name, shape and axis order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from verikit_faceapi.nets import DlibResNet, Landmark68Net
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


def write_tfjs(folder: Path, manifest: str, shard: str, tensors: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    weights = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in tensors.items()]
    (folder / shard).write_bytes(b"".join(np.ascontiguousarray(v, np.float32).tobytes() for v in tensors.values()))
    (folder / manifest).write_text(json.dumps([{"paths": [shard], "weights": weights}]))


def write_fake_package(folder: Path, seed: int = 0) -> tuple[DlibResNet, Landmark68Net]:
    """Random networks and their tfjs files in ``folder`` (an unpacked package's model/ folder)."""
    torch.manual_seed(seed)
    descriptor, landmarks = DlibResNet().eval(), Landmark68Net().eval()
    with torch.no_grad():  # non-trivial scales and shifts, so a swapped tensor would show
        for p in descriptor.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    write_tfjs(folder, *NETWORKS["descriptor"][:2], descriptor_tensors(descriptor))
    write_tfjs(folder, *NETWORKS["landmarks"][:2], landmark_tensors(landmarks))
    return descriptor, landmarks
