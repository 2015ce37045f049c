"""``verikit model optimize``: export a saved model to ONNX, check it, time it, record the choice.

The export is used only when it earns it, on this machine and on the user's own images:

1. the model is loaded eagerly on the CPU and exported (:mod:`verikit.models.onnx_backend`);
2. a sample of images (``images``: a folder of the user's photos; else a synthetic sample, said
   so in the result) goes through both; every template must agree with eager PyTorch's to a
   cosine of at least :data:`~verikit.models.backend.MIN_COSINE`, or nothing is written and a
   one-line error says by how much they differ;
3. the same batch is timed through both, interleaved (median of ``repeats``), so both see the
   same machine load;
4. ``model-<sha>.onnx`` then ``inference.json`` are written atomically. The record is the commit
   point: until it is replaced the previous record (and the export it names) still holds, and a
   crash in between leaves at worst an unused file. ``config.json`` and ``model.safetensors`` are
   never touched. The recorded backend is ``onnx`` only when it measured at least
   ``min_speedup`` times eager; otherwise ``eager`` is recorded (the export stays for
   ``--backend onnx``).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..atomic import write_atomic
from ..errors import DataError, ModelError
from .backend import (MIN_COSINE, ONNX_NAME, RECORD_FILE, RECORD_VERSION, InferenceRecord, Measurement, run_network,
                      sha256_hex)
from .embedder import Embedder
from .preprocess import to_tensor_transform

SYNTHETIC = "synthetic (no --images given: random and drawn images, not photos; pass a folder of your own)"


@dataclass(frozen=True)
class Optimized:
    """What ``optimize`` measured and wrote."""

    model: str
    backend: str                 # the recorded choice: "onnx" or "eager"
    reason: str
    onnx_file: str
    speedup: float
    eager_images_per_s: float
    onnx_images_per_s: float
    batch_size: int
    min_cosine: float
    max_abs_diff: float
    sample_images: int
    sample_source: str
    synthetic: bool
    threads: int
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sample_files(folder: Path, n: int) -> list[Path]:
    from ..io import list_images

    files, _ = list_images(folder)
    if not files:
        raise DataError(f"--images '{folder}' holds no image files to check the export on")
    step = max(1, len(files) // n)  # spread over the folder (identities are usually sub-folders)
    return files[::step][:n]


def _synthetic(n: int) -> list[Any]:
    """Seeded random and drawn images: a fallback that exercises the graph, not a photo check."""
    from PIL import Image

    from ..testing import synthetic_images

    rng = np.random.default_rng(0)
    out = list(synthetic_images())
    while len(out) < n:
        h, w = rng.integers(48, 160, size=2)
        low = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)  # smooth blobs, like a photo's
        out.append(Image.fromarray(low).resize((int(w), int(h)), Image.BILINEAR))
    return out[:n]


def sample_batch(model: Embedder, files: list[Path] | None, n: int) -> torch.Tensor:
    """The model's input for ``files`` (unreadable ones left out), or for ``n`` synthetic images."""
    from ..image_input import to_image

    transform = to_tensor_transform(model.input_spec)
    if files is None:
        return torch.stack([transform(to_image(im)) for im in _synthetic(n)])
    tensors = []
    for f in files:
        try:
            tensors.append(transform(to_image(f)))
        except Exception:  # an unreadable file is not the export's problem: use the others
            continue
    if not tensors:
        raise DataError(f"--images '{files[0].parent}': none of the sampled files could be read as an image")
    return torch.stack(tensors)


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(smallest row cosine, largest absolute difference) between two embedding matrices."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / np.maximum(np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1), 1e-12)
    return float(cos.min()), float(np.abs(a64 - b64).max())


def time_both(eager: Callable[[], Any], fast: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Median seconds of each, measured interleaved (after one warm-up each) so load hits both alike."""
    eager(), fast()
    times: dict[Callable[[], Any], list[float]] = {eager: [], fast: []}
    for _ in range(repeats):
        for fn, seen in times.items():
            start = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - start)
    return statistics.median(times[eager]), statistics.median(times[fast])


def optimize(directory: str | Path, images: str | Path | None = None, *, sample: int = 64, batch_size: int = 32,
             repeats: int = 5, min_speedup: float = 1.1, log: Callable[[str], None] | None = None) -> Optimized:
    """Export the model in ``directory`` to ONNX, check and time it against eager, record the choice."""
    from .onnx_backend import OPSET, OnnxRunner, export, missing, versions

    say = log or (lambda _msg: None)
    if sample < 1 or batch_size < 1 or repeats < 1:
        raise DataError("--sample, --batch-size and --repeats must be at least 1")
    reason = missing()
    if reason:
        raise ModelError(reason)
    directory = Path(directory)
    files = None if images is None else _sample_files(Path(images), sample)  # a bad folder fails before the model loads
    model = Embedder.load(directory, device="cpu", backend="eager")
    x = sample_batch(model, files, sample)
    source = SYNTHETIC if images is None else str(images)
    synthetic = images is None
    say(f"exporting {model.config.backbone} to ONNX (opset {OPSET})")
    data = export(model, x[:2])
    runner = OnnxRunner(data)

    with torch.inference_mode():
        ref = np.concatenate([model(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)])
    got = np.concatenate([runner.run(x[i:i + batch_size].numpy()) for i in range(0, len(x), batch_size)])
    min_cos, max_diff = compare(ref, got)
    if not min_cos >= MIN_COSINE:  # `not >=`: a NaN cosine fails too
        raise ModelError(f"the ONNX export of '{directory}' differs from eager PyTorch (smallest cosine {min_cos:.6f} "
                         f"< {MIN_COSINE} on {len(x)} images); nothing written, the model stays on eager")

    batch = x[:batch_size]
    say(f"timing eager and onnx on a batch of {len(batch)} ({repeats} runs each, {torch.get_num_threads()} threads)")

    def eager() -> Any:  # as verikit runs it eagerly (channels-last on the CPU: .memory_format)
        with torch.inference_mode():
            return run_network(model, batch)

    t_eager, t_onnx = time_both(eager, lambda: runner.run(batch.numpy()), repeats)
    speedup = t_eager / t_onnx
    chosen = "onnx" if speedup >= min_speedup else "eager"
    why = (f"onnx measured {speedup:.2f}x eager (>= {min_speedup})" if chosen == "onnx"
           else f"onnx measured {speedup:.2f}x eager (< {min_speedup}): eager stays the default")

    digest = sha256_hex(data)
    name = f"model-{digest[:16]}.onnx"
    assert ONNX_NAME.fullmatch(name)
    measured = Measurement(batch_size=len(batch), eager_images_per_s=len(batch) / t_eager,
                           onnx_images_per_s=len(batch) / t_onnx, speedup=speedup, threads=runner.threads,
                           sample_images=len(x), sample_source=source, min_cosine=min_cos, max_abs_diff=max_diff)
    vers = versions()
    record = InferenceRecord(format_version=RECORD_VERSION, backend=chosen, model_fingerprint=model.fingerprint,
                             onnx_file=name, onnx_sha256=digest, opset=OPSET, measured=measured, versions=vers,
                             machine={"platform": platform.platform(), "processor": platform.processor(),
                                      "cpu_count": os.cpu_count()},
                             written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    try:  # the export first, then the record that names it: a failure between leaves the old record valid
        write_atomic(directory / name, data)
        write_atomic(directory / RECORD_FILE, record.model_dump_json(indent=2) + "\n")
    except OSError as exc:
        raise ModelError(f"cannot write the ONNX export into '{directory}': {exc.strerror or exc}") from exc
    for old in directory.glob("model-*.onnx"):  # exports no record names any more
        if old.name != name and ONNX_NAME.fullmatch(old.name):
            old.unlink(missing_ok=True)
    return Optimized(model=str(directory), backend=chosen, reason=why, onnx_file=name, speedup=round(speedup, 3),
                     eager_images_per_s=round(measured.eager_images_per_s, 2),
                     onnx_images_per_s=round(measured.onnx_images_per_s, 2), batch_size=len(batch),
                     min_cosine=min_cos, max_abs_diff=max_diff, sample_images=len(x), sample_source=source,
                     synthetic=synthetic, threads=runner.threads, versions=vers)
