"""``verikit train``: train an embedder on a folder-per-identity dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import DeviceOpt, QuietOpt, err_console, info

LOSS_HELP = ("triplet (relative: d(a,n) - d(a,p) > margin), contrastive (Siamese: absolute margins), "
             "multi_similarity, or a proxy loss over identities: normalized_softmax, cosface, arcface.")
MINER_HELP = "batch_hard, semihard, hard, all, multi_similarity, none."


def parse_size(text: str) -> tuple[int, int]:
    """``"112"`` -> (112, 112); ``"112x96"`` -> (112, 96) as height x width."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"image size must be N or HxW, got {text!r}") from None
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 8:
        raise typer.BadParameter(f"image size must be N or HxW with sides >= 8, got {text!r}")
    return size  # type: ignore[return-value]


def train(
    data_dir: Annotated[Path, typer.Argument(help="One sub-folder of images per identity (any depth).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.", show_default=False)],
    backbone: Annotated[str, typer.Option(help="Backbone spec, e.g. timm:resnet18, timm:mobilenetv3_small_100.")] = "timm:resnet18",
    backbone_option: Annotated[Optional[list[str]], typer.Option(
        "--backbone-option", help="KEY=VALUE passed to the backbone factory (VALUE is JSON), e.g. "
                                  "channels=[32,64,128,256] for a narrow timm ResNet. Repeatable.",
        show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Pretrained backbone weights from a local file "
                                                         "(.safetensors or timm/torch checkpoint).", show_default=False)] = None,
    embedding_size: Annotated[int, typer.Option(min=2, help="Embedding dimension.")] = 128,
    pooling: Annotated[str, typer.Option(help="avg, gem or max pooling of the feature map.")] = "avg",
    image_size: Annotated[str, typer.Option(help="Input size N or HxW (height x width).")] = "112",
    channels: Annotated[int, typer.Option(min=1, max=3, help="3 = RGB, 1 = grey input.")] = 3,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: Annotated[int, typer.Option(min=2)] = 32,
    m_per_class: Annotated[int, typer.Option(min=2, help="Images per identity in every batch.")] = 4,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).")] = 1e-3,
    loss: Annotated[str, typer.Option(help=LOSS_HELP)] = "triplet",
    miner: Annotated[str, typer.Option(help=MINER_HELP)] = "batch_hard",
    margin: Annotated[Optional[float], typer.Option(help="Loss margin (cosine units; arcface: radians). "
                                                    "Default: the loss's own.", show_default=False)] = None,
    augment: Annotated[str, typer.Option(help="none, light or strong.")] = "light",
    keep: Annotated[str, typer.Option(help="Model to save: the 'last' epoch, or the 'best' validation EER "
                                           "(only trustworthy with many validation identities).")] = "last",
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9, help="Identities held out for validation EER.")] = 0.2,
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Train an embedding model with a metric-learning loss (pytorch-metric-learning).

    Batches hold --m-per-class images of each of several identities; the miner picks informative
    pairs/triplets; after every epoch the EER on held-out identities is measured and the best
    epoch is the one saved (config.json + model.safetensors in --out).

    Example: verikit train data/orl_faces --out runs/orl --backbone timm:resnet18 --epochs 20
    """
    from ..train.loop import TrainConfig, train as run_training

    opts = parse_options(backbone_option or [])
    if weights:
        opts["weights"] = str(weights)
    cfg = TrainConfig(backbone=backbone, backbone_options=opts, embedding_size=embedding_size, pooling=pooling,
                      image_size=parse_size(image_size), channels=channels, epochs=epochs, batch_size=batch_size,
                      m_per_class=m_per_class, lr=lr, loss=loss, miner=miner, margin=margin, augment=augment,
                      keep=keep, val_fraction=val_fraction, seed=seed, device=device, workers=workers)
    result = run_with_progress(data_dir, cfg, quiet)
    fp = result.model.save(out)
    eer = f"{result.kept_val_eer:.2%}" if result.kept_val_eer is not None else "n/a"
    info(f"saved {out} (fingerprint {fp[:12]}): epoch {result.kept_epoch}, validation EER {eer}")


def parse_options(pairs: list[str]) -> dict:
    """``["channels=[32,64]", "drop_rate=0.1"]`` -> ``{"channels": [32, 64], "drop_rate": 0.1}``."""
    import json

    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw  # a bare word is a string
    return out


def run_with_progress(data_dir: Path, cfg, quiet: bool, split=None):
    """Run the training loop with a rich progress bar (loss, throughput) and a line per epoch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..train.loop import train as run_training

    if quiet:
        return run_training(data_dir, cfg, split=split)
    if not err_console.is_terminal:  # logs get one line per epoch, no redrawn bars
        return run_training(data_dir, cfg, split=split, on_epoch=lambda r: info(_epoch_line(r)))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=err_console) as bar:
        task = bar.add_task("loading images", total=None, status="")

        def on_loaded(n: int) -> None:
            bar.advance(task, n)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            bar.update(task, description=f"epoch {epoch}/{cfg.epochs}", completed=step, total=steps,
                       status=f"loss {loss:.4f}")

        def on_epoch(r) -> None:
            bar.console.print(_epoch_line(r), highlight=False, markup=False)
            if r.epoch < cfg.epochs:
                bar.reset(task, description=f"epoch {r.epoch + 1}/{cfg.epochs}", status="")

        return run_training(data_dir, cfg, on_step=on_step, on_epoch=on_epoch, on_loaded=on_loaded, split=split)


def _epoch_line(r) -> str:
    val = f"val EER {r.val_eer:.2%}" if r.val_eer is not None else "no validation set"
    return f"epoch {r.epoch:>3}: loss {r.loss:.4f}  {val}  {r.images_per_s:.0f} img/s  {r.seconds:.1f}s"
