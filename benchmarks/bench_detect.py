"""Detector overhead: verikit's ``haar`` detector path versus raw ``cv2.CascadeClassifier.detectMultiScale``.

Same images (every photo in $VERIKIT_DATA/dlib_faces, default ../shared/data), same cascade and
parameters, measured in the same run, alternating rounds so a busy neighbour hurts both alike.
Two comparisons, each reported as images/s and ratio = verikit / raw (target >= 0.9):

* ``from_file``: verikit ``load_image`` (Pillow, EXIF, RGB) + ``detector.detect`` vs
  ``cv2.imread`` + ``cvtColor`` + ``detectMultiScale``;
* ``decoded``: ``detector.detect`` on loaded PIL images vs ``detectMultiScale`` on grey arrays
  (the cost of verikit's conversion, sorting and validated ``Detections``).

OpenCV is measured with 1 thread and with its default thread count. Eye search is off (the raw call
has none). Run: ``.venv/bin/python benchmarks/bench_detect.py [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cv2

from verikit.io import list_images, load_image
from verikit.registry import detectors

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
PARAMS = {"scale_factor": 1.1, "min_neighbors": 5, "min_size": (30, 30)}


def _timed(fn, paths_or_images) -> float:
    t = time.perf_counter()
    for item in paths_or_images:
        fn(item)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data") / "dlib_faces"
    paths, _ = list_images(data)
    if not paths:
        raise SystemExit(f"no images under {data}")
    det = detectors.create("haar", eyes=False, **PARAMS)
    raw = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    kw = dict(scaleFactor=PARAMS["scale_factor"], minNeighbors=PARAMS["min_neighbors"], minSize=PARAMS["min_size"])
    pil = [load_image(p) for p in paths]
    grey = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in paths]
    cases = {
        "from_file": (lambda p: det.detect([load_image(p)]),
                      lambda p: raw.detectMultiScale(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY), **kw),
                      paths, paths),
        "decoded": (lambda im: det.detect([im]), lambda g: raw.detectMultiScale(g, **kw), pil, grey),
    }
    default_threads = cv2.getNumThreads()
    report = {"images": len(paths), "source": str(data), "params": {**PARAMS, "min_size": list(PARAMS["min_size"])},
              "rounds": args.rounds, "results": {}}
    for threads in sorted({1, default_threads}):
        cv2.setNumThreads(threads)
        for name, (ours, theirs, our_in, their_in) in cases.items():
            ours(our_in[0]), theirs(their_in[0])  # warm-up
            t_ours, t_raw = [], []
            for _ in range(args.rounds):
                t_raw.append(_timed(theirs, their_in))
                t_ours.append(_timed(ours, our_in))
            ips_ours, ips_raw = len(paths) / statistics.median(t_ours), len(paths) / statistics.median(t_raw)
            key = f"{name}/threads={threads}"
            report["results"][key] = {"verikit_images_per_s": round(ips_ours, 2), "raw_images_per_s": round(ips_raw, 2),
                                      "ratio": round(ips_ours / ips_raw, 3)}
            print(f"{key:24s} verikit {ips_ours:7.2f} img/s   raw cv2 {ips_raw:7.2f} img/s   ratio {ips_ours / ips_raw:.3f}",
                  flush=True)
    cv2.setNumThreads(default_threads)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "detect.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'detect.json'}")


if __name__ == "__main__":
    main()
