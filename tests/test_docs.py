"""The documentation's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_python_api_example_runs(tmp_path):
    text = (REPO / "docs" / "python-api.md").read_text()
    example = re.search(r"## A complete example.*?```python\n(.*?)```", text, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(example)
    r = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ})
    assert r.returncode == 0, r.stderr
    assert "'s31': 5" in r.stdout and "refused:" in r.stdout
