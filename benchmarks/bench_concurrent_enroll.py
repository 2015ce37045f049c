"""Concurrent enroll: 4 `verikit enroll` processes writing one gallery at once vs 1 process.

Each configuration enrolls the same number of real images into a fresh gallery through the real
command (`verikit enroll --from-folder`, one process per writer, all started together), timed
from the launch of the first process to the exit of the last: process start, torch import,
model load, decoding, forward and the gallery transaction all count, as a user would time it.
The single writer (one process, every image) is the baseline measured in the same run, and the
runs are interleaved so both get the same chances on a shared machine; best of ``--repeats``.

Nothing may be lost: after each run the gallery must hold every image's template in SQLite AND
in the saved index (its ids read with faiss itself), and the index must match SQLite's count.
Target (issue 11): 4 writers reach >= 0.8x the single writer's images/s in total.

Real images come from $VERIKIT_DATA/cropped_yale_b (default ../shared/data), else the bundled
ORL faces; they are repeated under distinct identity names to reach ``--images`` (symlinks,
10 images per identity).

Run: ``.venv/bin/python benchmarks/bench_concurrent_enroll.py [--quick]``; the full size is
2,048 images with timm:resnet18 at 112 px; ``--quick`` is 256 images with the tiny test model.
Writes benchmarks/results/concurrent_enroll.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def real_images(n: int) -> tuple[list[Path], str]:
    from verikit.io import list_images

    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data")
    for source in (data / "cropped_yale_b", REPO / "data" / "orl_faces"):
        if source.is_dir():
            images, _ = list_images(source)
            if images:
                return [images[i % len(images)] for i in range(n)], str(source)
    raise SystemExit(f"no real images under {data}/cropped_yale_b or data/orl_faces")


def folders_for(images: list[Path], writers: int, root: Path) -> list[Path]:
    """``writers`` folders of identities of 10 images each; every identity name is distinct."""
    out = [root / f"writer{w}" for w in range(writers)]
    per = len(images) // writers
    for w, folder in enumerate(out):
        for j, image in enumerate(images[w * per:(w + 1) * per]):
            person = folder / f"r{root.name}-w{w}-p{j // 10}"
            person.mkdir(parents=True, exist_ok=True)
            (person / f"{j}{image.suffix}").symlink_to(image)
    return out


def run_writers(folders: list[Path], model: Path, gallery: Path, batch: int, threads: int | None) -> float:
    """Start one `verikit enroll` per folder at once; seconds until the last one exits."""
    env = {**os.environ}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "verikit.cli.main", "enroll", "--from-folder", str(f), "-m",
                               str(model), "-g", str(gallery), "--batch-size", str(batch), "-q", "-f", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for f in folders]
    outs = [p.communicate() for p in procs]
    seconds = time.perf_counter() - start
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"a writer failed ({p.returncode}): {err.strip()[-500:]}")
    return seconds


def lost(gallery: Path, expected: int) -> dict:
    """What SQLite and the saved index hold, checked from outside verikit (sqlite3, faiss)."""
    import faiss
    import numpy as np

    from verikit.index.gallery import Gallery

    conn = sqlite3.connect(str(gallery / "gallery.sqlite"))
    db_ids = np.array(sorted(r[0] for r in conn.execute("SELECT id FROM templates")), dtype=np.int64)
    conn.close()
    saved = faiss.read_index(str(gallery / "index.faiss"))  # kept in a variable: id_map lives inside it
    index_ids = np.sort(faiss.vector_to_array(saved.id_map))
    with Gallery.open(gallery) as g:
        info = g.info()
    return {"expected": expected, "in_sqlite": int(len(db_ids)), "in_saved_index": int(len(index_ids)),
            "saved_index_equals_sqlite": bool(np.array_equal(db_ids, index_ids)),
            "indexed_vectors": info["indexed_vectors"],
            "lost": int(expected - len(db_ids)) + int(not np.array_equal(db_ids, index_ids))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 images, tiny test model: checks the script works")
    ap.add_argument("--images", type=int, default=None, help="images per run (default 2048; --quick 256)")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--backbone", default=None, help="default timm:resnet18 (--quick: timm:test_resnet)")
    ap.add_argument("--size", type=int, default=None, help="input size in px (default 112; --quick 32)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds, best kept (default 2; --quick 1)")
    args = ap.parse_args()
    n = args.images or (256 if args.quick else 2048)
    backbone = args.backbone or ("timm:test_resnet" if args.quick else "timm:resnet18")
    size = args.size or (32 if args.quick else 112)
    repeats = args.repeats or (1 if args.quick else 2)

    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    images, source = real_images(n)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="verikit-concurrent-") as tmp:
        work = Path(tmp)
        model = work / "model"
        Embedder.build(backbone, input_spec=InputSpec(size=(size, size))).eval().save(model)
        print(f"{n} real images from {source} ({len(set(images))} distinct, repeated under distinct names); "
              f"{backbone} at {size} px, batch {args.batch_size}; {args.writers} writers vs 1; {cores} cores")
        configs = {"1 writer": (1, None), f"{args.writers} writers": (args.writers, None),
                   f"{args.writers} writers, {max(1, cores // args.writers)} thread each":
                       (args.writers, max(1, cores // args.writers))}
        times: dict[str, list[float]] = {k: [] for k in configs}
        checks: dict[str, dict] = {}
        for r in range(repeats):
            for name, (writers, threads) in configs.items():
                run_dir = work / f"{r}-{len(times[name])}-{writers}-{threads}"
                gallery = run_dir / "gallery"
                folders = folders_for(images, writers, run_dir)
                seconds = run_writers(folders, model, gallery, args.batch_size, threads)
                times[name].append(seconds)
                checks[name] = lost(gallery, n)
                print(f"  round {r + 1}: {name:<28} {seconds:7.1f} s  {n / seconds:7.1f} img/s  "
                      f"lost {checks[name]['lost']}", flush=True)
        base = n / min(times["1 writer"])
        result = {"images": n, "distinct_images": len(set(images)), "source": source, "backbone": backbone,
                  "size": size, "batch_size": args.batch_size, "writers": args.writers, "cores": cores,
                  "repeats": repeats, "quick": args.quick, "runs": {}}
        print(f"\n{'configuration':<30} {'img/s (best)':>12} {'ratio to 1 writer':>18} {'lost':>5}")
        for name in configs:
            ips = n / min(times[name])
            result["runs"][name] = {"seconds": times[name], "images_per_s": ips, "ratio": ips / base,
                                    "check": checks[name]}
            print(f"{name:<30} {ips:12.1f} {ips / base:18.2f} {checks[name]['lost']:>5}")
        print("target: >= 0.8 with nothing lost")
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / "concurrent_enroll.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
