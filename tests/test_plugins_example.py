"""The documented example plugin, installed for real: entry-point discovery finds it, `verikit
plugins` lists it, `--detector center` works, its own tests pass; it is uninstalled afterwards.

pip installs it into this venv (offline: --no-deps --no-build-isolation), so the test runs the
same discovery path a user's plugin goes through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.test_cli import ok

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "verikit-example-plugin"
DIST = "verikit-example-plugin"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"],
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def installed_example():
    already = _pip("show", DIST).returncode == 0
    r = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(EXAMPLE))
    if r.returncode != 0:
        pytest.fail(f"pip install of the example plugin failed:\n{r.stdout}\n{r.stderr}")
    try:
        yield
    finally:
        if not already:
            _pip("uninstall", "-y", DIST)


def test_example_plugin_is_discovered_listed_and_usable(installed_example, tmp_path):
    rows = json.loads(ok("plugins", "-f", "json").stdout)
    row = next(r for r in rows if r["name"] == "center")
    assert row == {"kind": "detector", "name": "center", "distribution": DIST, "version": "0.1.0",
                   "target": "verikit_example_plugin:create", "status": "ok"}
    image = tmp_path / "img.png"
    Image.new("RGB", (200, 100)).save(image)
    (out,) = json.loads(ok("detect", image, "--detector", "center:0.5").stdout)
    assert out["detections"] == [{"box": [50.0, 25.0, 150.0, 75.0], "score": 1.0}]
    # VERIKIT_LOAD_PLUGINS without it: it is not loaded, and asking for it says what is installed.
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "detect", str(image), "--detector", "center"],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                          "VERIKIT_LOAD_PLUGINS": "verikit-haar"})
    assert r.returncode == 1 and "unknown detector 'center'" in r.stderr
    # The example's own tests (which call verikit.testing.check_detector) pass.
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                       capture_output=True, text=True, timeout=120, cwd=EXAMPLE)
    assert t.returncode == 0, t.stdout + t.stderr
