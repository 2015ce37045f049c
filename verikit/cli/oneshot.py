"""``verikit benchmark oneshot``: N-way one-shot classification on runs in Lake's Omniglot layout.

Registered by the CLI's main module as a ``benchmark`` sub-command; the work is in
:mod:`verikit.evaluate.oneshot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import BatchOpt, DeviceOpt, FormatOpt, ModelOpt, OutputFormat, QuietOpt, emit, progress_bar


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"{result['name']}: {result['runs']} run(s), {result['trials']} queries, "
                    f"{result['way']}-way one-shot")
    t.add_column("run")
    t.add_column("accuracy", justify="right")
    for r in result["per_run"]:
        t.add_row(r["run"], f"{100 * r['accuracy']:.1f}%")
    lo, hi = result["bootstrap_ci"]
    wl, wh = result["wilson_ci"]
    t.caption = (f"mean accuracy {100 * result['mean_accuracy']:.2f}% (error {100 * result['mean_error']:.2f}%), "
                 f"95% bootstrap over runs [{100 * lo:.2f}%, {100 * hi:.2f}%], "
                 f"Wilson over queries [{100 * wl:.2f}%, {100 * wh:.2f}%]; similarity {result['similarity']}")
    return t


def oneshot(
    runs: Annotated[Path, typer.Argument(help="A run folder (training/, test/, class_labels.txt) or a folder of "
                                              "run folders.", show_default=False)],
    model: ModelOpt = None,
    pixels: Annotated[Optional[int], typer.Option(
        "--pixels", min=4, show_default=False,
        help="Score the raw-pixel baseline instead of a model: nearest neighbour on NxN grey pixels.")] = None,
    n_boot: Annotated[int, typer.Option("--bootstrap", min=1, help="Bootstrap replicates over runs.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    batch_size: BatchOpt = 64,
    device: DeviceOpt = "auto",
    fmt: FormatOpt = OutputFormat.table,
    quiet: QuietOpt = False,
) -> None:
    """N-way one-shot accuracy: each query takes the class of its most similar one-shot example.

    Reads Lake's Omniglot run layout (official runs, or runs written by
    verikit.evaluate.oneshot.make_runs). Accuracy is 1 - Lake's error averaged over runs; the
    95% interval is a percentile bootstrap over runs. Scores with the model's own similarity.

    Example: verikit benchmark oneshot all_runs/ --model runs/omniglot
    """
    from ..evaluate.oneshot import model_embed_fn, pixel_embed_fn, read_runs, score_runs
    from ..errors import DataError, ModelError

    parsed = read_runs(runs)
    if pixels is not None and model is not None:
        raise DataError("give --model or --pixels, not both")
    if pixels is not None:
        embed, similarity, name = pixel_embed_fn(pixels), "cosine", f"raw pixels {pixels}x{pixels}"
        result = score_runs(embed, parsed, similarity=similarity, n_boot=n_boot, seed=seed)
    else:
        if model is None:
            raise ModelError("no model given: pass --model DIR (or set VERIKIT_MODEL), or --pixels N")
        from ..models.embedder import Embedder

        net = Embedder.load(model, device=device)
        total = len({p for r in parsed for p in (*r.examples, *r.queries)})
        with progress_bar(f"embedding {total} file(s)", total, quiet) as advance:
            result = score_runs(model_embed_fn(net, batch_size=batch_size, progress=advance), parsed,
                                similarity=net.config.similarity, n_boot=n_boot, seed=seed)
        name = model.name
    data = {"name": name, "runs_folder": str(runs), "way": max(r.way for r in parsed), **result.to_dict()}
    emit(data, fmt, _table(data) if fmt is OutputFormat.table else None)
