"""Eager CPU inference: verikit's path (channels-last layout, ``verikit.models.memory_format``)
against the plain contiguous forward of the same network, for every built-in backbone.

For each backbone a random-weight model at 112 px is built once and copied: one copy runs
through ``verikit.models.backend.run_network`` (eager backend: what every command, the Python
API and ``verikit serve`` run without an ONNX export), the other is called plainly as
``model(x)`` in the default contiguous layout (the baseline). Both embed the same real ORL
photos (decoded once, untimed) at batch sizes 1, 8 and 32; the two are timed alternately, batch
after batch, and the median of ``--repeats`` rounds is kept, so a busy neighbour slows both
alike. Printed: images/s of each, the ratio verikit / plain, and the smallest cosine between
their templates (target: >= 0.9999, i.e. the same templates).

Run: ``.venv/bin/python benchmarks/bench_channels_last.py [--quick] [--repeats 5]``; writes
benchmarks/results/channels_last.json (``channels_last_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as under the CLI (set before torch loads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = ["timm:resnet18", "timm:mobilenetv3_large_100", "mobilenet", "inception", "xception", "dilated_resnet"]


def photos(n: int) -> list[Path]:
    from verikit.io import list_images

    files, _ = list_images(REPO / "data" / "orl_faces")
    return files[:: max(1, len(files) // n)][:n]


def timed(fn, x: torch.Tensor) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def bench(backbone: str, files: list[Path], sizes: list[int], repeats: int, seconds: float) -> list[dict]:
    from verikit.image_input import to_image
    from verikit.models.backend import run_network
    from verikit.models.embedder import Embedder
    from verikit.models.preprocess import to_tensor_transform
    from verikit.structures import InputSpec

    torch.manual_seed(0)
    plain = Embedder.build(backbone, input_spec=InputSpec(size=(112, 112))).eval()
    ours = copy.deepcopy(plain)
    transform = to_tensor_transform(plain.input_spec)
    images = torch.stack([transform(to_image(f)) for f in files])
    rows = []
    with torch.inference_mode():
        for bs in sizes:
            x = images[:bs]
            ref, got = plain(x).numpy(), run_network(ours, x).numpy()  # also the warm-up
            cos = float(((ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))).min())
            # Calls per round: enough for ~``seconds`` of work each, so a round is not one timer tick.
            calls = max(1, int(seconds / max(timed(plain, x), 1e-4)))
            per = {"plain": [], "verikit": []}
            for r in range(repeats):
                order = [("plain", plain), ("verikit", lambda b: run_network(ours, b))]
                for name, fn in (order if r % 2 == 0 else order[::-1]):
                    per[name].append(sum(timed(fn, x) for _ in range(calls)) / (calls * bs))
            plain_ips, ours_ips = 1 / statistics.median(per["plain"]), 1 / statistics.median(per["verikit"])
            rows.append({"batch_size": bs, "plain_images_per_s": round(plain_ips, 1),
                         "verikit_images_per_s": round(ours_ips, 1), "ratio": round(ours_ips / plain_ips, 3),
                         "min_cosine": round(cos, 7), "channels_last": bool(ours.__dict__.get("_verikit_channels_last"))})
            print(f"{backbone:28s} batch {bs:3d}: plain {plain_ips:7.1f} img/s  verikit {ours_ips:7.1f} img/s  "
                  f"ratio {ours_ips / plain_ips:5.2f}x  min cos {cos:.7f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two backbones, batch 1 and 8, short rounds: a check")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backbones", nargs="+", default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    backbones = args.backbones or (BACKBONES[:1] + BACKBONES[2:3] if args.quick else BACKBONES)
    sizes, seconds = ([1, 8], 0.2) if args.quick else ([1, 8, 32], 1.0)
    files = photos(max(sizes))
    out = {"what": "eager CPU inference, verikit's channels-last path vs the plain contiguous forward; random-weight "
                   "models at 112 px, real ORL photos; images/s (median of interleaved rounds) and their ratio",
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "when": time.strftime("%Y-%m-%d %H:%M"), "load_average_at_start": os.getloadavg()[0],
           "repeats": args.repeats, "backbones": {}}
    for b in backbones:
        out["backbones"][b] = bench(b, files, sizes, args.repeats, seconds)
    out["load_average_at_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("channels_last_quick.json" if args.quick else "channels_last.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
