"""``verikit model optimize``: the faster inference path for a trained model (ONNX Runtime)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import FormatOpt, OutputFormat, QuietOpt, emit, info, warn

app = typer.Typer(no_args_is_help=True, help="Work on a trained model directory: `verikit model optimize MODEL`.")


@app.command("optimize")
def optimize(
    model: Annotated[Path, typer.Argument(help="Model directory (from `verikit train`).", show_default=False)],
    images: Annotated[Optional[Path], typer.Option(
        "--images", show_default=False,
        help="A folder of your own photos to check the export on (a sample of them is used). "
             "Without it a synthetic sample is used, which checks the graph but not on real faces.")] = None,
    sample: Annotated[int, typer.Option("--sample", min=1, help="How many images to compare eager and ONNX on.")] = 64,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Batch size the two are timed at.")] = 32,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed runs of each (the median counts).")] = 5,
    min_speedup: Annotated[float, typer.Option(
        "--min-speedup", min=0.0, help="Record onnx as the default only when at least this many times eager.")] = 1.1,
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Export a model to ONNX, check its templates against eager PyTorch, time both, record the choice.

    Writes model-<sha>.onnx and inference.json into the model directory (config.json and
    model.safetensors are never touched). Every template of the sample must match eager PyTorch
    to a cosine of at least 0.9999, or nothing is written (exit 1). When ONNX Runtime measured
    faster on this machine, every command that loads the model uses it from then on; turn it off
    with `verikit --backend eager ...` or VERIKIT_BACKEND=eager. A changed model ignores its old
    export (with a warning) until this is run again. Needs onnxruntime and onnx (the extra named onnx).

    Example: verikit model optimize runs/face --images data/val
    """
    from ..models.optimize import optimize as run

    result = run(model, images, sample=sample, batch_size=batch_size, repeats=repeats, min_speedup=min_speedup,
                 log=None if quiet else info)
    if result.synthetic:
        warn("checked on a synthetic sample, not on photos: pass --images FOLDER to check on your own")
    if fmt is OutputFormat.json:
        emit(result.to_dict(), fmt)
        return
    from rich.table import Table

    from .display import safe_text

    table = Table(title="verikit model optimize", show_header=True)
    table.add_column("")
    table.add_column("eager PyTorch", justify="right")
    table.add_column("ONNX Runtime", justify="right")
    table.add_row("images/s", f"{result.eager_images_per_s:.1f}", f"{result.onnx_images_per_s:.1f}")
    table.add_row("speed-up", "1.00x", f"{result.speedup:.2f}x")
    table.add_row("smallest cosine vs eager", "", f"{result.min_cosine:.7f}")
    emit(None, fmt, table)
    emit(safe_text(f"backend: {result.backend} ({result.reason}); batch {result.batch_size}, "
                   f"{result.threads} threads, {result.sample_images} images from {result.sample_source}"), fmt)


class Backend(str, Enum):
    auto = "auto"
    eager = "eager"
    onnx = "onnx"


def root_options(
    ctx: typer.Context,
    backend: Annotated[Backend, typer.Option(
        "--backend", envvar="VERIKIT_BACKEND", case_sensitive=False,
        help="What runs a model's inference in every command: auto (its ONNX export when `verikit model "
             "optimize` recorded it faster and it matches the weights), eager (PyTorch), or onnx (the export, "
             "else an error).")] = Backend.auto,
) -> None:
    """The options before the command name (``verikit --backend eager enroll ...``)."""
    import os

    # The library reads $VERIKIT_BACKEND when a model is loaded (verikit.models.backend); set it for
    # this command only, so a process that runs several commands (tests, notebooks) is not left changed.
    previous = os.environ.get("VERIKIT_BACKEND")
    os.environ["VERIKIT_BACKEND"] = backend.value

    def restore() -> None:
        if previous is None:
            os.environ.pop("VERIKIT_BACKEND", None)
        else:
            os.environ["VERIKIT_BACKEND"] = previous
    ctx.call_on_close(restore)
