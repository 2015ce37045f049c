"""Make ``reference_boxes.json``: face-api.js's own boxes, scores and landmarks on real photos.

The photos are decoded here, by verikit (``load_image``: the pixels verikit's detector sees), and
handed to face-api.js 1.7.15 running under Node.js (``make_reference.js``, TensorFlow.js's CPU
backend) as raw RGB, so the test compares the networks and their pre/post-processing, not two JPEG
decoders. Run once where Node.js and the npm registry are reachable (about 10 minutes on 2 cores):

    cd "$(mktemp -d)" && npm init -y >/dev/null && npm install @vladmandic/face-api@1.7.15 \\
        @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
    NODE_PATH=$PWD/node_modules VERIKIT_DATA=/path/to/shared/data \\
        python /path/to/make_reference.py     # rewrites reference_boxes.json next to this file
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from verikit.io import load_image

HERE = Path(__file__).resolve().parent
# A handful of real photos: crowded and single faces, landscape and portrait, large, colour and grey.
PHOTOS = ["dlib_faces/2008_002470.jpg", "dlib_faces/2008_004176.jpg", "dlib_faces/bald_guys.jpg",
          "fddb/originalPics/2002/07/28/big/img_416.jpg", "fddb/originalPics/2002/08/07/big/img_1393.jpg",
          "fddb/originalPics/2002/07/26/big/img_532.jpg", "fddb/originalPics/2002/08/19/big/img_588.jpg"]


def main() -> None:
    data = Path(os.environ["VERIKIT_DATA"])
    with tempfile.TemporaryDirectory() as tmp:
        listing = []
        for k, rel in enumerate(PHOTOS):
            image = load_image(data / rel)
            rgb = Path(tmp) / f"{k}.rgb"
            rgb.write_bytes(np.asarray(image, np.uint8).tobytes())
            listing.append({"path": rel, "width": image.width, "height": image.height, "rgb": str(rgb)})
        (Path(tmp) / "photos.json").write_text(json.dumps(listing))
        out = subprocess.run(["node", str(HERE / "make_reference.js"), str(Path(tmp) / "photos.json")],
                             check=True, capture_output=True, text=True).stdout
    doc = {"made_by": "tests/reference/make_reference.py (+ make_reference.js)", **json.loads(out)}
    lines = json.dumps(doc, separators=(",", ":"))
    (HERE / "reference_boxes.json").write_text(lines + "\n")
    print(f"wrote {HERE / 'reference_boxes.json'} ({len(lines):,} bytes)")


if __name__ == "__main__":
    main()
