"""Face detectors on FDDB: accuracy (FDDB's discrete ROC) and speed (verikit vs the raw network).

On FDDB folds 02-10 ($VERIKIT_DATA/fddb, default ../shared/data: 2,555 news photos, 4,656 faces),
in one run:

* **accuracy** of face-api.js's SSD-MobileNetV1 and Tiny-YOLOv2 (``verikit-faceapi``) and OpenCV's
  Haar cascade (``verikit-haar``, as raw OpenCV: ``border=0``, no eye search), each run at a low
  score threshold so its ROC reaches far: ``verikit.evaluate.detection.run.evaluate_detector``
  with FDDB's own scoring (ellipse-region overlap > 0.5, one-to-one matching at every threshold).
  Reported: true positive rate at 1,000 false positives, average precision; the ROC curves of all
  three in one HTML report (``--report``); then the two face-api.js detectors looking at a
  contrast-normalised copy of each photo (``enhance=equalize|clahe``), to see what the low-light
  option does to ordinary photos.
* **speed**, images/s on the first ``--speed-images`` photos, batches of 8, the five timings
  interleaved batch by batch (median of the rounds per batch) so a busy neighbour hurts all alike:
  verikit's whole path from the files, as ``crops_of_files`` and ``embed_files_through`` run it
  (``verikit.pipeline.decoding.decode_batch``: the batch's JPEGs decoded on as many threads as
  torch has, then ``detect``: face-api.js's padding and resize, the forward, decoding the boxes,
  NMS) against the raw network on the same images, prepared beforehand (already padded, resized
  and normalised, in the same memory layout): the forward plus the decoding the network's output
  needs to be boxes (box decoding, score threshold, NMS), with the same threads (ratio =
  verikit / raw; target >= 0.9). Also, for the split: verikit on decoded images (no JPEG
  decoding), verikit from the files decoded one after the other (``load_image`` in a loop, the
  path before ``decode_batch``), and the ratio to the bare forward alone (without the box
  decoding and NMS).
  The target is on ``border=0`` (face-api.js's path, one forward per photo as in the baseline);
  the default ``border=0.5`` is timed as well, with the number of photos it searches twice.

Run: ``.venv/bin/python benchmarks/bench_detect_fddb.py [--quick] [--threads 1 2] [--report DIR]
[--folds 2 3 ...] [--skip accuracy|speed] [--accuracy-only TEXT ...] [--speed-target-only] [--speed-detector SPEC ...]
[--out FILE]`` (``--quick``: 60 photos, a check that it
works). Needs ``python -m verikit_faceapi fetch``. Writes ``benchmarks/results/detect_fddb.json``
(``detect_fddb_quick.json`` with ``--quick``), after each detector, so a run cut short keeps what
it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from verikit.evaluate.detection.fddb import read_fddb
from verikit.evaluate.detection.run import evaluate_detector
from verikit.errors import ImageError
from verikit.io import load_image
from verikit.pipeline.decoding import decode_batch
from verikit.registry import detectors

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 8
# spec -> options: each detector at a low threshold, so the ROC is traced far (FDDB's 1,000 FP and beyond)
# (in this order, so that a run cut short has the best detector and the baseline first)
ACCURACY = [
    ("faceapi:ssd", {"landmarks": False, "score_threshold": 0.05}),
    ("haar", {"min_neighbors": 1, "eyes": False, "border": 0}),
    ("faceapi:tiny_yolo", {"landmarks": False, "score_threshold": 0.05}),
    ("faceapi:tiny_yolo", {"landmarks": False, "score_threshold": 0.05, "input_size": 608}),
    # the low-light option (verikit_faceapi.contrast): what it costs or gains on ordinary photos
    ("faceapi:ssd", {"landmarks": False, "score_threshold": 0.05, "enhance": "equalize"}),
    ("faceapi:ssd", {"landmarks": False, "score_threshold": 0.05, "enhance": "clahe"}),
    ("faceapi:tiny_yolo", {"landmarks": False, "score_threshold": 0.05, "enhance": "equalize"}),
]
FP_GRID = (0, 10, 25, 50, 100, 250, 500, 1000, 2000)  # the ROC, sampled for the JSON
# spec, options for the speed runs, at face-api.js's default thresholds. The ratio target is on
# border=0 (face-api.js's own path: one forward per image, like the raw baseline); the default
# border=0.5 runs a second forward on each photo where nothing was found, so it is timed too,
# with the count of photos searched twice, but it does more work than the baseline by design.
SPEED = [("faceapi:ssd", {"landmarks": False, "border": 0}), ("faceapi:tiny_yolo", {"landmarks": False, "border": 0}),
         ("faceapi:ssd", {"landmarks": False}), ("faceapi:tiny_yolo", {"landmarks": False})]


def spec_line(spec: str, options: dict) -> str:
    return " ".join([spec, *(f"-O {k}={json.dumps(v)}" for k, v in options.items())])


def accuracy(items, report: Path | None, annotations: str, save, out: dict, only: list[str] | None = None) -> dict:
    """Evaluate each detector of ACCURACY (``only``: those whose spec line contains one of these
    strings); ``save()`` after each, so a run cut short keeps what it measured."""
    docs = []
    for spec, options in ACCURACY:
        if only and not any(text in spec_line(spec, options) for text in only):
            continue
        det = detectors.create(spec, **options)
        start = time.perf_counter()
        res = evaluate_detector(det, items, batch_size=BATCH)
        wall = time.perf_counter() - start
        doc = {"detector": spec, "options": options, "spec": spec_line(spec, options), "annotations": annotations,
               **res.to_dict()}
        docs.append(doc)
        at = doc["recall_at_fp"]
        out[spec_line(spec, options)] = {
            "tpr_at_1000_fp": at["recall"], "curve_ends_at_fp": at["curve_ends_at_fp"],
            "tpr_at_fp": dict(zip(map(str, FP_GRID), [round(v, 4) for v in res.roc.at_fp(FP_GRID)])),
            "ap": doc["ap"], "faces": doc["ground_truth"], "images": doc["images"], "detections": doc["detections"],
            "true_positives_at_lowest_score": doc["true_positives"], "detect_seconds": round(res.seconds, 1),
            "wall_seconds": round(wall, 1)}
        print(f"{spec_line(spec, options):62s} TPR@1000FP {at['recall']:.4f}"
              f"{'' if at['reached'] else ' (curve ends at %d FP)' % at['curve_ends_at_fp']}  AP {doc['ap']:.4f}  "
              f"({res.seconds:.0f} s detecting, {wall:.0f} s in all)", flush=True)
        save()
        if report is not None:  # rewritten after each detector, like the JSON
            from verikit.report.detection import write_detection_report

            paths = write_detection_report(docs, report, title=f"Face detectors on {annotations}")
            print(f"report: {paths['html']}", flush=True)
    return out


def _batches(seq, n=BATCH):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def speed(paths: list[Path], threads: list[int], rounds: int, save, out: dict, target_only: bool = False,
          specs: list[str] | None = None) -> dict:
    """Time each of SPEED (``target_only``: the border=0 ones; ``specs``: those specs only); ``save()``
    after each, like accuracy()."""
    for spec, options in SPEED:
        if (target_only and options.get("border") != 0) or (specs and spec not in specs):
            continue
        det = detectors.create(spec, **options)
        pil = [load_image(p) for p in paths]
        searched_twice = sum(not len(b) for b, _ in det.boxes_and_scores(pil)) if det.border > 0 else 0
        with torch.inference_mode():
            prepared = [det.prepare(b) for b in _batches(pil)]
        net = det.net

        file_batches, pil_batches = _batches(paths), _batches(pil)

        @torch.inference_mode()
        def raw(i):  # the network and the decoding its output needs: boxes, threshold, NMS
            for boxes, scores in zip(*det.raw_boxes(prepared[i])):
                det.select(boxes, scores)

        @torch.inference_mode()
        def forward(i):
            net(prepared[i])

        def from_files(i):  # verikit's file path: the batch decoded on torch's thread count, then detected
            det.detect([im for im in decode_batch(file_batches[i]) if not isinstance(im, ImageError)])

        def from_files_serial(i):  # the same, the files decoded one after the other
            det.detect([load_image(p) for p in file_batches[i]])

        def decoded(i):
            det.detect(pil_batches[i])

        fns = {"raw": raw, "forward": forward, "from_files": from_files, "from_files_serial": from_files_serial,
               "decoded": decoded}
        for n in threads:
            torch.set_num_threads(n)
            raw(0), decoded(0)  # warm-up
            # Interleaved batch by batch (the order rotating), so that a neighbour's load hits the
            # five alike; per batch the median over rounds, summed over the batches.
            times = {k: [[] for _ in prepared] for k in fns}
            for r in range(rounds):
                for i in range(len(prepared)):
                    names = list(fns)[(r + i) % len(fns):] + list(fns)[:(r + i) % len(fns)]
                    for name in names:
                        t = time.perf_counter()
                        fns[name](i)
                        times[name][i].append(time.perf_counter() - t)
            total = {k: sum(statistics.median(b) for b in v) for k, v in times.items()}
            ips = {k: len(paths) / v for k, v in total.items()}
            key = f"{spec_line(spec, options)}/threads={n}"
            out[key] = {"photos_searched_twice": searched_twice, "verikit_from_files_images_per_s": round(ips["from_files"], 2),
                        "verikit_decoded_images_per_s": round(ips["decoded"], 2),
                        "verikit_from_files_serial_decoding_images_per_s": round(ips["from_files_serial"], 2),
                        "raw_forward_and_decoding_images_per_s": round(ips["raw"], 2),
                        "raw_forward_only_images_per_s": round(ips["forward"], 2),
                        "ratio_from_files": round(ips["from_files"] / ips["raw"], 3),
                        "ratio_decoded": round(ips["decoded"] / ips["raw"], 3),
                        "ratio_from_files_serial_decoding": round(ips["from_files_serial"] / ips["raw"], 3),
                        "ratio_from_files_to_forward_only": round(ips["from_files"] / ips["forward"], 3)}
            print(f"{key:60s} verikit from files {ips['from_files']:6.2f} img/s, decoded {ips['decoded']:6.2f}; "
                  f"raw {ips['raw']:6.2f} img/s (forward alone {ips['forward']:6.2f}); ratio "
                  f"{ips['from_files'] / ips['raw']:.3f} (decoded {ips['decoded'] / ips['raw']:.3f}, files decoded "
                  f"serially {ips['from_files_serial'] / ips['raw']:.3f}, "
                  f"to the forward alone {ips['from_files'] / ips['forward']:.3f})", flush=True)
            save()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 photos: check that it works")
    ap.add_argument("--speed-images", type=int, default=160, help="photos timed for speed (full run)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip", choices=["accuracy", "speed"], default=None)
    ap.add_argument("--speed-target-only", action="store_true", help="time only the border=0 runs (the ratio target)")
    ap.add_argument("--speed-detector", nargs="+", default=None, help="time only these specs (e.g. faceapi:tiny_yolo)")
    ap.add_argument("--accuracy-only", nargs="+", default=None, metavar="TEXT",
                    help="evaluate only the detectors whose spec line contains TEXT (e.g. 'input_size=608')")
    ap.add_argument("--report", type=Path, default=None, help="write the HTML report of the ROC curves here")
    ap.add_argument("--folds", type=int, nargs="+", default=None,
                    help="FDDB fold numbers to score (default: every ellipse list in the folder, 02-10)")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/detect_fddb[_quick].json)")
    args = ap.parse_args()
    from verikit_faceapi import detector_unavailable

    if detector_unavailable():
        print(f"skipped: {detector_unavailable()}")
        return
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data") / "fddb" / "FDDB-folds"
    if args.folds:
        items = [it for k in args.folds for it in read_fddb(data / f"FDDB-fold-{k:02d}-ellipseList.txt")]
        annotations = "FDDB folds " + ", ".join(f"{k:02d}" for k in args.folds)
    else:
        items, annotations = read_fddb(data), "FDDB folds 02-10"
    if args.quick:
        items = items[:60]
    n_speed = min(len(items), 24 if args.quick else args.speed_images)
    report = {"dataset": f"{annotations} ({data})" + (", first 60 photos (--quick)" if args.quick else ""),
              "images": len(items), "faces": int(sum(len(i.boxes) for i in items)),
              "scoring": "FDDB discrete score: ellipse-region overlap > 0.5, Hungarian matching per threshold",
              "machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}",
              "load_average_at_start": [round(v, 2) for v in os.getloadavg()], "date": time.strftime("%Y-%m-%d")}
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    RESULTS.mkdir(exist_ok=True)
    target = args.out or RESULTS / ("detect_fddb_quick.json" if args.quick else "detect_fddb.json")

    def save():
        target.write_text(json.dumps(report, indent=2) + "\n")

    if args.skip != "accuracy":
        report["accuracy"] = {}
        accuracy(items, args.report, annotations, save, report["accuracy"], args.accuracy_only)
    if args.skip != "speed":
        report["speed"] = {"images": n_speed, "batch": BATCH, "rounds": 1 if args.quick else args.rounds, "results": {}}
        speed([i.path for i in items[:n_speed]], args.threads, 1 if args.quick else args.rounds, save,
              report["speed"]["results"], args.speed_target_only, args.speed_detector)
    report["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    save()
    print(f"wrote {target} (load average at start {report['load_average_at_start']}, at end "
          f"{report['load_average_at_end']})")


if __name__ == "__main__":
    main()
