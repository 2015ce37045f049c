"""Concurrent enroll: 4 `verikit enroll` processes writing one gallery at once vs 1 process.

Each configuration enrolls the same number of real images into a fresh gallery, one process per
writer, all started together, in two ways:

* ``CLI``: the real command (`verikit enroll --from-folder`), timed from the launch of the first
  process to the exit of the last: process start, torch import, model load, decoding, forward
  and the gallery transaction all count, as a user would time it (each extra process pays its
  own start-up, which has nothing to do with the gallery);
* ``ready processes``: the same enrollment through the library (``prepare_enrollment`` +
  ``commit_enrollment``), timed from one "go" signal sent when every writer has loaded its model,
  until the last one has committed and saved its index: the part the gallery's concurrency model
  can make faster or slower.

The single writer (one process, every image) is the baseline of each, measured in the same run,
and the runs are interleaved so all get the same chances on a shared machine; best of
``--repeats``. Four writers also run at one thread each (cores / writers), since four processes
of two threads oversubscribe two cores.

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


LIBRARY_WRITER = """
import sys, time
from pathlib import Path
from verikit.io import scan_identity_folders
from verikit.models.embedder import Embedder
from verikit.pipeline.operations import commit_enrollment, open_gallery_for, prepare_enrollment
folder, model_dir, gallery, batch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
todo = {n: [str(p) for p in ps] for n, ps in scan_identity_folders(folder).by_identity.items()}
model = Embedder.load(model_dir)
print("READY", flush=True)
sys.stdin.readline()
g = open_gallery_for(model, gallery, create=True, model_path=str(model_dir))
commit_enrollment(g, prepare_enrollment(model, todo, batch_size=batch))
g.close()
print("DONE", flush=True)
"""


def run_library_writers(folders: list[Path], model: Path, gallery: Path, batch: int, threads: int | None) -> float:
    """The same enrollment with the process start, imports and model load left out: each writer
    gets ready, then all start at one signal; seconds from that signal until the last one is done.
    This is the part the gallery's concurrency model can make faster or slower."""
    # Threads as under the CLI (verikit/cli/main.py): idle OpenMP threads sleep instead of spinning,
    # which four processes sharing two cores otherwise spend their time on.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    procs = [subprocess.Popen([sys.executable, "-c", LIBRARY_WRITER, str(f), str(model), str(gallery), str(batch)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for f in folders]
    for p in procs:
        if p.stdout.readline().strip() != "READY":
            raise SystemExit(f"a writer failed to start: {p.communicate()[1][-500:]}")
    start = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "DONE":
            raise SystemExit(f"a writer failed: {p.communicate()[1][-500:]}")
    seconds = time.perf_counter() - start
    for p in procs:
        p.communicate()
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
        one_thread = max(1, cores // args.writers)
        # (mode, writers, threads): "cli" times whole commands, "lib" times from an all-ready signal.
        configs = {"CLI: 1 writer": ("cli", 1, None), f"CLI: {args.writers} writers": ("cli", args.writers, None),
                   f"CLI: {args.writers} writers, {one_thread} thread each": ("cli", args.writers, one_thread),
                   "ready processes: 1 writer": ("lib", 1, None),
                   f"ready processes: {args.writers} writers": ("lib", args.writers, None),
                   f"ready processes: {args.writers} writers, {one_thread} thread each": ("lib", args.writers, one_thread)}
        times: dict[str, list[float]] = {k: [] for k in configs}
        checks: dict[str, dict] = {}
        for r in range(repeats):
            for c, (name, (mode, writers, threads)) in enumerate(configs.items()):
                run_dir = work / f"{r}-{c}"
                gallery = run_dir / "gallery"
                folders = folders_for(images, writers, run_dir)
                runner = run_writers if mode == "cli" else run_library_writers
                seconds = runner(folders, model, gallery, args.batch_size, threads)
                times[name].append(seconds)
                checks[name] = lost(gallery, n)
                print(f"  round {r + 1}: {name:<44} {seconds:7.1f} s  {n / seconds:7.1f} img/s  "
                      f"lost {checks[name]['lost']}", flush=True)
        result = {"images": n, "distinct_images": len(set(images)), "source": source, "backbone": backbone,
                  "size": size, "batch_size": args.batch_size, "writers": args.writers, "cores": cores,
                  "repeats": repeats, "quick": args.quick, "runs": {}}
        print(f"\n{'configuration':<46} {'img/s (best)':>12} {'ratio to 1 writer':>18} {'lost':>5}")
        for name, (mode, _, _) in configs.items():
            ips = n / min(times[name])
            base = n / min(times["CLI: 1 writer" if mode == "cli" else "ready processes: 1 writer"])
            result["runs"][name] = {"seconds": times[name], "images_per_s": ips, "ratio": ips / base,
                                    "check": checks[name]}
            print(f"{name:<46} {ips:12.1f} {ips / base:18.2f} {checks[name]['lost']:>5}")
        print("target: >= 0.8 with nothing lost")
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / "concurrent_enroll.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
