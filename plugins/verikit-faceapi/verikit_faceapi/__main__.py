"""``python -m verikit_faceapi``: get the pretrained weights, or write a ready-to-use verikit model.

  fetch [--dir D]            download the pinned npm package, check it, convert both networks
  convert MODEL_DIR [--dir D]  the same from an unpacked package's model/ folder (offline)
  model OUT [--weights F]    a verikit model directory scoring with dlib's descriptor (mirror-averaged)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from verikit.plugin_api import VerikitError

    ap = argparse.ArgumentParser(prog="python -m verikit_faceapi", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download and convert the pretrained weights")
    f.add_argument("--dir", type=Path, default=None, help="where to write them (default $VERIKIT_FACEAPI_DIR "
                                                         "or ~/.cache/verikit/faceapi)")
    c = sub.add_parser("convert", help="convert an unpacked @vladmandic/face-api package's model/ folder")
    c.add_argument("model_dir", type=Path)
    c.add_argument("--dir", type=Path, default=None)
    m = sub.add_parser("model", help="write a verikit model directory using dlib's descriptor as the template")
    m.add_argument("out", type=Path)
    m.add_argument("--weights", default=None, help="dlib_resnet.safetensors (default: the fetched one)")
    m.add_argument("--no-mirror", action="store_true", help="single view (default: mirror-averaged templates)")
    args = ap.parse_args(argv)
    try:
        if args.command == "model":
            from .model import write_model

            write_model(args.out, weights=args.weights, mirror=not args.no_mirror)
            print(f"wrote {args.out} (enroll/verify with: --detector faceapi --crop-margin 0.25)")
            return 0
        from .weights import convert, fetch

        written = fetch(args.dir) if args.command == "fetch" else convert(args.model_dir, args.dir)
        for path in written:
            print(f"wrote {path}")
        return 0
    except VerikitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
