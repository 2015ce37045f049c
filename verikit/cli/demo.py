"""``verikit demo``: the whole job end to end on the bundled ORL faces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DeviceOpt, FormatOpt, OutputFormat, QuietOpt, emit


def demo(
    data: Annotated[Path, typer.Option(help="ORL faces folder (s1..s40).")] = Path("data/orl_faces"),
    workdir: Annotated[Path, typer.Option(help="Where the model and gallery are written.")] = Path("demo-output"),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs (default 40).", show_default=False)] = None,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Train, calibrate, enroll, verify and search on real faces (AT&T/ORL), in a few minutes.

    Trains on people s1-s30 (a held-out part of them calibrates the threshold), enrolls s31-s40
    with 5 images each, then verifies and searches with their other 5 images. Nobody in the
    gallery was seen in training.
    """
    from ..demo import DemoSettings, run_demo
    from .train import run_with_progress

    settings = DemoSettings(data=data, workdir=workdir, device=device)
    if epochs is not None:
        settings.epochs = epochs
    summary = run_demo(settings, lambda data_dir, cfg, split: run_with_progress(data_dir, cfg, quiet, split))
    emit(summary.to_dict(), fmt, summary.render())
