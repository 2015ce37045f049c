"""``verikit train``: train an embedder on a folder-per-identity dataset.

Settings come in layers (later wins): built-in defaults, the config saved with the run being
resumed (``--resume``), ``--config FILE``, then the options typed on this command line. An option
therefore defaults to None here, meaning "not given": a value typed equal to the built-in default
still overrides the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import QuietOpt, err_console, info

LOSS_HELP = ("triplet (relative: d(a,n) - d(a,p) > margin), contrastive (Siamese: absolute margins), "
             "multi_similarity, ntxent, or a proxy loss over identities: normalized_softmax, cosface, arcface, "
             "subcenter_arcface, proxy_anchor.")
MINER_HELP = "batch_hard, semihard, hard, all, multi_similarity, pair_margin, none."


def parse_size(text: str) -> tuple[int, int]:
    """``"112"`` -> (112, 112); ``"112x96"`` -> (112, 96) as height x width."""
    from ..errors import DataError
    from ..train.config import parse_image_size

    try:
        return parse_image_size(text)
    except DataError as exc:
        raise typer.BadParameter(str(exc)) from None


def _opt(*names: str, default: str | None = None, **kwargs: Any) -> Any:
    """An option whose Python default is None ("not given") but whose help shows the real default."""
    return typer.Option(*names, show_default=default if default is not None else False, **kwargs)


def train(
    data_dir: Annotated[Path, typer.Argument(help="One sub-folder of images per identity (any depth).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write (checkpoint/, train_log.csv, "
                                                          "tensorboard/ and train_config.json go there too).",
                                      show_default=False)],
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML or JSON file of settings (keys as in "
                                                   "train_config.json); options given here override it.",
                                                   show_default=False)] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoint after the last completed "
                                         "epoch, with the settings saved there (options given here override).")] = False,
    backbone: Annotated[Optional[str], _opt(default="timm:resnet18", help="Backbone spec, e.g. timm:resnet18, "
                                            "timm:mobilenetv3_small_100.")] = None,
    backbone_option: Annotated[Optional[list[str]], typer.Option(
        "--backbone-option", help="KEY=VALUE passed to the backbone factory (VALUE is JSON), e.g. "
                                  "channels=[32,64,128,256] for a narrow timm ResNet. Repeatable.",
        show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Pretrained backbone weights from a local file "
                                                         "(.safetensors or timm/torch checkpoint).", show_default=False)] = None,
    embedding_size: Annotated[Optional[int], _opt(default="128", min=2, help="Embedding dimension.")] = None,
    pooling: Annotated[Optional[str], _opt(default="avg", help="avg, gem or max pooling of the feature map.")] = None,
    neck: Annotated[Optional[str], _opt(default="linear", help="Embedding neck: linear (after pooling) or conv1x1 "
                                                               "(a 1x1 convolution before pooling).")] = None,
    image_size: Annotated[Optional[str], _opt(default="112", help="Input size N or HxW (height x width).")] = None,
    channels: Annotated[Optional[int], _opt(default="3", min=1, max=3, help="3 = RGB, 1 = grey input.")] = None,
    epochs: Annotated[Optional[int], _opt(default="20", min=1)] = None,
    batch_size: Annotated[Optional[int], _opt(default="32", min=2, help="Global batch (split between "
                                              "processes under torchrun).")] = None,
    m_per_class: Annotated[Optional[int], _opt(default="4", min=2, help="Images per identity in every batch.")] = None,
    optimizer: Annotated[Optional[str], _opt(default="adamw", help="adamw or sgd (Nesterov momentum 0.9).")] = None,
    lr: Annotated[Optional[float], _opt(default="1e-3", help="Peak learning rate (warm-up then cosine).")] = None,
    weight_decay: Annotated[Optional[float], _opt(default="5e-4", min=0.0)] = None,
    warmup_epochs: Annotated[Optional[int], _opt(default="1", min=0)] = None,
    backbone_lr_scale: Annotated[Optional[float], _opt(default="1.0", min=0.0, help="Backbone learning rate as a "
                                                       "fraction of --lr, e.g. 0.1 when fine-tuning pretrained weights.")] = None,
    freeze_epochs: Annotated[Optional[int], _opt(default="0", min=0, help="Train only the head for the first N "
                                                 "epochs (backbone frozen), then everything.")] = None,
    gradual_unfreeze: Annotated[Optional[int], _opt(default="0", min=0, help="After --freeze-epochs, unfreeze the "
                                                    "backbone one stage every N epochs, top stage first (timm's own "
                                                    "stage grouping); 0 = all at once.")] = None,
    freeze_batchnorm: Annotated[Optional[bool], typer.Option(
        "--freeze-batchnorm/--train-batchnorm", show_default=False,
        help="Batch-norm layers keep their running statistics (useful for small batches on a pretrained "
             "backbone). Default: train them.")] = None,
    clip_grad_norm: Annotated[Optional[float], _opt(default="5.0", min=0.0, help="Clip the gradient norm; 0 = off.")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", show_default=False,
                                                help="Mixed precision (float16) on CUDA; ignored on CPU. Default: on.")] = None,
    loss: Annotated[Optional[str], _opt(default="triplet", help=LOSS_HELP)] = None,
    miner: Annotated[Optional[str], _opt(default="batch_hard", help=MINER_HELP)] = None,
    distance: Annotated[Optional[str], _opt(default="cosine", help="Measure the loss and miner use, recorded in the "
                                            "model so the gallery scores with it: cosine, dot, l2, squared_l2, l1, "
                                            "rbf[:sigma].")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Loss margin (cosine units; arcface: radians). "
                                                    "Default: the loss's own.", show_default=False)] = None,
    augment: Annotated[Optional[str], _opt(default="light", help="none, light, strong (faces, objects: crops, flips, "
                                                        "rotation, brightness/contrast) or affine (handwriting: "
                                                        "small distortions, no flips).")] = None,
    equalize: Annotated[Optional[str], _opt(default="none", help="Photometric normalisation saved in the model and "
                                            "applied at training and inference, after resize/grey and before "
                                            "augmentation: none or histogram (global histogram equalisation; per "
                                            "channel for RGB). Meant for uneven lighting; see docs/training.md.")] = None,
    embed_from: Annotated[Optional[str], _opt(default="neck", help="Layer the saved model's templates come from: "
                                              "neck (the trained embedding) or pooled (the backbone's pooled "
                                              "features under it; the loss still trains the neck). See "
                                              "docs/training.md.")] = None,
    tta: Annotated[Optional[str], _opt(default="auto", help="Test-time augmentation saved in the model: hflip "
                                       "embeds each image with its mirror image and averages (about 2x the "
                                       "inference cost), none, or auto (hflip when --augment flips images: light, "
                                       "strong).")] = None,
    keep: Annotated[Optional[str], _opt(default="last", help="Model to save: the 'last' epoch, or the 'best' "
                                        "validation EER (only trustworthy with many validation identities).")] = None,
    patience: Annotated[Optional[int], _opt(default="0", min=0, help="Stop after N epochs without a better "
                                            "validation EER; 0 = never.")] = None,
    val_fraction: Annotated[Optional[float], _opt(default="0.2", min=0.0, max=0.9,
                                                  help="Identities held out for validation EER.")] = None,
    seed: Annotated[Optional[int], _opt(default="0")] = None,
    workers: Annotated[Optional[int], _opt(default="0", min=0, help="DataLoader worker processes.")] = None,
    device: Annotated[Optional[str], _opt("--device", default="auto",
                                          help="cpu, cuda, cuda:N, or auto (CUDA when present).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train an embedding model with a metric-learning loss (pytorch-metric-learning).

    Batches hold --m-per-class images of each of several identities; the miner picks informative
    pairs/triplets; after every epoch the EER and TAR@FAR on held-out identities are measured, a
    checkpoint is written, and the kept epoch is saved (config.json + model.safetensors in --out).
    Data-parallel: run the same command under torchrun (e.g. torchrun --nproc_per_node 2 -m
    verikit.cli.main train ...).

    Example: verikit train data/orl_faces --out runs/orl --backbone timm:resnet18 --epochs 20
    """
    given = {k: v for k, v in locals().items() if v is not None and k in _CONFIG_OPTIONS}
    if image_size is not None:
        given["image_size"] = parse_size(image_size)
    cfg = resolve_config(out, config, resume, given, parse_options(backbone_option or []), weights)
    result = run_with_progress(data_dir, cfg, quiet, out_dir=out, resume=resume)
    if result.rank != 0:  # under torchrun the other processes leave saving and reporting to rank 0
        return
    fp = result.model.save(out)
    eer = f"{result.kept_val_eer:.2%}" if result.kept_val_eer is not None else "n/a"
    stop = " (stopped early)" if result.stopped_early else ""
    info(f"saved {out} (fingerprint {fp[:12]}): epoch {result.kept_epoch}{stop}, validation EER {eer}")


# CLI parameters that are TrainConfig fields of the same name (image_size and the backbone
# options are converted first).
_CONFIG_OPTIONS = ("backbone", "embedding_size", "pooling", "neck", "channels", "epochs", "batch_size", "m_per_class",
                   "optimizer", "lr", "weight_decay", "warmup_epochs", "backbone_lr_scale", "freeze_epochs",
                   "gradual_unfreeze", "freeze_batchnorm", "clip_grad_norm", "amp", "loss", "miner", "distance",
                   "margin", "augment", "equalize", "embed_from", "tta", "keep", "patience", "val_fraction", "seed",
                   "workers", "device")


def resolve_config(out: Path, config_file: Path | None, resume: bool, given: dict, backbone_options: dict,
                   weights: Path | None):
    """The TrainConfig from its layers: defaults < resumed run's config < --config file < options given."""
    from ..train.checkpoint import load_checkpoint
    from ..train.config import config_from_dict, merge_layers, read_config_file

    layers: list[tuple[dict, str, str]] = []   # (settings, where they came from, what they are)
    if resume:  # the settings the interrupted run used, so `--resume` alone continues it
        layers.append((load_checkpoint(out).progress.get("config", {}), str(Path(out) / "checkpoint"),
                       "the interrupted run's training config in"))
    if config_file is not None:
        layers.append((read_config_file(config_file), str(config_file), "training config"))
    options = dict(backbone_options)
    if weights:
        options["weights"] = str(weights)
    layers.append(({**given, **({"backbone_options": options} if options else {})}, "", "option"))
    for layer, source, what in layers:  # each layer checked on its own, so an error names its source
        # Command-line values are named by their flag (--loss), file values by their key.
        config_from_dict(layer, source=source, what=what, label=None if source else _flag)
    return config_from_dict(merge_layers(*(layer for layer, _, _ in layers)), what="the resolved training settings")


def _flag(field: str) -> str:
    """A TrainConfig field as the option that sets it (backbone_options.x: --backbone-option x=...)."""
    if field.startswith("backbone_options"):
        return "--backbone-option"
    return "--" + field.split(".")[0].split("[")[0].replace("_", "-")


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


def run_with_progress(data_dir: Path, cfg, quiet: bool, split=None, out_dir: Path | None = None, resume: bool = False):
    """Run the training loop with a rich progress bar (loss, throughput) and a line per epoch."""
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..train.loop import train as run_training

    def run(**callbacks):
        return run_training(data_dir, cfg, split=split, out_dir=out_dir, resume=resume, **callbacks)

    if quiet or os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return run()
    if not err_console.is_terminal:  # logs get one line per epoch, no redrawn bars
        return run(on_epoch=lambda r: info(_epoch_line(r)))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=err_console) as bar:
        task = bar.add_task("loading images", total=None, status="")

        def on_loaded(n: int) -> None:
            bar.advance(task, n)

        def on_step(epoch: int, step: int, steps: int, loss: float, images_per_s: float) -> None:
            bar.update(task, description=f"epoch {epoch}/{cfg.epochs}", completed=step, total=steps,
                       status=f"loss {loss:.4f}  {images_per_s:.0f} img/s")

        def on_epoch(r) -> None:
            bar.console.print(_epoch_line(r), highlight=False, markup=False)
            if r.epoch < cfg.epochs:
                bar.reset(task, description=f"epoch {r.epoch + 1}/{cfg.epochs}", status="")

        return run(on_step=on_step, on_epoch=on_epoch, on_loaded=on_loaded)


def _epoch_line(r) -> str:
    if r.val_eer is None:
        val = "no validation set"
    else:
        val = (f"val EER {r.val_eer:.2%}  TAR@FAR=1e-2 {r.val_tar_at_far_1e_2:.2%}  "
               f"TAR@FAR=1e-3 {r.val_tar_at_far_1e_3:.2%}")
    return f"epoch {r.epoch:>3}: loss {r.loss:.4f}  {val}  {r.images_per_s:.0f} img/s  {r.seconds:.1f}s"
