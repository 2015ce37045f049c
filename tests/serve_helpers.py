"""A ``verikit serve`` process for tests: started as a real subprocess on 127.0.0.1 (port 0), waited
for on its ``listening on`` line, never on a delay; its stderr is read continuously so that tests
can wait for further lines (hook markers, shutdown)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTUP_TIMEOUT = 300  # an upper bound for a loaded 2-core machine, not a synchronisation delay


class ServerProcess:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "verikit.cli.main", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        line = self.wait_for(r"listening on (http://\S+)")
        self.url = re.search(r"listening on (http://\S+)", line).group(1)

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """The first line matching ``pattern``; fails when the process exits or ``timeout`` passes first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not any(rx.search(l) for l in self.lines):
                    raise AssertionError(f"server exited ({self.proc.returncode}) before {pattern!r}:\n"
                                         + "\n".join(self.lines[-30:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} from the server:\n" + "\n".join(self.lines[-30:]))
                self._changed.wait(min(left, 1.0))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)


def make_gallery(model_dir: Path, people: Path, gallery: Path) -> Path:
    """Enroll every identity folder of ``people`` into a new gallery (in this process, through the service).

    The gallery gets its own copy of the model (weights and config only): the shared test model's
    directory may hold a calibration another test wrote, which would change every score here.
    """
    import shutil

    from verikit.io import scan_identity_folders
    from verikit.service import Service

    own = gallery.parent / f"{gallery.name}-model"
    own.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(model_dir) / name, own / name)
    scan = scan_identity_folders(people)
    with Service.open(gallery, model=own, device="cpu") as svc:
        svc.enroll({n: [str(p) for p in ps] for n, ps in scan.by_identity.items()})
    return gallery
