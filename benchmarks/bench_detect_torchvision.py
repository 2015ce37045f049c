"""Detector overhead: verikit's ``torchvision`` detector path versus the raw torchvision forward.

Same images (every photo in $VERIKIT_DATA/dlib_faces, default ../shared/data), same weights (a
seeded random initialisation saved to a safetensors file that verikit loads through its
``weights=`` option, as a user's fine-tuned file would be), measured in the same run with rounds
alternating so a busy neighbour hurts both alike. Reported as images/s and ratio = verikit / raw
(target >= 0.9):

* ``decoded``: ``detector.detect([pil_image])`` vs ``model([tensor])`` on tensors made beforehand
  under ``torch.inference_mode`` (verikit's cost: PIL -> tensor, label/score filtering, clipping,
  sorting and validated ``Detections``);
* ``from_file``: verikit ``load_image`` + ``detect`` vs ``torchvision.io.decode_image`` + forward.

Run: ``.venv/bin/python benchmarks/bench_detect_torchvision.py [--arch ssdlite320_mobilenet_v3_large]
[--rounds 3] [--threads 1 2]``. Writes ``benchmarks/results/detect_torchvision.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image

from verikit.io import list_images, load_image
from verikit.registry import detectors

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ARCHS = ("fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large")


def _timed(fn, items) -> float:
    t = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - t


def bench_arch(arch: str, paths: list[Path], rounds: int, threads: list[int]) -> dict:
    from verikit_torchvision.model import build_model, save_weights, to_tensor

    torch.manual_seed(0)
    raw = build_model(arch, num_classes=2).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "detector.safetensors"
        save_weights(raw, weights)
        det = detectors.create(f"torchvision:{arch}", weights=str(weights), num_classes=2, score_threshold=0.0)
    pil = [load_image(p) for p in paths]
    tensors = [to_tensor(im) for im in pil]

    @torch.inference_mode()
    def raw_forward(t: torch.Tensor):
        return raw([t])

    @torch.inference_mode()
    def raw_from_file(p: Path):
        return raw([decode_image(str(p), mode=ImageReadMode.RGB).float().div_(255.0)])

    cases = {
        "decoded": (lambda im: det.detect([im]), raw_forward, pil, tensors),
        "from_file": (lambda p: det.detect([load_image(p)]), raw_from_file, paths, paths),
    }
    out = {}
    for n in threads:
        torch.set_num_threads(n)
        for name, (ours, theirs, our_in, their_in) in cases.items():
            ours(our_in[0]), theirs(their_in[0])  # warm-up
            t_ours, t_raw = [], []
            for _ in range(rounds):
                t_raw.append(_timed(theirs, their_in))
                t_ours.append(_timed(ours, our_in))
            ips_ours, ips_raw = len(paths) / statistics.median(t_ours), len(paths) / statistics.median(t_raw)
            key = f"{arch}/{name}/threads={n}"
            out[key] = {"verikit_images_per_s": round(ips_ours, 3), "raw_images_per_s": round(ips_raw, 3),
                        "ratio": round(ips_ours / ips_raw, 3)}
            print(f"{key:58s} verikit {ips_ours:6.2f} img/s   raw torchvision {ips_raw:6.2f} img/s   "
                  f"ratio {ips_ours / ips_raw:.3f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=list(ARCHS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data") / "dlib_faces"
    paths, _ = list_images(data)
    if not paths:
        raise SystemExit(f"no images under {data}")
    report = {"images": len(paths), "source": str(data), "rounds": args.rounds, "weights": "seeded random (num_classes=2)",
              "results": {}}
    for arch in args.arch:
        report["results"].update(bench_arch(arch, paths, args.rounds, args.threads))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detect_torchvision.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'detect_torchvision.json'}")


if __name__ == "__main__":
    main()
