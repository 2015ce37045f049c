"""How much the `make demo` figures move with the seed and the number of CPU threads.

The demo (``verikit demo``: train on ORL s1-s30, calibrate on 6 held-out people, enroll and probe
s31-s40) is deterministic for a given seed, thread count and machine: every random draw is
seeded (split, sampler, augmentation per epoch, weights). But the number of threads changes the
order of float sums inside convolutions and matrix products, so 1 and 2 threads train different
weights from the same seed, and a fresh clone on another machine may use another thread count.
This script runs the whole demo protocol for each (seed, threads) in its own process (thread
count fixed with ``torch.set_num_threads`` before anything runs), once more for one pair to
check that a repeat gives identical figures, and prints each figure's mean, min and max.

Run: ``.venv/bin/python benchmarks/bench_demo_spread.py`` (5 seeds x 1 and 2 threads, 40 epochs:
about 20 demo runs' worth of minutes on 2 cores); ``--quick`` (2 epochs, seed 0, 1 and 2 threads)
checks that it works. Writes ``benchmarks/results/demo_spread.json`` (``demo_spread_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ("rank1_accuracy", "genuine_accept_rate", "impostor_accept_rate", "test_all_pairs_eer", "threshold",
           "validation_eer")

# One demo run in a fresh process: the thread count is set before torch does any work.
CHILD = """
import json, sys, torch
from pathlib import Path
seed, threads, epochs, workdir = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
from verikit.demo import DemoSettings, run_demo
from verikit.train.loop import train
settings = DemoSettings(data=Path(sys.argv[5]), workdir=Path(workdir), device="cpu", seed=seed, epochs=epochs)
summary = run_demo(settings, lambda data, cfg, split: train(data, cfg, split=split))
print(json.dumps({k: v for k, v in summary.to_dict().items() if isinstance(v, (int, float))}))
"""


def run_one(seed: int, threads: int, epochs: int) -> dict:
    with tempfile.TemporaryDirectory() as work:
        out = subprocess.run([sys.executable, "-c", CHILD, str(seed), str(threads), str(epochs), work,
                              str(ROOT / "data" / "orl_faces")], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  seed {seed}, {threads} thread(s): rank-1 {figures['rank1_accuracy']:.1%}, genuine accept "
          f"{figures['genuine_accept_rate']:.1%}, impostor accept {figures['impostor_accept_rate']:.1%}, "
          f"all-pairs EER {figures['test_all_pairs_eer']:.2%} ({figures['train_seconds']:.0f} s training)",
          flush=True)
    return {"seed": seed, "threads": threads, **figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--epochs", type=int, default=40, help="the demo's own default")
    ap.add_argument("--quick", action="store_true", help="2 epochs, seed 0: check that it works")
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    epochs = 2 if args.quick else args.epochs
    threads = [int(t) for t in args.threads.split(",")]
    print(f"demo protocol, {epochs} epochs, seeds {seeds}, threads {threads}")
    runs = [run_one(seed, t, epochs) for seed in seeds for t in threads]
    repeat = run_one(seeds[0], threads[-1], epochs)  # the same seed and threads again: identical?
    first = next(r for r in runs if r["seed"] == seeds[0] and r["threads"] == threads[-1])
    identical = all(repeat[f] == first[f] for f in FIGURES)
    spread = {f: {"mean": statistics.fmean(r[f] for r in runs), "min": min(r[f] for r in runs),
                  "max": max(r[f] for r in runs)} for f in FIGURES}
    by_threads = {t: {f: statistics.fmean(r[f] for r in runs if r["threads"] == t) for f in FIGURES} for t in threads}
    print(f"\nrepeat of seed {seeds[0]} with {threads[-1]} thread(s) gives identical figures: {identical}")
    for f in FIGURES:
        s = spread[f]
        print(f"  {f:22s} mean {s['mean']:.4f}  min {s['min']:.4f}  max {s['max']:.4f}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("demo_spread_quick.json" if args.quick else "demo_spread.json")
    path.write_text(json.dumps({"epochs": epochs, "seeds": seeds, "threads": threads, "runs": runs,
                                "repeat": repeat, "repeat_identical": identical, "spread": spread,
                                "mean_by_threads": by_threads}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
