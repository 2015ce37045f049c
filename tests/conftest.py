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
