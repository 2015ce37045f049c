"""Pretrained face verification: dlib's ResNet descriptor through verikit's own pipeline, zero-shot.

Issue 3 asks for an all-pairs EER <= 2% on ORL s31-s40 after training on s1-s30; the networks
trained from scratch here stay near 12% (README). This script measures the remedy verikit now
ships as the plugin ``verikit-faceapi``: dlib's ResNet-29 face descriptor (about 3 million faces
of training, 99.38% on LFW; face-api.js's weights from the npm package ``@vladmandic/face-api``,
rebuilt in PyTorch) on face chips aligned by verikit on 68 landmarks (the plugin's ``faceapi``
detector: face boxes from face-api.js's SSD-MobileNetV1 (``faceapi:ssd``, the default), its
Tiny-YOLOv2 (``faceapi:tiny_yolo``) or OpenCV's Haar cascade (``faceapi:haar``), and face-api.js's
landmark network placing the 68 points in each box; ``verikit.pipeline.alignment``).

Rows, all through :class:`verikit.pipeline.detection.FaceCropper` and an
:class:`~verikit.models.embedder.Embedder` built on ``faceapi:dlib_resnet`` (templates = the
descriptor, ``embed_from: pooled``), each single view and mirror-averaged:

* ORL s31-s40, all pairs (450 genuine / 4,500 impostor), subject bootstrap as in
  ``bench_accuracy.py``: the whole photo, Haar crops, Haar crops with the eyes levelled, and
  landmark-aligned chips (margin 0.25, dlib's own chip; and 0.2, verikit's default margin) with
  boxes from each of the three detectors; raw pixels as the baseline. Nothing is trained on s1-s30.
* ORL after ``verikit train`` on the s1-s30 chips from the pretrained descriptor (backbone frozen,
  or unfrozen at a tenth of the learning rate after the neck), templates from the trained neck
  and from the descriptor under it.
* The Yale Face Database (``yalefaces``): all 15 people x 11 conditions (centre / left / right
  light, expressions, glasses), all pairs: the whole photo, Haar crops and landmark chips.
* Extended Yale B (cropped), the last 10 of 38 people (the test people of ``bench_accuracy.py``),
  all pairs: whole image vs landmark chips (``boxes: none``: the photos are face crops already,
  and many are too dark for Haar; and boxes from SSD and Tiny-YOLO, which search a grey border
  around a face that fills the frame); also with verikit's histogram equalisation of the chips, and
  with the landmark network shown an equalised copy (the detector's ``equalize`` option; off by
  default, and measured on every set here).
* The landmark network itself on dlib_faces' ``*_with_face_landmarks.xml`` (43 faces): the mean
  distance of its 68 points from those dlib's own 68-point predictor gave, over the outer eye
  corners' distance, given the annotated boxes; baseline: dlib's mean face fitted into the box.

Get the weights once (13 MB from the npm registry): ``python -m verikit_faceapi fetch``; then
``.venv/bin/python benchmarks/bench_pretrained_face.py``. Without them the script says so and
stops. Writes ``benchmarks/results/pretrained_face.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from verikit.models.inference import embed_images

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import SHARED, fmt, orl_split, raw_pixels, score, yale_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# the face box sources of the faceapi detector measured here: (row name, faceapi:ARGUMENT)
BOX_SOURCES = [("SSD", "ssd"), ("Tiny-YOLO", "tiny_yolo"), ("Haar", "haar")]


def crops_of(paths: list[Path], settings) -> tuple[list[Image.Image], int]:
    """verikit's crop of each file (largest face); the whole image where none is found, so every
    test image is scored. ``settings`` None: the whole images. Returns (images, how many had no face)."""
    from verikit.io import load_image
    from verikit.pipeline.detection import FaceCropper

    images = [load_image(p) for p in paths]
    if settings is None:
        return images, 0
    results = FaceCropper(settings).crops_of_images(images, paths)
    found = [r[0].image if isinstance(r, list) and r else None for r in results]
    return [f if f is not None else im for f, im in zip(found, images)], sum(f is None for f in found)


def verification_rows(title: str, items, inputs: dict, models: dict, boot: int) -> list[dict]:
    paths, labels = [p for _, p in items], [n for n, _ in items]
    pixels, pixel_labels = raw_pixels(items)
    rows = [{"dataset": title, "input": "raw 16x16 pixels (baseline)", **score(pixels, pixel_labels, boot)}]
    print(f"{title}: {len(paths)} images, {len(set(labels))} people, all pairs; dlib descriptor, nothing trained")
    print(f"  {rows[0]['input']:52s} {fmt(rows[0])}")
    for name, settings in inputs.items():
        start = time.perf_counter()
        images, missed = crops_of(paths, settings)
        crop_s = time.perf_counter() - start
        for view, model in models.items():
            start = time.perf_counter()
            row = {"dataset": title, "input": f"{name}, {view}", "no_face_found": missed,
                   **score(embed_images(model, images), labels, boot),
                   "images_per_s": round(len(images) / (crop_s + time.perf_counter() - start), 1)}
            rows.append(row)
            note = f"  ({missed} without a face: whole image)" if missed else ""
            print(f"  {row['input']:52s} {fmt(row)}  {row['images_per_s']:.0f} img/s{note}", flush=True)
    return rows


def write_chips(items, settings, folder: Path) -> list[tuple[str, Path]]:
    """Each item's aligned chip as a PNG under ``folder/<identity>/``: a training set of chips."""
    images, _ = crops_of([p for _, p in items], settings)
    out = []
    for (name, path), image in zip(items, images):
        target = folder / name / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target)
        out.append((name, target))
    return out


def trained_on_s1_s30(settings, boot: int, epochs: int) -> list[dict]:
    """``verikit train`` (normalized softmax, mirrored augmentation) on the s1-s30 chips, starting
    from the pretrained descriptor: (a) the backbone frozen, only the neck trained; (b) the neck
    first, then everything at a tenth of the learning rate. Scored on s31-s40 chips from the neck
    and from the descriptor under it."""
    import dataclasses
    import tempfile

    from verikit.train.data import Split
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    split = orl_split()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        train_items = write_chips(split.train, settings, Path(tmp) / "train")
        test_items = write_chips(split.val, settings, Path(tmp) / "test")
        test_images = [Image.open(p).convert("RGB") for _, p in test_items]
        labels = [n for n, _ in test_items]
        base = TrainConfig(backbone="faceapi:dlib_resnet", backbone_options={"pretrained": True}, image_size=(150, 150),
                           channels=3, embedding_size=128, loss="normalized_softmax", batch_size=32, m_per_class=4,
                           lr=1e-3, epochs=epochs, val_fraction=0.0, device="cpu", workers=0, augment="light")
        variants = {"frozen descriptor, neck trained": dataclasses.replace(base, freeze_epochs=epochs),
                    "neck first, then all at lr / 10": dataclasses.replace(base, freeze_epochs=max(1, epochs // 3),
                                                                          backbone_lr_scale=0.1)}
        print(f"ORL trained on s1-s30 chips ({len(train_items)} images), scored on s31-s40 chips, mirror-averaged")
        for name, cfg in variants.items():
            start = time.perf_counter()
            model = train(None, cfg, split=Split(train_items, [])).model.eval()
            seconds = time.perf_counter() - start
            for layer in ("neck", "pooled"):
                model.config = dataclasses.replace(model.config, embed_from=layer, tta="hflip")
                row = {"dataset": "ORL s31-s40, trained on s1-s30", "input": f"{name}; templates from the {layer}",
                       "epochs": epochs, "train_seconds": round(seconds, 1),
                       **score(embed_images(model, test_images), labels, boot)}
                rows.append(row)
                print(f"  {row['input']:52s} {fmt(row)}  ({seconds:.0f} s of training)", flush=True)
    return rows


def landmark_agreement(xml_files: list[Path]) -> dict:
    """Mean point distance / outer-eye-corner distance, faceapi vs dlib's predictor's points."""
    import xml.etree.ElementTree as ET

    from verikit.io import load_image
    from verikit.pipeline.alignment import MEAN_FACE_X, MEAN_FACE_Y, TEMPLATE_FIRST
    from verikit_faceapi import create_detector

    net = create_detector(None, margin=0.0)  # the annotated box is the face
    ours, mean_face = [], []
    template = np.stack([MEAN_FACE_X, MEAN_FACE_Y], 1)
    lo, hi = template.min(0), template.max(0)
    for xml in xml_files:
        for image_el in ET.parse(xml).getroot().iter("image"):
            image = load_image(xml.parent / image_el.get("file"))
            for box_el in image_el.iter("box"):
                parts = sorted(box_el.iter("part"), key=lambda p: int(p.get("name")))
                if len(parts) != 68:
                    continue
                truth = np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
                x, y, w, h = (float(box_el.get(k)) for k in ("left", "top", "width", "height"))
                face = image.crop((round(x), round(y), round(x + w), round(y + h)))
                found = net.detect([face])[0].landmarks[0, :68] + [round(x), round(y)]
                iod = np.linalg.norm(truth[45] - truth[36])
                ours.append(np.linalg.norm(found - truth, axis=1).mean() / iod)
                placed = (template - lo) / (hi - lo) * [w, h] + [x, y]  # mean face stretched over the box
                mean_face.append(np.linalg.norm(placed - truth[TEMPLATE_FIRST:], axis=1).mean()
                                 / iod)
    return {"faces": len(ours), "faceapi_nme_median": float(np.median(ours)), "faceapi_nme_mean": float(np.mean(ours)),
            "mean_face_in_box_nme_median": float(np.median(mean_face)),
            "reference": "dlib shape_predictor_68_face_landmarks points shipped in the xml files (not human labels)",
            "note": "baseline scored on points 17-67 only (the template has no jaw line); faceapi on all 68"}


def main() -> None:
    from verikit.models.embedder import Embedder
    from verikit.pipeline.settings import PipelineSettings
    from verikit_faceapi import descriptor_input_spec
    from verikit_faceapi.weights import NETWORKS, default_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--datasets", default="orl,train,yalefaces,yale,landmarks")
    ap.add_argument("--boxes", default=",".join(b for _, b in BOX_SOURCES),
                    help="box sources of the faceapi rows (ssd,tiny_yolo,haar)")
    ap.add_argument("--box-enhance", default="none", choices=["none", "equalize", "clahe"],
                    help="the SSD / Tiny-YOLO rows: the box network looks at a contrast-normalised copy (enhance option)")
    ap.add_argument("--only-boxes", action="store_true",
                    help="only the rows whose faces come from the --boxes sources (e.g. to add a new detector's rows)")
    ap.add_argument("--rows", nargs="+", default=None, metavar="TEXT",
                    help="only the input rows whose name contains one of these strings")
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--train-epochs", type=int, default=10, help="epochs of the s1-s30 training rows")
    ap.add_argument("--results", type=Path, default=RESULTS / "pretrained_face.json")
    args = ap.parse_args()
    missing = [n[2] for n in NETWORKS.values() if not (default_dir() / n[2]).is_file()]
    if missing:  # an optional download: skipped, not failed, in run_all.py
        print(f"skipped: {', '.join(missing)} not in {default_dir()}; run: python -m verikit_faceapi fetch")
        return
    torch.set_num_threads(args.threads)
    models = {view: Embedder.build("faceapi:dlib_resnet", input_spec=descriptor_input_spec(),
                                   backbone_options={"pretrained": True}, embed_from="pooled", tta=tta).eval()
              for view, tta in (("single view", "none"), ("mirror-averaged", "hflip"))}
    out: dict = {"network": "dlib_face_recognition_resnet_model_v1 via face-api.js (@vladmandic/face-api 1.7.15), "
                            "verikit-faceapi", "scoring": "cosine on L2-normalised descriptors; subject bootstrap",
                 "rows": []}
    sets = args.datasets.split(",")
    sources = [(name, b) for name, b in BOX_SOURCES if b in args.boxes.split(",")]
    if args.box_enhance != "none":  # the face-api.js networks' rows, found on enhanced copies
        label = {"equalize": "equalised", "clahe": "CLAHE"}[args.box_enhance]
        sources = [(name if b == "haar" else f"{name} (found on {label} copies)", b) for name, b in sources]

    def box_options(boxes: str, options: dict | None = None) -> dict:
        extra = {"enhance": args.box_enhance} if boxes != "haar" and args.box_enhance != "none" else {}
        return {**extra, **(options or {})}
    wanted = {f"faceapi:{b}" for _, b in sources}

    def keep(inputs: dict) -> dict:  # --only-boxes: the rows of the chosen box sources alone
        return {k: v for k, v in inputs.items() if (not args.only_boxes or (v is not None and v.detector in wanted))
                and (not args.rows or any(text in k for text in args.rows))}

    def save() -> None:  # after each data set, so a run cut short keeps what it measured
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(out, indent=2) + "\n")
    if "orl" in sets:
        inputs = {"whole image": None,
                  "Haar crop": PipelineSettings("haar", align=False),
                  "Haar crop, eyes levelled": PipelineSettings("haar"),
                  **{f"{name} boxes, landmark chip, margin 0.25": PipelineSettings(f"faceapi:{boxes}", box_options(boxes),
                                                                                  crop_margin=0.25)
                     for name, boxes in sources},
                  "SSD boxes, landmark chip, margin 0.2 (verikit default)": PipelineSettings("faceapi"),
                  "Haar boxes, landmark chip, margin 0.25, landmarks found on the equalised image":
                      PipelineSettings("faceapi:haar", {"equalize": True}, crop_margin=0.25)}
        out["rows"] += verification_rows("ORL s31-s40", orl_split().val, keep(inputs), models, args.boot)
        save()
    if "train" in sets:
        out["rows"] += trained_on_s1_s30(PipelineSettings("faceapi:haar", crop_margin=0.25), args.boot, args.train_epochs)
    if "yalefaces" in sets and (SHARED / "yalefaces").is_dir():
        # Yale Face Database: 15 people x 11 conditions (lighting, expressions, glasses), faces small in the frame
        items = sorted((p.name.split(".")[0], p) for p in (SHARED / "yalefaces").iterdir() if p.name.startswith("subject"))
        inputs = {"whole image": None, "Haar crop, eyes levelled": PipelineSettings("haar"),
                  **{f"{name} boxes, landmark chip, margin 0.25": PipelineSettings(f"faceapi:{boxes}", box_options(boxes),
                                                                                  crop_margin=0.25)
                     for name, boxes in sources},
                  "Haar boxes, landmark chip, margin 0.25, landmarks found on the equalised image":
                      PipelineSettings("faceapi:haar", {"equalize": True}, crop_margin=0.25)}
        out["rows"] += verification_rows("Yale faces, all 15 people", items, keep(inputs), models, args.boot)
        save()
    if "yale" in sets and (SHARED / "cropped_yale_b").is_dir():
        inputs = {"whole image": None,
                  "landmark chip, margin 0.25": PipelineSettings("faceapi:none", crop_margin=0.25),
                  "landmark chip, margin 0.25, landmarks found on the equalised image":
                      PipelineSettings("faceapi:none", {"equalize": True}, crop_margin=0.25),
                  **{f"{name} boxes, landmark chip, margin 0.25{extra}": PipelineSettings(f"faceapi:{boxes}",
                                                                                          box_options(boxes, options),
                                                                                          crop_margin=0.25)
                     for name, boxes in sources if boxes != "haar"
                     for extra, options in (("", {}), (", landmarks found on the equalised image", {"equalize": True}))}}
        # Yale B's lighting: also the model with verikit's histogram equalisation (InputSpec.equalize)
        equalised = Embedder.build("faceapi:dlib_resnet", input_spec=replace(descriptor_input_spec(), equalize="histogram"),
                                   backbone_options={"pretrained": True}, embed_from="pooled", tta="hflip").eval()
        out["rows"] += verification_rows("Extended Yale B, last 10 people", yale_split().val, keep(inputs),
                                         {**models, "mirror-averaged, histogram-equalised": equalised}, args.boot)
        save()
    if "landmarks" in sets:
        xmls = [SHARED / "dlib_faces" / f for f in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml")]
        if all(x.is_file() for x in xmls):
            out["landmarks"] = landmark_agreement(xmls)
            lm = out["landmarks"]
            print(f"landmarks on {lm['faces']} dlib_faces faces, error / outer-eye distance vs dlib's predictor: "
                  f"faceapi median {100 * lm['faceapi_nme_median']:.1f}% (mean {100 * lm['faceapi_nme_mean']:.1f}%); "
                  f"mean face in the box {100 * lm['mean_face_in_box_nme_median']:.1f}%")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
