"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
# The real datasets live beside the project (../shared/data), never inside it.
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real datasets: $VERIKIT_DATA, else <repo>/../shared/data; skips when absent."""
    data = Path(os.environ.get("VERIKIT_DATA") or _DEFAULT_DATA).expanduser()
    if not data.is_dir():
        pytest.skip(f"real data not found at {data}; set VERIKIT_DATA")
    return data


REPO = Path(__file__).resolve().parents[1]
BUNDLED_ORL = REPO / "data" / "orl_faces"


@pytest.fixture(scope="session")
def orl() -> Path:
    """The ORL faces bundled with the project (always present in a clone)."""
    assert BUNDLED_ORL.is_dir(), "data/orl_faces is part of the repository"
    return BUNDLED_ORL


def make_pattern_image(path: Path, identity: int, variant: int, size: int = 48, mode: str = "RGB") -> Path:
    """A synthetic 'face': an identity-specific colour/stripe pattern plus per-image noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1000 * identity + variant)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([(np.sin(xx / (2 + identity) + c) * 0.5 + 0.5) * (60 + 40 * c) + identity * 17 % 255
                     for c in range(3)], axis=-1)
    img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).convert(mode).save(path)
    return path


def pattern_people(root: Path, people: int, images: int, size: int = 48) -> Path:
    """``root/id<i>/<k>.png``: ``people`` synthetic identities of ``images`` pattern images each."""
    for i in range(people):
        for k in range(images):
            make_pattern_image(root / f"id{i}" / f"{k}.png", i, k, size=size)
    return root


def tiny_train_command(people: Path) -> tuple[list[str], dict[str, str]]:
    """``verikit train`` on ``people`` with a 1-epoch test_resnet at 32 px grey (add --out and the
    options under test), and the environment to run it in: one thread, wide help."""
    import sys

    command = [sys.executable, "-m", "verikit.cli.main", "train", str(people), "--backbone", "timm:test_resnet",
               "--image-size", "32", "--channels", "1", "--epochs", "1", "--batch-size", "6", "--m-per-class", "2",
               "--embedding-size", "8", "--val-fraction", "0", "--device", "cpu", "--quiet"]
    return command, {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="session")
def synthetic_faces(tmp_path_factory) -> Path:
    """people/<idN>/<k>.png: 4 identities x 4 images, plus a non-image file to be skipped."""
    root = pattern_people(tmp_path_factory.mktemp("people"), 4, 4)
    (root / "id0" / "notes.info").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved random-weight model small enough for unit tests (timm's test_resnet, 32 px)."""
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    import torch
    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval()
    out = tmp_path_factory.mktemp("model")
    model.save(out)
    return out


@pytest.fixture()
def tiny_model(tiny_model_dir):
    from verikit.models.embedder import Embedder
    return Embedder.load(tiny_model_dir)
