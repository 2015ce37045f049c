"""Embedding backend: verikit's inference path (ONNX Runtime after ``verikit model optimize``)
against plain eager timm on the same batch of real photos.

For each model (resnet18 at 112 px, the demo's; a MobileNetV3 from the ``mobilenet`` backbone
plugin), random weights with a fixed seed (speed does not depend on the values; equality is
checked on them):

1. the model is saved and ``verikit.models.optimize.optimize`` exports and records it, checked on
   the same real photos;
2. the photos are decoded and preprocessed once (untimed) into one tensor;
3. per batch size, the baseline (the model loaded with ``backend="eager"``: timm's forward under
   ``torch.inference_mode``) and verikit's default path (the model loaded as every command loads
   it, run through ``verikit.models.backend.run_network``) embed the same batches, timed
   interleaved (median of ``--repeats`` passes over all images, after a warm-up), so both see the
   same load on a shared machine;
4. reported: images/s of each, the ratio, and max |1 - cosine| over every image.

``--candidates cl,jit,bf16,compile`` adds the other inference paths considered (channels-last,
TorchScript trace + freeze, bf16 autocast, ``torch.compile``) to the same table: the measurement
that chose ONNX Runtime. Target (issue 12): ratio >= 1.5 with max |1 - cos| <= 1e-4.

Run: ``flock /work/wt/bench.lock .venv/bin/python benchmarks/bench_embed_backend.py [--quick]``.
Writes benchmarks/results/embed_backend.json (``--quick``: embed_backend-quick.json).
Photos come from $VERIKIT_DATA/orl_faces and dlib_faces (default ../shared/data), else the bundled ORL.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

# Eager PyTorch runs here as it runs under the verikit CLI: idle OpenMP threads sleep instead of
# spinning (verikit/cli/main.py; ONNX Runtime's spinning is off too). Spinning eager threads on a
# shared machine would handicap the baseline. Set before torch is first imported below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(REPO))

from verikit.image_input import to_image  # noqa: E402
from verikit.io import list_images  # noqa: E402
from verikit.models.backend import run_network  # noqa: E402
from verikit.models.embedder import Embedder  # noqa: E402
from verikit.models.optimize import compare, optimize  # noqa: E402
from verikit.models.preprocess import to_tensor_transform  # noqa: E402
from verikit.structures import InputSpec  # noqa: E402

MODELS = {"resnet18": "timm:resnet18", "mobilenetv3": "mobilenet:mobilenetv3_large_100"}


def photo_folder(n: int) -> tuple[Path, list[Path], list[str]]:
    """``n`` real photos, spread evenly over grey ORL and colour dlib faces when present; a folder
    holding exactly them (links) for ``optimize``; and the source folders."""
    data = Path(os.environ.get("VERIKIT_DATA") or REPO.parent / "shared" / "data")
    sources = [s for s in (data / "orl_faces", data / "dlib_faces") if s.is_dir()] or [REPO / "data" / "orl_faces"]
    per = -(-n // len(sources))
    found = [list_images(source)[0] for source in sources]
    files = []
    for photos in found:
        files += photos[:: max(1, len(photos) // per)][:per]
    for photos in found:  # a small source (dlib_faces holds a few photos): top up from the others
        files += [f for f in photos if f not in set(files)][:max(0, n - len(files))]
    files = files[:n]
    if len(files) < n:
        raise SystemExit(f"need {n} real photos under {data}/orl_faces and dlib_faces (or data/orl_faces)")
    folder = Path(tempfile.mkdtemp(prefix="bench-photos-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for i, f in enumerate(files):
        (folder / f"{i:04d}{f.suffix}").symlink_to(f.resolve())
    return folder, files, [str(s) for s in sources]


def candidates(model: Embedder, names: list[str], example: torch.Tensor) -> dict[str, Callable[[torch.Tensor], Any]]:
    """The other inference paths considered, each a batch -> embeddings function."""
    out: dict[str, Callable[[torch.Tensor], Any]] = {}
    if "cl" in names:
        cl = Embedder.from_config(model.config)
        cl.load_state_dict(model.state_dict())
        cl = cl.eval().to(memory_format=torch.channels_last)
        out["channels_last"] = lambda x: cl(x.contiguous(memory_format=torch.channels_last))
    if "jit" in names:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frozen = torch.jit.optimize_for_inference(torch.jit.trace(model, example))
        out["jit_frozen"] = frozen
    if "bf16" in names:
        def bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return model(x).float()
        out["bf16"] = bf16
    if "compile" in names:
        out["torch_compile"] = torch.compile(model, dynamic=False)
    return out


def embed_all(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, batch: int) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([np.asarray(fn(x[s:s + batch]), dtype=np.float32) for s in range(0, len(x), batch)])


def bench_model(name: str, spec: str, folder: Path, files: list[Path], sizes: list[int], repeats: int,
                extra: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    torch.manual_seed(0)
    Embedder.build(spec, input_spec=InputSpec(size=(112, 112))).eval().save(work)
    t = time.perf_counter()
    opt = optimize(work, folder, sample=len(files), batch_size=32, repeats=repeats, min_speedup=1.1)
    optimize_s = time.perf_counter() - t
    eager = Embedder.load(work, backend="eager")
    fast = Embedder.load(work)  # as every command loads it: the recorded backend
    transform = to_tensor_transform(eager.input_spec)
    x = torch.stack([transform(to_image(f)) for f in files])  # decoded once, untimed
    runners: dict[str, Callable[[torch.Tensor], Any]] = {"eager": eager, "verikit": lambda b: run_network(fast, b)}
    runners.update(candidates(eager, extra, x[:8]))
    rows = []
    for batch in sizes:
        ref = embed_all(eager, x, batch)
        times: dict[str, list[float]] = {k: [] for k in runners}
        devs = {}
        for k, fn in runners.items():  # warm-up (and torch.compile's compilation), and the equality check
            cos, _ = compare(ref, embed_all(fn, x, batch))
            devs[k] = 1.0 - cos
        for _ in range(repeats):
            for k, fn in runners.items():
                t = time.perf_counter()
                embed_all(fn, x, batch)
                times[k].append(time.perf_counter() - t)
        ips = {k: len(x) / statistics.median(v) for k, v in times.items()}
        row = {"batch_size": batch, "images": len(x),
               "eager_images_per_s": round(ips["eager"], 1), "verikit_images_per_s": round(ips["verikit"], 1),
               "ratio": round(ips["verikit"] / ips["eager"], 3), "max_abs_1_minus_cos": float(f"{devs['verikit']:.3e}")}
        for k in runners:
            if k not in ("eager", "verikit"):
                row[k] = {"images_per_s": round(ips[k], 1), "ratio": round(ips[k] / ips["eager"], 3),
                          "max_abs_1_minus_cos": float(f"{devs[k]:.3e}")}
        rows.append(row)
        print(f"{name:12s} batch {batch:3d}: eager {ips['eager']:8.1f} img/s  verikit[{fast.backend}] "
              f"{ips['verikit']:8.1f} img/s  ratio {row['ratio']:5.2f}x  max|1-cos| {devs['verikit']:.1e}"
              + "".join(f"  {k} {v['ratio']:.2f}x ({v['max_abs_1_minus_cos']:.0e})" for k, v in row.items()
                        if isinstance(v, dict)), flush=True)
    return {"model": name, "backbone": spec, "image_size": 112, "verikit_backend": fast.backend,
            "optimize": {**opt.to_dict(), "seconds": round(optimize_s, 1)}, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="resnet18 only, batch sizes 1 and 8, 16 photos, 3 repeats")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--batch-sizes", default="1,8,32,64")
    ap.add_argument("--images", type=int, default=64, help="real photos embedded per pass")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--candidates", default="", help="also time: cl, jit, bf16, compile (comma-separated)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.quick:
        args.models, args.batch_sizes, args.images, args.repeats = "resnet18", "1,8", 16, 3
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    folder, files, sources = photo_folder(args.images)
    load_before = os.getloadavg()
    results = [bench_model(m, MODELS[m], folder, files, sizes, args.repeats,
                           [c for c in args.candidates.split(",") if c]) for m in names]
    import onnxruntime
    out = {"benchmark": "embed_backend", "quick": args.quick, "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "platform": platform.platform(),
           "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "photos": {"count": len(files), "from": sources}, "models": results,
           "target": "ratio >= 1.5 with max|1-cos| <= 1e-4"}
    path = args.out or RESULTS / ("embed_backend-quick.json" if args.quick else "embed_backend.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    worst = min(r["ratio"] for m in results for r in m["rows"])
    dev = max(r["max_abs_1_minus_cos"] for m in results for r in m["rows"])
    print(f"smallest ratio {worst:.2f}x (target >= 1.5), largest |1-cos| {dev:.1e}; wrote {path}")


if __name__ == "__main__":
    main()
