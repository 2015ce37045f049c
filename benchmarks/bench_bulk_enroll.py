"""Bulk enrollment throughput and memory (issue 12): ``enroll --batch-commit`` against the bare
model forward, at two sizes, in one run.

* Baseline: the model forward on pre-decoded tensors (decoding untimed), same batch size and
  threads: the most any enroll could reach.
* Bulk: ``Service.enroll_bulk`` in a fresh process over a folder tree of real face images
  (the shared sets, repeated under distinct identity names via symlinks), timed from the first
  file to the last commit: reading, hashing, decoding in DataLoader workers, forward, batched
  SQLite commits. Its peak resident memory is read from the process itself (ru_maxrss) at half
  and at the full size: with streaming it should not grow with the count.

Run: ``.venv/bin/python benchmarks/bench_bulk_enroll.py`` (20,000 images, resnet18 at 112 px),
``--quick`` (1,000 images, a couple of minutes on a loaded 2-core machine). Writes
``benchmarks/results/bulk_enroll.json`` (``bulk_enroll-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from verikit.io import list_images, load_image
from verikit.models.embedder import Embedder
from verikit.models.preprocess import to_tensor_transform
from verikit.structures import InputSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

BULK = textwrap.dedent("""
    import json, resource, sys, time
    from verikit.service import Service
    folder, gallery, model, workers, batch, commit = sys.argv[1:7]
    with Service.open(gallery, model=model, device="cpu", batch_size=int(batch)) as svc:
        t = time.perf_counter()
        report = svc.enroll_bulk(folder, batch_commit=int(commit), workers=int(workers))
        seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "templates": sum(report.enrolled.values()), "batches": report.batches,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


def real_images() -> list[Path]:
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data")
    out: list[Path] = []
    for source in ("cropped_yale_b", "orl_faces", "yalefaces"):
        if (data / source).is_dir():
            out += list_images(data / source)[0]
    if not out:
        raise SystemExit(f"no real images under {data}")
    return out


def build_tree(images: list[Path], n: int, root: Path) -> None:
    """n symlinks, 10 per identity, cycling through the real images (repeats get other names)."""
    for i in range(n):
        d = root / f"p{i // 10:06d}"
        if i % 10 == 0:
            d.mkdir(parents=True)
        src = images[i % len(images)]
        os.symlink(src, d / f"{i:07d}{src.suffix}")


def raw_forward_ips(model: Embedder, images: list[Path], batch: int, count: int) -> float:
    transform = to_tensor_transform(model.input_spec)
    tensors = torch.stack([transform(load_image(p)) for p in images[:count]])  # decoded up front, untimed
    with torch.inference_mode():
        model(tensors[:batch])
        best = 0.0
        for _ in range(2):
            t = time.perf_counter()
            for s in range(0, len(tensors), batch):
                model(tensors[s:s + batch])
            best = max(best, len(tensors) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--backbone", default="timm:resnet18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-commit", type=int, default=1000)
    args = ap.parse_args()
    n = args.images or (1000 if args.quick else 20_000)
    images = real_images()
    with tempfile.TemporaryDirectory(prefix="verikit-bulk-") as tmp:
        work = Path(tmp)
        model = Embedder.build(args.backbone, input_spec=InputSpec(size=(args.size, args.size))).eval()
        model.save(work / "model")
        model = Embedder.load(work / "model")
        print(f"{n:,} images from {len(images):,} real ones; {args.backbone} at {args.size}px, batch {args.batch_size}, "
              f"{args.workers} decode workers, commit every {args.batch_commit}; torch threads {torch.get_num_threads()}",
              flush=True)
        raw = raw_forward_ips(model, images, args.batch_size, min(n, 512))
        print(f"raw forward on pre-decoded tensors: {raw:.1f} img/s", flush=True)
        runs = {}
        for size in (n // 2, n):
            build_tree(images, size, work / f"tree{size}")
            out = subprocess.run([sys.executable, "-c", BULK, str(work / f"tree{size}"), str(work / f"g{size}"),
                                  str(work / "model"), str(args.workers), str(args.batch_size), str(args.batch_commit)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["ips"] = r["templates"] / r["seconds"]
            runs[size] = r
            print(f"bulk enroll of {size:,}: {r['ips']:.1f} img/s (ratio {r['ips'] / raw:.2f}, target >= 0.9), "
                  f"{r['batches']} commits, peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    half, full = runs[n // 2], runs[n]
    result = {"images": n, "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
              "workers": args.workers, "batch_commit": args.batch_commit, "raw_forward_ips": raw,
              "runs": {str(k): v for k, v in runs.items()}, "ratio": full["ips"] / raw,
              "peak_rss_growth": full["peak_rss_bytes"] / half["peak_rss_bytes"]}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("bulk_enroll-quick.json" if args.quick else "bulk_enroll.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak memory at {n:,} vs {n // 2:,}: x{result['peak_rss_growth']:.2f} (flat: ~1.0); written {out}")


if __name__ == "__main__":
    main()
