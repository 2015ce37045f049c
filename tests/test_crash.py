"""A process killed mid-enroll (SIGKILL: no cleanup runs) leaves the previous gallery intact and usable."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np

from verikit.index.gallery import DB_FILE, Gallery

DIM = 64

# The child enrolls one big batch (tens of thousands of templates: a transaction that takes a
# noticeable time) into a gallery that already holds "before-0..before-9".
CHILD = textwrap.dedent("""
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    rng = np.random.default_rng(int(sys.argv[2]))
    batch = {}
    for i in range(300):
        v = rng.normal(size=(600, %d)).astype(np.float32)
        batch[f"new-{i}"] = (v, None)
    with Gallery.open(sys.argv[1]) as g:
        print("READY", flush=True)
        g.add_many(batch)
        print("COMMITTED", flush=True)
""" % DIM)


def consistent_state(path) -> set[str]:
    """Open the gallery as a user would and check SQLite and the index agree; return its names."""
    with Gallery.open(path) as g:
        names = {p.name for p in g.identities()}
        conn = sqlite3.connect(str(path / DB_FILE))
        counted = dict(conn.execute("SELECT i.name, COUNT(t.id) FROM identities i "
                                    "LEFT JOIN templates t ON t.identity_id = i.id GROUP BY i.id"))
        conn.close()
        assert counted == {p.name: p.n_templates for p in g.identities()}
        assert g.info()["indexed_vectors"] == sum(counted.values())
        probe = g.templates("before-3")[0]
        assert g.search(probe, 1)[0][0].identity == "before-3"
        return names


def kill_enroll_after(path, delay: float) -> str:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "1"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "READY"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()
    child.wait()
    return rest


def test_sigkill_during_enroll_leaves_old_or_new_gallery(tmp_path):
    before = {f"before-{i}" for i in range(10)}
    after = before | {f"new-{i}" for i in range(300)}
    outcomes = []
    # From inside the transaction (about a second of inserts) to well after its commit.
    for n, delay in enumerate([0.05, 0.3, 0.6, 0.9, 4.0]):
        path = tmp_path / f"g{n}"
        rng = np.random.default_rng(n)
        with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
            g.add_many({name: (rng.normal(size=(3, DIM)), None) for name in sorted(before)})
        rest = kill_enroll_after(path, delay)
        names = consistent_state(path)
        assert names in (before, after), f"partial enroll visible: {len(names - before)} of 300 new identities"
        if "COMMITTED" in rest:  # the commit returned before the kill: it must have survived
            assert names == after
        outcomes.append(names == after)
        with Gallery.open(path) as g:  # still writable after the crash
            g.add("after-crash", rng.normal(size=(1, DIM)))
        assert "after-crash" in consistent_state(path)
    # The test really killed inside the transaction at least once, and after it at least once.
    assert not outcomes[0] and outcomes[-1], outcomes


def test_sigkill_of_the_enroll_command_keeps_the_previous_gallery(tmp_path, tiny_model_dir, orl):
    """The real command on real images, killed at several moments of its life."""
    from tests.test_cli import ok

    gallery = tmp_path / "g"
    ok("enroll", "first", orl / "s1" / "1.pgm", "-m", tiny_model_dir, "-g", gallery)
    for delay in (1.0, 3.0, 5.0):
        proc = subprocess.Popen([sys.executable, "-m", "verikit.cli.main", "enroll", "--from-folder", str(orl),
                                 "-m", str(tiny_model_dir), "-g", str(gallery), "--batch-size", "8"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Gallery.open(gallery) as g:
            names = {p.name for p in g.identities()}
            assert names in ({"first"}, {"first", *[f"s{i}" for i in range(1, 41)]})
            assert g.info()["indexed_vectors"] == g.n_templates
            if names == {"first"}:
                assert g.n_templates == 1
