"""Is the structured synthetic data of ``bench_ann.py`` shaped like real face embeddings?

Embeds real face photos with a trained face descriptor (dlib's ResNet through the first-party
plugin ``verikit-faceapi``, 128-d, on verikit's landmark-aligned chips) and computes, for them and
for synthetic sets of the same size, dimension and identity sizes (``structured`` and
``isotropic``, :mod:`ann_data`), the statistics that govern how hard approximate search is:
PCA spectrum, local intrinsic dimension, relative contrast, identity purity of the nearest
neighbours, genuine/impostor cosines (:func:`ann_data.structure_stats`).

Data: ORL (40 people x 10) and the cropped Extended Yale B (38 people x ~64, harsh lighting), both
face-filling photos, so chips come from landmarks without a box detector (``faceapi:none``).
``--quick``: ORL only. Needs the plugin's weights (``python -m verikit_faceapi fetch``); without
them it says so and stops. Writes ``benchmarks/results/ann-data.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_data import Structured, isotropic, structure_stats  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHARED = Path(os.environ.get("VERIKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def real_descriptors(sets: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import torch

    from verikit.io import scan_identity_folders
    from verikit.models.embedder import Embedder
    from verikit.pipeline.settings import PipelineSettings
    from verikit_faceapi import descriptor_input_spec

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pretrained_face import crops_of
    from verikit.models.inference import embed_images

    torch.set_num_threads(2)
    model = Embedder.build("faceapi:dlib_resnet", input_spec=descriptor_input_spec(),
                           backbone_options={"pretrained": True}, embed_from="pooled").eval()
    folders = {"orl": SHARED / "orl_faces", "yaleb": SHARED / "cropped_yale_b"}
    vectors, labels, names = [], [], []
    for name in sets:
        items = scan_identity_folders(folders[name], min_images=2).items
        start = time.perf_counter()
        images, missed = crops_of([p for _, p in items], PipelineSettings("faceapi:none", crop_margin=0.25))
        with torch.no_grad():
            emb = embed_images(model, images)
        print(f"{name}: {len(items)} photos of {len({n for n, _ in items})} people embedded in "
              f"{time.perf_counter() - start:.0f}s ({missed} without landmarks: whole photo)", flush=True)
        vectors.append(emb)
        labels += [f"{name}/{n}" for n, _ in items]
        names.append(name)
    x = np.concatenate(vectors).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.array(labels), names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="ORL only")
    args = ap.parse_args()
    from verikit_faceapi.weights import NETWORKS, default_dir

    missing = [n[2] for n in NETWORKS.values() if not (default_dir() / n[2]).is_file()]
    if missing:
        print(f"skipped: {', '.join(missing)} not in {default_dir()}; run: python -m verikit_faceapi fetch")
        return
    x, labels, sets = real_descriptors(["orl"] if args.quick else ["orl", "yaleb"])
    n, d = x.shape
    _, counts = np.unique(labels, return_counts=True)
    per = int(round(float(np.mean(counts))))
    rows = {"real (dlib descriptor)": structure_stats(x, labels)}
    synth = Structured(d, per_identity=per)
    rows[f"structured (latent {synth.latent}, {per} per identity)"] = structure_stats(synth.templates(n),
                                                                                     synth.identities_of(n))
    rows["isotropic"] = structure_stats(isotropic(n, d, 0, centres=len(counts)))
    keys = ["pca_top8", "pca_top16", "pca_top32", "pca_top64", "lid_median", "relative_contrast",
            "nn_same_identity", "cosine_same_identity_median", "cosine_other_identity_median"]
    print(f"{n} vectors x {d}, {len(counts)} identities ({', '.join(sets)})")
    print(f"{'':44s}" + "".join(f"{k[:14]:>15s}" for k in keys))
    for name, r in rows.items():
        print(f"{name:44s}" + "".join(f"{r.get(k, float('nan')):>15.3g}" for k in keys))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("ann-data-quick.json" if args.quick else "ann-data.json")
    out.write_text(json.dumps({"sets": sets, "n": n, "dim": d, "identities": len(counts), "rows": rows}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
