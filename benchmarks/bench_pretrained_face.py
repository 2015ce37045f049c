"""Would a pretrained face network reach the ORL target? dlib's ResNet face descriptor, zero-shot.

Issue 3 asks for an all-pairs EER <= 2% on ORL s31-s40 after training on s1-s30, and the
from-scratch networks stay near 12% (README). The usual remedy is a network pretrained on
millions of faces. No weights can be downloaded from a model hub here, but a package registry
carries one: the npm package ``@vladmandic/face-api`` (MIT) ships face-api.js's port of dlib's
ResNet-29 face descriptor (``dlib_face_recognition_resnet_model_v1``: 128-d, trained by Davis King
on about 3 million faces; 99.38% on LFW), as tfjs weight shards, some 8-bit quantised.

This script rebuilds that network in PyTorch (``FaceApiResNet``: a faithful port of face-api.js's
``FaceRecognitionNet``, written from its TypeScript source), reads the tfjs
shards (``read_tfjs_weights``) and scores ORL s31-s40 all pairs exactly as ``bench_accuracy.py``
does (cosine, subject bootstrap): the whole image, verikit's Haar face crop, and the Haar crop
levelled on the eyes (``verikit_haar`` + :class:`verikit.pipeline.detection.FaceCropper`), each
single-view and mirror-averaged. Nothing is trained: s1-s30 are not used. Fine-tuning the
network on s1-s30 was tried once by hand and did not help (see benchmarks/README.md).

This is a measurement, not a verikit feature: the weights are not shipped and the port is not
a registered backbone.

Get the weights (npm works here): ``npm pack @vladmandic/face-api && tar xzf vladmandic-face-api-*.tgz``,
then ``.venv/bin/python benchmarks/bench_pretrained_face.py --faceapi package/model`` (or set
``VERIKIT_FACEAPI_MODEL``; without the weights the script says so and stops).
Writes ``benchmarks/results/pretrained_face.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import fmt, orl_split, raw_pixels, score  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MANIFEST = "face_recognition_model-weights_manifest.json"
INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)  # face-api.js subtracts these and divides by 255

# (name in the tfjs weights, in channels, out channels, downsamples) in face-api.js's order
BLOCKS = [("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
          ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
          ("conv64_3", 64, 64, False), ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False),
          ("conv128_2", 128, 128, False), ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
          ("conv256_2", 256, 256, False), ("conv256_down_out", 256, 256, True)]


def read_tfjs_weights(manifest: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a tfjs weights manifest, dequantised (``q * scale + min``), in tfjs layout."""
    out: dict[str, torch.Tensor] = {}
    for group in json.loads(manifest.read_text()):
        blob = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            q = w.get("quantization")
            dtype = np.dtype(q["dtype"] if q else w["dtype"])
            values = np.frombuffer(blob, dtype, n, offset).astype(np.float32)
            offset += n * dtype.itemsize
            if q:
                values = values * np.float32(q["scale"]) + np.float32(q["min"])
            out[w["name"]] = torch.from_numpy(values.reshape(w["shape"]).copy())
        if offset != len(blob):
            raise SystemExit(f"{manifest}: the shards hold {len(blob)} bytes, the manifest describes {offset}")
    return out


class ConvScale(nn.Module):
    """face-api.js's convLayer: convolution + bias, then a per-channel scale and shift (dlib's affine)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.scale = nn.Parameter(torch.ones(cout))
        self.shift = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale[:, None, None] + self.shift[:, None, None]

    def load_tfjs(self, w: dict[str, torch.Tensor], prefix: str) -> None:
        self.conv.weight.data = w[f"{prefix}/conv/filters"].permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
        self.conv.bias.data = w[f"{prefix}/conv/bias"]
        self.scale.data = w[f"{prefix}/scale/weights"]
        self.shift.data = w[f"{prefix}/scale/biases"]


class Residual(nn.Module):
    """face-api.js's residual / residualDown. A downsampling block uses a stride-2 'valid'
    convolution, and its shortcut is a 2x2 average pool, zero-padded to twice the channels; where
    the two disagree in size by one, the convolution's output gets a zero row and column."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = ConvScale(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.conv2 = ConvScale(cout, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            if x.shape[-2:] != out.shape[-2:]:
                out = F.pad(out, (0, 1, 0, 1))
            if x.shape[1] != out.shape[1]:
                x = torch.cat([x, torch.zeros_like(x)], dim=1)
        return F.relu(out + x)


class FaceApiResNet(nn.Module):
    """150x150 RGB face in, dlib's 128-d descriptor out (not normalised)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvScale(3, 32, 7, 2, 0)
        self.blocks = nn.ModuleDict({name: Residual(cin, cout, down) for name, cin, cout, down in BLOCKS})
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for block in self.blocks.values():
            x = block(x)
        return self.fc(x.mean((2, 3)))

    @classmethod
    def from_tfjs(cls, manifest: Path) -> "FaceApiResNet":
        w = read_tfjs_weights(manifest)
        net = cls()
        net.stem.load_tfjs(w, "conv32_down")
        for name, block in net.blocks.items():
            block.conv1.load_tfjs(w, f"{name}/conv1")
            block.conv2.load_tfjs(w, f"{name}/conv2")
        net.fc.weight.data = w["fc"].t().contiguous()
        return net.eval()


def to_input(image: Image.Image) -> torch.Tensor:
    """face-api.js's preprocessing: pad to a centred square, resize to 150, subtract the mean, / 255."""
    image = image.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    x = torch.from_numpy(np.asarray(square.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), np.float32))
    return (x.permute(2, 0, 1) - torch.tensor(MEAN_RGB)[:, None, None]) / 255.0


@torch.inference_mode()
def descriptors(net: FaceApiResNet, images: list[Image.Image], mirror: bool) -> np.ndarray:
    out = F.normalize(net(torch.stack([to_input(im) for im in images])), dim=1)
    if mirror:
        out = F.normalize(out + F.normalize(net(torch.stack([to_input(ImageOps.mirror(im)) for im in images])),
                                            dim=1), dim=1)
    return out.numpy()


def face_crops(paths: list[Path], align: bool) -> tuple[list[Image.Image], int]:
    """verikit's Haar crop of each file (largest face, default margin); the whole image where
    no face is found, so every test image is scored. Returns (images, how many had no face)."""
    from verikit.io import load_image
    from verikit.pipeline.detection import FaceCropper
    from verikit.pipeline.settings import PipelineSettings

    cropper = FaceCropper(PipelineSettings(detector="haar", align=align))
    images, missed = [], 0
    for p in paths:
        image = load_image(p)
        result = cropper.crops_of_images([image], [p])[0]
        if isinstance(result, list) and result:
            images.append(result[0].image)
        else:
            images.append(image)
            missed += 1
    return images, missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    env = os.environ.get("VERIKIT_FACEAPI_MODEL")
    ap.add_argument("--faceapi", type=Path, default=Path(env) if env else None,
                    help=f"folder holding {MANIFEST} and its .bin shard (the npm package's model/ folder); "
                         "default $VERIKIT_FACEAPI_MODEL")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--results", type=Path, default=RESULTS / "pretrained_face.json")
    args = ap.parse_args()
    manifest = args.faceapi / MANIFEST if args.faceapi else None
    if manifest is None or not manifest.is_file():  # an optional download: skipped, not failed, in run_all.py
        print(f"skipped: {manifest or MANIFEST} not found; get it with: npm pack @vladmandic/face-api && "
              "tar xzf vladmandic-face-api-*.tgz, then --faceapi package/model")
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    net = FaceApiResNet.from_tfjs(manifest)
    test = orl_split().val
    paths, labels = [p for _, p in test], [n for n, _ in test]
    pixels, pixel_labels = raw_pixels(test)
    rows = [{"input": "raw 16x16 pixels (baseline)", **score(pixels, pixel_labels, args.boot)}]
    print(f"ORL s31-s40, all pairs ({len(paths)} images); dlib ResNet descriptor, zero-shot")
    print(f"  {'raw 16x16 pixels (baseline)':44s} {fmt(rows[0])}")
    from verikit.io import load_image
    inputs = {"whole image": ([load_image(p) for p in paths], 0)}
    for align in (False, True):
        inputs["Haar crop" + (", eyes levelled" if align else "")] = face_crops(paths, align)
    for name, (images, missed) in inputs.items():
        for mirror in (False, True):
            label = f"{name}{', mirror-averaged' if mirror else ''}"
            row = {"input": label, "no_face_found": missed,
                   **score(descriptors(net, images, mirror), labels, args.boot)}
            rows.append(row)
            print(f"  {label:44s} {fmt(row)}" + (f"  ({missed} without a face: whole image)" if missed else ""))
    out = {"protocol": "ORL all pairs of s31-s40 (450 genuine, 4,500 impostor); nothing trained on s1-s30",
           "network": "dlib_face_recognition_resnet_model_v1 as ported by face-api.js "
                      "(@vladmandic/face-api model/face_recognition_model.bin), rebuilt in PyTorch",
           "scoring": "cosine on L2-normalised 128-d descriptors; subject bootstrap", "rows": rows}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
