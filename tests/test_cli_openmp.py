"""The CLI makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) before torch loads, unless the
user chose a policy: several verikit processes usually share the cores (see verikit/cli/main.py)."""

import os
import subprocess
import sys

CODE = ("import verikit.cli.main, os, torch; "
        "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads() >= 1)")


def _run(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_cli_sets_passive_wait_policy_by_default():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _run(env) == "PASSIVE True"


def test_an_explicit_policy_is_kept():
    assert _run({**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE True"
