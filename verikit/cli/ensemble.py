"""``verikit ensemble``: several trained models saved as one that averages their scores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import out_console


def ensemble(
    out: Annotated[Path, typer.Argument(help="New model directory to write.", show_default=False)],
    models: Annotated[list[Path], typer.Option("--model", "-m", show_default=False,
                                               help="A member model directory; give two or more.")],
) -> None:
    """Combine trained models into one whose score is the mean of their cosine similarities.

    The members must read the same input (image size, channels, normalisation) and score with
    cosine similarity. The result is an ordinary model directory: enroll, verify, search,
    calibrate and benchmark use it like any other (it embeds each image once per member).

    Example: verikit ensemble runs/ens --model runs/seed0 --model runs/seed1
    """
    from ..errors import ModelError
    from ..models.embedder import CONFIG_FILE, Embedder
    from ..models.ensemble import build_ensemble

    if (out / CONFIG_FILE).exists():  # never overwrite a model (it may be one of the members)
        raise ModelError(f"'{out}' already holds a model; write the ensemble to a new directory")
    members = [Embedder.load(m) for m in models]
    model = build_ensemble(members)
    fingerprint = model.save(out)
    out_console.print(f"wrote {out}: ensemble of {len(members)} models, {model.embedding_size}-d templates, "
                      f"fingerprint {fingerprint[:12]}")
