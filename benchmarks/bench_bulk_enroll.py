"""Bulk enrollment throughput and memory (issue 12): ``enroll --batch-commit`` against the bare
model forward, in one fresh process.

* Baseline: the model forward on pre-decoded tensors (decoding untimed), same model object, same
  network path (``verikit.models.backend.run_network``: eager, or the ONNX export when the model
  has one), same batch size and threads: the most any enroll could reach. Two sustained passes
  (not a best-of: the bulk run is one sustained pass), timed in the same process right before AND
  right after the bulk run (the machine is shared: the ratio is taken against their mean, and
  both are reported).
* Bulk: ``Service.enroll_bulk`` over a folder tree of real face images (the shared sets, repeated
  under distinct identity names via symlinks), timed from the first file to the last commit:
  listing, reading, hashing, decoding in DataLoader workers, forward, batched SQLite commits and
  index saves, with a progress callback (as the CLI's bar). Memory: the main process's peak
  resident set (VmHWM, reset just before the run, so the baseline's tensors do not count) and the
  decode workers' summed resident set (sampled after every batch), after the first tenth of the
  files (and at least two commits: the first one opens the gallery and loads faiss) and at the
  end: with streaming the end should be no higher than that.

Run: ``.venv/bin/python benchmarks/bench_bulk_enroll.py`` (20,000 images, resnet18 at 112 px;
about 30-60 min on a loaded 2-core machine), ``--quick`` (1,000 images). Writes
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
from pathlib import Path

from verikit.io import list_images
from verikit.models.embedder import Embedder
from verikit.structures import InputSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import psutil
    import torch
    from verikit.io import load_image
    from verikit.models.backend import active_runner, run_network
    from verikit.models.preprocess import to_tensor_transform
    from verikit.service import Service

    folder, gallery, model, workers, batch, commit, raw_count, total = sys.argv[1:9]
    batch, raw_count, total = int(batch), int(raw_count), int(total)

    def raw_forward_ips(net, files):
        transform = to_tensor_transform(net.input_spec)
        tensors = torch.stack([transform(load_image(p)).as_subclass(torch.Tensor) for p in files])  # untimed
        with torch.inference_mode():
            run_network(net, tensors[:batch])  # warm-up
            t = time.perf_counter()
            for _ in range(2):  # sustained, like the bulk run it is compared with (not a best-of)
                for s in range(0, len(tensors), batch):
                    run_network(net, tensors[s:s + batch])
        return 2 * len(tensors) / (time.perf_counter() - t)

    def hwm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())[:raw_count]
    with Service.open(gallery, model=model, device="cpu", batch_size=batch) as svc:
        net = svc.model.eval()
        before = raw_forward_ips(net, files)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS: the bulk run's own high-water mark from here
        me, seen = psutil.Process(), [0]
        early = min(max(total // 10, 2 * int(commit)), total // 2)  # after the gallery exists, if the run is long enough
        mem = {"workers_peak": 0, "early": None}

        def progress(files):  # after each loader batch: the decode workers' resident memory, summed
            seen[0] += files
            try:
                mem["workers_peak"] = max(mem["workers_peak"], sum(c.memory_info().rss for c in me.children()))
            except psutil.Error:
                pass  # a worker exiting at the end
            if mem["early"] is None and seen[0] >= early:
                mem["early"] = (seen[0], hwm_bytes(), mem["workers_peak"])

        t = time.perf_counter()
        report = svc.enroll_bulk(folder, batch_commit=int(commit), workers=int(workers), progress=progress)
        seconds = time.perf_counter() - t
        peak = hwm_bytes()
        after = raw_forward_ips(net, files)
    print(json.dumps({"seconds": seconds, "templates": sum(report.enrolled.values()), "batches": report.batches,
                      "skipped": sum(report.skipped.values()), "raw_before_ips": before, "raw_after_ips": after,
                      "peak_rss_bytes": peak, "workers_peak_rss_bytes": mem["workers_peak"],
                      "early_files": mem["early"][0], "early_peak_rss_bytes": mem["early"][1],
                      "early_workers_peak_rss_bytes": mem["early"][2],
                      "backend": "eager" if active_runner(net) is None else "onnx",
                      "threads": torch.get_num_threads()}))
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



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--images", type=int, default=None)
    ap.add_argument("--backbone", default="timm:resnet18")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-commit", type=int, default=1000)
    ap.add_argument("--raw-images", type=int, default=256, help="pre-decoded images the baseline forwards")
    args = ap.parse_args()
    n = args.images or (1000 if args.quick else 20_000)
    images = real_images()
    with tempfile.TemporaryDirectory(prefix="verikit-bulk-") as tmp:
        work = Path(tmp)
        Embedder.build(args.backbone, input_spec=InputSpec(size=(args.size, args.size))).eval().save(work / "model")
        build_tree(images, n, work / "tree")
        print(f"{n:,} images from {len(images):,} real ones; {args.backbone} at {args.size}px, batch {args.batch_size}, "
              f"{args.workers} decode workers, commit every {args.batch_commit}; baseline on {args.raw_images} "
              f"pre-decoded images before and after; load average {os.getloadavg()}", flush=True)
        out = subprocess.run([sys.executable, "-c", CHILD, str(work / "tree"), str(work / "g"), str(work / "model"),
                              str(args.workers), str(args.batch_size), str(args.batch_commit),
                              str(min(n, args.raw_images)), str(n)], capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"the bulk run failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["ips"] = r["templates"] / r["seconds"]
    r["raw_ips"] = (r["raw_before_ips"] + r["raw_after_ips"]) / 2
    result = {"images": n, "backbone": args.backbone, "size": args.size, "batch_size": args.batch_size,
              "workers": args.workers, "batch_commit": args.batch_commit, "raw_images": args.raw_images,
              "load_average_after": os.getloadavg(), **r, "ratio": r["ips"] / r["raw_ips"],
              "peak_rss_growth": r["peak_rss_bytes"] / r["early_peak_rss_bytes"],
              "workers_peak_rss_growth": r["workers_peak_rss_bytes"] / max(1, r["early_workers_peak_rss_bytes"])}
    print(f"bulk enroll of {n:,}: {r['seconds']:.0f} s, {r['ips']:.2f} img/s ({r['backend']}, {r['threads']} threads); "
          f"raw forward {r['raw_before_ips']:.2f} before / {r['raw_after_ips']:.2f} after: ratio {result['ratio']:.3f} "
          f"(target >= 0.9); {r['batches']} commits, {r['skipped']} skipped")
    print(f"peak RSS, main process: {r['early_peak_rss_bytes'] / 2**20:.0f} MiB after {r['early_files']:,} files, "
          f"{r['peak_rss_bytes'] / 2**20:.0f} MiB at the end (x{result['peak_rss_growth']:.3f}); decode workers "
          f"together: {r['early_workers_peak_rss_bytes'] / 2**20:.0f} -> {r['workers_peak_rss_bytes'] / 2**20:.0f} MiB "
          f"(x{result['workers_peak_rss_growth']:.3f}); flat: ~1.0")
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / ("bulk_enroll-quick.json" if args.quick else "bulk_enroll.json")
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
