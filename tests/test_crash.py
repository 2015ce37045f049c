"""A process killed mid-enroll (SIGKILL: no cleanup runs) leaves the previous gallery intact and usable.

The kills are placed by SIGNALS from the child, never by delays (a loaded machine runs several
times slower): the child prints a marker line at the moment under test and then waits to be
killed. The markers come from outside verikit's code -- a SQLite trace callback installed on the
connections the child opens (it sees each statement as SQLite runs it, so "the 50th template
INSERT" is a moment inside the enroll transaction), and wrappers around the enroll operations --
so no test hook lives in the product.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

from verikit.index.gallery import DB_FILE, Gallery

DIM = 64

# Installs the markers, then blocks the child at the chosen moment until the parent kills it.
MARKERS = textwrap.dedent("""
    import sqlite3, sys, threading

    def hold(marker):
        print(marker, flush=True)
        threading.Event().wait()  # until SIGKILL

    def trace_inserts(after):
        seen = [0]
        def on_statement(sql):
            if sql.startswith("INSERT INTO templates"):
                seen[0] += 1
                if seen[0] == after:
                    hold("IN-TRANSACTION")  # inside the open write transaction, rows already written
        connect = sqlite3.connect
        def traced(*args, **kwargs):
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(on_statement)
            return conn
        sqlite3.connect = traced
""")

# The child enrolls one big batch (300 identities x 600 templates) into a gallery that already
# holds "before-0..before-9"; MOMENT is "inside" (killed in the transaction) or "committed".
CHILD = MARKERS + textwrap.dedent("""
    import numpy as np
    from verikit.index.gallery import Gallery
    path, seed, moment = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if moment == "inside":
        trace_inserts(after=50)
    rng = np.random.default_rng(seed)
    batch = {f"new-{i}": (rng.normal(size=(600, %d)).astype(np.float32), None) for i in range(300)}
    with Gallery.open(path) as g:
        g.add_many(batch)
        hold("COMMITTED")  # add_many returned: the commit is durable; killed before a clean close
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


def kill_on_marker(command: list[str], marker: str) -> None:
    """Run ``command``, wait for the line ``marker`` on its stdout, SIGKILL it there."""
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a chatty child never blocks on it
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in child.stdout:
                if line.strip() == marker:
                    break
            else:
                child.wait()
                err.seek(0)
                pytest.fail(f"the child exited ({child.returncode}) without printing {marker}: {err.read()[-2000:]}")
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("moment, marker, survives", [("inside", "IN-TRANSACTION", False),
                                                      ("committed", "COMMITTED", True)])
def test_sigkill_during_enroll_leaves_old_or_new_gallery(tmp_path, moment, marker, survives):
    before = {f"before-{i}" for i in range(10)}
    after = before | {f"new-{i}" for i in range(300)}
    path = tmp_path / "g"
    rng = np.random.default_rng(0)
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({name: (rng.normal(size=(3, DIM)), None) for name in sorted(before)})
    kill_on_marker([sys.executable, "-c", CHILD, str(path), "1", moment], marker)
    names = consistent_state(path)
    # Killed inside the transaction: none of it is visible; killed after the commit: all of it.
    assert names == (after if survives else before), f"{len(names - before)} of 300 new identities visible"
    with Gallery.open(path) as g:  # still writable after the crash
        g.add("after-crash", rng.normal(size=(1, DIM)))
    assert "after-crash" in consistent_state(path)


# The real `verikit enroll` command, with markers wrapped around its operations.
ENROLL = MARKERS + textwrap.dedent("""
    import verikit.pipeline.operations as ops
    moment = sys.argv.pop(1)
    if moment == "embedding":  # the command is about to embed; nothing written to the gallery yet
        def marked_prepare(*args, **kwargs):
            hold("EMBEDDING")
        ops.prepare_enrollment = marked_prepare
    elif moment == "inside":
        trace_inserts(after=5)  # of the 15 templates
    elif moment == "committed":
        commit = ops.commit_enrollment
        def marked_commit(*args, **kwargs):
            report = commit(*args, **kwargs)
            hold("COMMITTED")
        ops.commit_enrollment = marked_commit
    from verikit.cli.main import main
    sys.argv[0] = "verikit"
    main()
""")


@pytest.mark.parametrize("moment, marker", [("embedding", "EMBEDDING"), ("inside", "IN-TRANSACTION"),
                                            ("committed", "COMMITTED")])
def test_sigkill_of_the_enroll_command_keeps_the_previous_gallery(tmp_path, tiny_model_dir, orl, moment, marker):
    """The real command on real images, killed at each moment of its life."""
    from verikit.models.embedder import Embedder
    from verikit.pipeline.operations import enroll, open_gallery_for

    gallery = tmp_path / "g"
    model = Embedder.load(tiny_model_dir)
    with open_gallery_for(model, gallery, create=True, model_path=str(tiny_model_dir)) as g:
        enroll(model, g, {"first": [orl / "s1" / "1.pgm"]})
    people = tmp_path / "people"
    for i in range(1, 6):
        for k in (1, 2, 3):
            (people / f"s{i}").mkdir(parents=True, exist_ok=True)
            (people / f"s{i}" / f"{k}.pgm").write_bytes((orl / f"s{i}" / f"{k}.pgm").read_bytes())
    kill_on_marker([sys.executable, "-c", ENROLL, moment, "enroll", "--from-folder", str(people),
                    "-m", str(tiny_model_dir), "-g", str(gallery), "--batch-size", "8", "--quiet"], marker)
    with Gallery.open(gallery) as g:
        names = {p.name for p in g.identities()}
        assert names == ({"first", *[f"s{i}" for i in range(1, 6)]} if moment == "committed" else {"first"})
        assert g.info()["indexed_vectors"] == g.n_templates == (16 if moment == "committed" else 1)
