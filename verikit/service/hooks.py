"""Named points inside service operations where a test can stop a real process on a signal.

With ``VERIKIT_TEST_HOOK=NAME`` in the environment, reaching checkpoint NAME prints
``VERIKIT-HOOK NAME`` on stderr and then waits: until the file named by ``VERIKIT_TEST_HOOK_RELEASE``
exists (then carries on), or forever when that variable is unset (the test kills the process).
Tests thus kill or release on a line the process printed, never after a guessed delay. Without
the variable a checkpoint costs one dictionary look-up.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

POINTS = ("enroll_before_commit", "enroll_after_commit", "request_started")


def checkpoint(name: str) -> None:
    if os.environ.get("VERIKIT_TEST_HOOK") != name:
        return
    sys.stderr.write(f"VERIKIT-HOOK {name}\n")
    sys.stderr.flush()
    release = os.environ.get("VERIKIT_TEST_HOOK_RELEASE")
    if not release:
        threading.Event().wait()  # until killed
    while not Path(release).exists():  # the test creates the file after it has done its part
        time.sleep(0.01)
