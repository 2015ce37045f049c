"""Failure to acquire on real photos: what `--on-no-face` does to the figures.

Extended Yale B (cropped) is lit from every angle; on its darkest shots OpenCV's Haar cascade
finds no face. Through ``verikit benchmark folder --detector haar`` those images are failures to
acquire (ISO/IEC 19795-1). This script scores the same people four ways, with everything else
equal (same model, same pairs, one shared embedding cache):

* ``nonmatch`` (verikit's default): every pair stays, a pair with a faceless image is a non-match;
* ``drop``: those pairs are left out (what a benchmark that "skips failures" reports);
* ``whole`` / ``center``: faceless images are embedded from the whole image / a centre crop;

and prints the FTA rate, EER and TAR at FAR 1% of each. The baseline is ``nonmatch``: ``drop``
reads better than any deployed system with this detector can do, which is why it is not the
default. Not a speed benchmark; the numbers are accuracy.

Model: ``--model DIR`` (default: dlib's pretrained face descriptor from ``verikit-faceapi``,
built once into a temporary folder when its weights were fetched: ``python -m
verikit_faceapi fetch``; otherwise pass any verikit model). People: the last ``--people`` of the
38 (default 10, the test people of ``bench_accuracy.py``); ``--quick``: 3 people, 12 images each.

Run: ``.venv/bin/python benchmarks/bench_fta.py`` (results in ``benchmarks/results/fta.json``).
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

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(os.environ.get("VERIKIT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
MODES = ("nonmatch", "drop", "whole", "center")


def people_folder(people: int, per: int | None, into: Path) -> Path:
    """The last ``people`` Extended Yale B identities as a folder per identity (symlinks)."""
    src = SHARED / "cropped_yale_b"
    names = sorted(p.name for p in src.iterdir() if p.name.startswith("yaleB"))[-people:]
    for name in names:
        (into / name).mkdir(parents=True)
        files = sorted(f for f in (src / name).iterdir() if f.suffix == ".pgm" and "Ambient" not in f.name)
        for f in files[:per] if per else files:
            (into / name / f.name).symlink_to(f)
    return into


def default_model() -> Path:
    model = Path(tempfile.gettempdir()) / "verikit-bench-fta-model"
    if not (model / "config.json").is_file():
        r = subprocess.run([sys.executable, "-m", "verikit_faceapi", "model", str(model)], capture_output=True,
                           text=True)
        if r.returncode != 0:
            sys.exit(f"no --model given and the faceapi model could not be built: {r.stderr.strip()}")
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="verikit model directory (default: dlib's descriptor)")
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--per", type=int, default=None, help="images per person (default: all)")
    ap.add_argument("--detector", default="haar")
    ap.add_argument("--quick", action="store_true", help="3 people x 12 images: checks that it works")
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS / "fta.json")
    args = ap.parse_args()
    if args.quick:
        args.people, args.per = 3, 12
    if not (SHARED / "cropped_yale_b").is_dir():
        sys.exit(f"Extended Yale B not found under {SHARED}; set VERIKIT_DATA")
    model = args.model or default_model()

    from verikit.evaluate.benchmark import run_pairs
    from verikit.evaluate.protocols import folder_pairs
    from verikit.models.embedder import Embedder
    from verikit.pipeline.files import FileEmbedder
    from verikit.pipeline.settings import PipelineSettings

    net = Embedder.load(model, device="auto")
    pipeline = PipelineSettings(args.detector)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = people_folder(args.people, args.per, Path(tmp) / "people")
        protocol = folder_pairs(data)
        cache = Path(tmp) / "cache"
        print(f"{len(protocol.files)} images of {args.people} people, {protocol.n_genuine:,} genuine / "
              f"{protocol.n_impostor:,} impostor pairs; detector {args.detector}; model {model}")
        print(f"{'--on-no-face':>13} {'FTA':>7} {'pairs':>8} {'unscored':>9} {'EER':>7} {'TAR@1%':>7} {'s':>6}")
        for mode in MODES:
            start = time.perf_counter()
            embedder = FileEmbedder(net, pipeline, 32, fallback=mode if mode in ("whole", "center") else None)
            result, _ = run_pairs(embedder, protocol, model_path=str(model), cache_dir=cache, n_boot=args.boot,
                                  on_no_face=mode, fars=(1e-2, 1e-3))
            v, acq = result["verification"], result["acquisition"]
            row = {"on_no_face": mode, "fta_rate": acq["fta_rate"], "fta_interval": acq["fta_interval"],
                   "no_face": acq["no_face"], "files": acq["files"], "pairs": v["n_genuine"] + v["n_impostor"],
                   "genuine": v["n_genuine"], "impostor": v["n_impostor"], "unscored": v["unscored"],
                   "dropped_pairs": result["skipped"]["pairs"], "eer": v["eer"]["value"],
                   "eer_ci": v["eer"]["bootstrap_ci"], "tar_at_far_1e-2": v["tar_at_far"][0]["tar"],
                   "tar_interval": v["tar_at_far"][0]["tar_interval"],
                   "bootstrap_unit": (v["bootstrap"] or {}).get("unit"), "seconds": time.perf_counter() - start}
            rows.append(row)
            unscored = row["unscored"]["genuine"] + row["unscored"]["impostor"]
            print(f"{mode:>13} {100 * row['fta_rate']:6.2f}% {row['pairs']:>8,} {unscored:>9,} "
                  f"{100 * row['eer']:6.2f}% {100 * row['tar_at_far_1e-2']:6.2f}% {row['seconds']:6.1f}")
    base = rows[0]
    for row in rows[1:]:
        row["eer_minus_nonmatch"] = row["eer"] - base["eer"]
    doc = {"benchmark": "fta", "dataset": "Extended Yale B (cropped), last people", "people": args.people,
           "per_person": args.per, "detector": args.detector, "model": str(model), "rows": rows,
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
