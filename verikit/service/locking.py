"""One writer at a time on a gallery, across processes, for everything that goes through the service.

A service write (enroll, rename, remove, metadata) holds ``GALLERY/.verikit-write.lock`` (an OS file
lock, released by the kernel when its process dies, even by SIGKILL) from re-reading the gallery's
current state until the derived index is saved; a reader that finds the gallery changed refreshes
under the same lock. So two services, or a service and a CLI enroll (which is one), never save an
index built on a state that another process has since changed. The gallery's own concurrency model
(docs/concurrency.md, where present) is the authority; this lock only makes the service's pattern
(one long-lived Gallery, refreshed when the database generation moves) safe on its own.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

LOCK_FILE = ".verikit-write.lock"


def write_lock(gallery_dir: str | Path) -> FileLock:
    """The gallery's service write lock (not yet acquired; use it as a context manager)."""
    path = Path(gallery_dir)
    path.mkdir(parents=True, exist_ok=True)  # a first enroll creates the gallery under the lock
    return FileLock(str(path / LOCK_FILE))
