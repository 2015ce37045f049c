"""``verikit pair-head train``: a learned same/different scorer on a frozen model's embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import EXIT_PARTIAL, DeviceOpt, FormatOpt, OutputFormat, QuietOpt, emit, progress_bar, warn

app = typer.Typer(help="A learned pair head (MLP on |a-b| and a*b) that `verify --scorer pair-head` uses.",
                  no_args_is_help=True)


@app.command()
def train(
    data_dir: Annotated[Path, typer.Argument(help="One sub-folder of images per identity.", show_default=False)],
    model: Annotated[Path, typer.Option("--model", "-m", envvar="VERIKIT_MODEL", help="Model directory (frozen).",
                                        show_default=False)],
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Identities held out to calibrate the "
                                                "threshold (0: none; verify then needs --threshold).")] = 0.3,
    target_fmr: Annotated[float, typer.Option(min=1e-9, max=1.0, help="False-match rate of the threshold.")] = 1e-2,
    hidden: Annotated[int, typer.Option(min=1, help="Hidden units of the MLP.")] = 64,
    steps: Annotated[int, typer.Option(min=1, help="Full-batch training steps.")] = 300,
    seed: Annotated[int, typer.Option()] = 0,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """Train a pair head on all pairs of the training identities, calibrate it on the held-out ones.

    The model is frozen: every image is embedded once. The head is saved next to the model
    (pair_head.safetensors + pair_head.json, bound to the model's fingerprint). Use identities
    the model was not trained on if you can: the model's own training embeddings are tighter
    than new people's. On ORL it did not beat the plain similarity (benchmarks/bench_pair_head.py).

    Example: verikit pair-head train data/val-people --model runs/m
    """
    from ..io import scan_identity_folders
    from ..models.embedder import Embedder
    from ..train.pair_head import PairHeadConfig, fit_pair_head

    net = Embedder.load(model, device=device)
    cfg = PairHeadConfig(hidden=hidden, steps=steps, val_fraction=val_fraction, target_fmr=target_fmr, seed=seed)
    total = len(scan_identity_folders(data_dir).items)
    with progress_bar(f"embedding {total} image(s)", total, quiet) as advance:
        saved, report = fit_pair_head(net, data_dir, cfg, progress=advance)
    for failure in report["failures"]:
        warn(f"skipped: {failure}")
    path = saved.save(model)
    data = {k: v for k, v in report.items() if k != "loss_history"} | {"saved": str(path)}
    if report["threshold"] is None:
        line = "no held-out identities: no threshold (verify --scorer pair-head needs --threshold)"
    else:
        line = (f"threshold {report['threshold']:.4f} at FMR {target_fmr:g}; held-out EER {report['val_eer']:.2%} "
                f"({report['val_genuine']} genuine / {report['val_impostor']} impostor pairs)")
    emit(data, fmt, f"trained on {report['train_identities']} identities ({report['train_images']} images); {line}\n"
                    f"saved {path}")
    if report["failures"]:
        raise typer.Exit(EXIT_PARTIAL)
