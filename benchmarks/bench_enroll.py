"""Enroll throughput: ``verikit enroll`` from image files on disk versus the bare model forward.

The baseline decodes and preprocesses every image first (untimed), then times only the model
forward on those tensors at the same batch size: the most a pipeline could reach. verikit's
enroll is timed doing all of its work: reading files, decoding, resizing, forward, and the
gallery transaction. The target ratio is >= 0.8. The whole CLI command (process start, torch
import, model load included) is reported too, as a user would time it.

Run: ``.venv/bin/python benchmarks/bench_enroll.py [--images 512] [--backbone timm:resnet18]``.
Real images come from $VERIKIT_DATA/cropped_yale_b (default ../shared/data), else bundled ORL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from verikit.index.gallery import Gallery
from verikit.io import list_images, load_image
from verikit.models.embedder import Embedder
from verikit.models.inference import default_workers
from verikit.models.preprocess import to_tensor_transform
from verikit.pipeline.operations import commit_enrollment, prepare_enrollment
from verikit.structures import InputSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def real_images(n: int) -> tuple[list[Path], str]:
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data")
    for source in (data / "cropped_yale_b", REPO / "data" / "orl_faces"):
        if source.is_dir():
            images, _ = list_images(source)
            if len(images) >= n:
                return images[:n], str(source)
    raise SystemExit(f"need {n} real images under {data}/cropped_yale_b or data/orl_faces")


def raw_forward_ips(model: Embedder, paths: list[Path], batch: int) -> float:
    transform = to_tensor_transform(model.input_spec)
    tensors = torch.stack([transform(load_image(p)) for p in paths])  # decoded up front, untimed
    with torch.inference_mode():
        model(tensors[:batch])  # warm-up
        t = time.perf_counter()
        for s in range(0, len(tensors), batch):
            model(tensors[s:s + batch])
        return len(tensors) / (time.perf_counter() - t)


def enroll_ips(model: Embedder, paths: list[Path], batch: int, workers: int | None, work: Path) -> float:
    todo = {f"id{i // 10}": [] for i in range(len(paths))}
    for i, p in enumerate(paths):
        todo[f"id{i // 10}"].append(p)
    gallery = work / f"g-{workers}-{time.monotonic_ns()}"
    t = time.perf_counter()
    prepared = prepare_enrollment(model, todo, batch_size=batch, num_workers=workers)
    with Gallery.create(gallery, dim=model.embedding_size, fingerprint=model.fingerprint) as g:
        commit_enrollment(g, prepared)
    return len(paths) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backbone", default="timm:resnet18")
    ap.add_argument("--size", type=int, default=112)
    args = ap.parse_args()

    paths, source = real_images(args.images)
    with tempfile.TemporaryDirectory(prefix="verikit-enroll-") as tmp:
        measure(args, paths, source, Path(tmp))


def measure(args: argparse.Namespace, paths: list[Path], source: str, work: Path) -> None:
    model = Embedder.build(args.backbone, input_spec=InputSpec(size=(args.size, args.size))).eval()
    model_dir = work / "model"
    model.save(model_dir)
    model = Embedder.load(model_dir)
    print(f"{len(paths)} real images from {source}; {args.backbone} at {args.size}px, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}")

    # The machine is shared and timings wander: interleave the three measurements and keep each
    # one's best of three rounds, so all of them get the same chances.
    raws, defaults, no_workers = [], [], []
    for _ in range(3):
        raws.append(raw_forward_ips(model, paths, args.batch_size))
        defaults.append(enroll_ips(model, paths, args.batch_size, None, work))
        no_workers.append(enroll_ips(model, paths, args.batch_size, 1, work))
    raw_best, enroll_default, enroll_one_worker = max(raws), max(defaults), max(no_workers)

    listing = work / "folder"
    for i, p in enumerate(paths):
        d = listing / f"id{i // 10}"
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(p, d / p.name)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "verikit.cli.main", "enroll", "--from-folder", str(listing), "-m",
                    str(model_dir), "-g", str(work / "cli-gallery"), "--batch-size", str(args.batch_size), "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    cli_ips = len(paths) / (time.perf_counter() - t)

    result = {"images": len(paths), "source": source, "backbone": args.backbone, "size": args.size,
              "batch_size": args.batch_size, "raw_forward_ips": raw_best, "raw_forward_runs": raws,
              "default_workers": default_workers(), "enroll_ips_default_workers": enroll_default,
              "enroll_ips_one_worker": enroll_one_worker, "ratio_default": enroll_default / raw_best,
              "ratio_one_worker": enroll_one_worker / raw_best,
              "cli_end_to_end_ips": cli_ips}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "enroll.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"raw forward on pre-decoded tensors   {raw_best:8.1f} img/s  (best of {', '.join(f'{r:.0f}' for r in raws)})")
    print(f"verikit enroll, default ({default_workers()} workers)  {enroll_default:8.1f} img/s  "
          f"ratio {enroll_default / raw_best:.2f} (target >= 0.8)")
    print(f"verikit enroll, 1 decode worker      {enroll_one_worker:8.1f} img/s  ratio {enroll_one_worker / raw_best:.2f}")
    print(f"`verikit enroll` CLI end to end      {cli_ips:8.1f} img/s  (process start, imports, model load included)")


if __name__ == "__main__":
    main()
