"""Many processes, one gallery (docs/concurrency.md): each case of issue 11's "What was seen",
with real processes that synchronise on lines they print, never on sleeps."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_pattern_image
from verikit.index.gallery import DB_FILE, INDEX_FILE, INDEX_META_FILE, Gallery

DIM = 16
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def unit(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def python(code: str, *args: object) -> subprocess.Popen:
    """A child running ``code`` with line-buffered pipes: it talks by printing, we answer on stdin."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=ENV)


def expect_line(proc: subprocess.Popen, wanted: str) -> None:
    line = proc.stdout.readline().strip()
    assert line == wanted, f"child said {line!r}, expected {wanted!r}; stderr: {proc.stderr.read() if not line else ''}"


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {err}"
    return out


def saved_index_ids(path: Path) -> np.ndarray:
    """The template ids in the saved index.faiss, read with faiss itself (not through verikit)."""
    import faiss

    index = faiss.read_index(str(path / INDEX_FILE))
    return np.sort(faiss.vector_to_array(index.id_map))


def db_ids(path: Path) -> np.ndarray:
    conn = sqlite3.connect(str(path / DB_FILE))
    try:
        return np.array(sorted(r[0] for r in conn.execute("SELECT id FROM templates")), dtype=np.int64)
    finally:
        conn.close()


def assert_index_holds_the_database(path: Path) -> None:
    """What the saved files claim, what index.faiss holds, and SQLite all agree."""
    ids = db_ids(path)
    assert np.array_equal(saved_index_ids(path), ids), "index.faiss does not hold exactly SQLite's templates"
    record = json.loads((path / INDEX_META_FILE).read_text())
    assert record["ntotal"] == len(ids)
    with Gallery.open(path) as g:
        assert record["generation"] == g.generation
        assert g.info()["indexed_vectors"] == g.n_templates == len(ids)


# -- writers ---------------------------------------------------------------------------------------
WRITER = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    path, seed, people = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    batch = {f"w{seed}-{i}": (rng.normal(size=(3, %d)), None) for i in range(people)}
    with Gallery.open(path) as g:          # loads the index as it is now
        print("OPENED", flush=True)
        sys.stdin.readline()               # every writer has opened before any of them writes
        g.add_many(batch)
    print("DONE", flush=True)
""" % DIM


def test_writers_that_opened_together_lose_nothing(tmp_path):
    """Three processes open the gallery, then all enroll: the saved index must hold every template
    (it used to hold one writer's, stamped as fresh)."""
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add("first", unit(0, 1))
    writers = [python(WRITER, path, seed, 15) for seed in (1, 2, 3)]
    for w in writers:
        expect_line(w, "OPENED")
    for w in writers:
        w.stdin.write("go\n")
        w.stdin.flush()
    for w in writers:
        assert finish(w).strip() == "DONE"
    assert_index_holds_the_database(path)
    with Gallery.open(path) as g:
        assert len(g) == 1 + 3 * 15 and g.n_templates == 1 + 3 * 15 * 3
        for seed in (1, 2, 3):  # each writer's people are found under their own names
            name = f"w{seed}-7"
            assert g.search(g.templates(name)[0], 1)[0][0].identity == name


def wait_stopped(proc: subprocess.Popen) -> None:
    """Block until ``proc`` has stopped itself (SIGSTOP after printing its marker): the kernel tells
    the parent (waitpid with WUNTRACED), so a SIGCONT or SIGKILL sent next can never arrive between
    the marker and the stop."""
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"process {proc.pid} ended instead of stopping (status {status})"


def _run_enroll(folder: Path, model: Path, gallery: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "verikit.cli.main", "enroll", "--from-folder", str(folder), "-m",
                             str(model), "-g", str(gallery), "--format", "json", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "VERIKIT_TEST_STOP_AT": "opened"})


def test_concurrent_enroll_commands_lose_nothing(tmp_path, tiny_model_dir):
    """`verikit enroll --from-folder` x3 started together on one gallery: every template is in
    SQLite AND in the index, and each person is found as themself."""
    folders = []
    for w in range(3):
        for i in range(4):  # distinct people (and names) per writer
            for k in range(3):
                make_pattern_image(tmp_path / f"people{w}" / f"w{w}-id{i}" / f"{k}.png", 4 * w + i, k, size=32)
        folders.append(tmp_path / f"people{w}")
    gallery = tmp_path / "g"
    with Gallery.create(gallery, dim=16, fingerprint=_fingerprint(tiny_model_dir), model_path=str(tiny_model_dir)) as g:
        g.add("first", unit(0, 1))
    # Each command stops itself right after opening the gallery (index loaded, nothing embedded
    # yet); when all three have, they go on together: the overlap the bug needs, every time.
    procs = [_run_enroll(f, tiny_model_dir, gallery) for f in folders]
    for p in procs:
        assert p.stderr.readline().strip() == "verikit-marker: opened"
        wait_stopped(p)
    for p in procs:
        p.send_signal(signal.SIGCONT)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert json.loads(out)["templates"] == 12
    assert_index_holds_the_database(gallery)
    with Gallery.open(gallery) as g:
        assert g.n_templates == 37
        for w in range(3):
            for i in range(4):
                name = f"w{w}-id{i}"
                assert g.search(g.templates(name)[:1], 1)[0][0].identity == name


CREATOR = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    print("READY", flush=True)
    sys.stdin.readline()
    with Gallery.create(sys.argv[1], dim=%d, fingerprint="fp", exist_ok=True) as g:
        g.add(f"by-{sys.argv[2]}", np.ones((1, %d)))
    print("DONE", flush=True)
""" % (DIM, DIM)


def test_processes_creating_one_gallery_at_once_all_join_it(tmp_path):
    path = tmp_path / "g"
    creators = [python(CREATOR, path, n) for n in range(4)]
    for c in creators:
        expect_line(c, "READY")
    for c in creators:
        c.stdin.write("go\n")
        c.stdin.flush()
    for c in creators:
        assert finish(c).strip() == "DONE"
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith("index")) == [DB_FILE]
    with Gallery.open(path) as g:
        assert sorted(p.name for p in g.identities()) == [f"by-{n}" for n in range(4)]
    assert_index_holds_the_database(path)


def _fingerprint(model_dir: Path) -> str:
    from verikit.models.embedder import Embedder
    return Embedder.load(model_dir).fingerprint


# -- a long-lived reader ------------------------------------------------------------------------------
OTHER_PROCESS = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    path = sys.argv[1]
    for line in sys.stdin:                 # one command per line from the test
        verb, name, seed = line.split()
        with Gallery.open(path) as g:
            if verb == "add":
                v = np.random.default_rng(int(seed)).normal(size=(2, %d)).astype(np.float32)
                g.add(name, v / np.linalg.norm(v, axis=1, keepdims=True))
            else:
                g.remove(name)
        print("DONE", verb, name, flush=True)
""" % DIM


def test_a_long_lived_reader_sees_other_processes_changes(tmp_path):
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({"alice": (unit(1, 2), None), "bob": (unit(2, 2), None)})
    other = python(OTHER_PROCESS, path)
    try:
        with Gallery.open(path) as reader:        # kept open, like a service
            assert reader.search(unit(1, 2)[0], 1)[0][0].identity == "alice"
            other.stdin.write("add carol 3\n")
            other.stdin.flush()
            expect_line(other, "DONE add carol")
            # Seen on the next call, without reopening.
            assert reader.search(unit(3, 2)[0], 1)[0][0].identity == "carol"
            assert "carol" in reader and reader.info()["indexed_vectors"] == 6
            other.stdin.write("remove alice 0\n")
            other.stdin.flush()
            expect_line(other, "DONE remove alice")
            hits = reader.search(unit(1, 2)[0], 5)[0]   # used to raise KeyError
            assert "alice" not in {h.identity for h in hits} and len(hits) == 2
            assert "alice" not in reader
            # Its own enroll, then close: the saved index has everyone, the removed one excepted.
            reader.add("dave", unit(4, 2))
        assert_index_holds_the_database(path)
        with Gallery.open(path) as g:
            assert {p.name for p in g.identities()} == {"bob", "carol", "dave"}
    finally:
        other.stdin.close()
        other.wait(timeout=60)


def test_an_old_index_file_put_back_is_caught_up_not_trusted(tmp_path):
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({f"p{i}": (unit(i, 2), None) for i in range(10)})
    old_index = (path / INDEX_FILE).read_bytes()
    with Gallery.open(path) as g:
        g.add_many({f"q{i}": (unit(100 + i, 2), None) for i in range(5)})
        g.remove("p3")
    record = json.loads((path / INDEX_META_FILE).read_text())
    (path / INDEX_FILE).write_bytes(old_index)           # older index.faiss under the current index.json
    with Gallery.open(path) as g:
        assert g.info()["indexed_vectors"] == 28
        assert g.search(unit(102, 2)[0], 1)[0][0].identity == "q2"
        assert all(h.identity != "p3" for h in g.search(unit(3, 2)[0], 28)[0])
    assert_index_holds_the_database(path)
    # What the index holds, said exactly: the gallery, generation, count, id hash and id range.
    assert {k: record[k] for k in ("ntotal", "generation", "seq")} == {"ntotal": 28, "generation": 3, "seq": 30}
    assert {"uid", "index", "id_hash"} <= set(record)


def test_an_index_file_swapped_under_an_open_reader_changes_nothing(tmp_path):
    """The per-call check is against SQLite, so what happens to the files never misleads a reader."""
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({f"p{i}": (unit(i, 2), None) for i in range(4)})
    with Gallery.open(path) as reader:
        (path / INDEX_FILE).write_bytes(b"garbage")
        (path / INDEX_META_FILE).write_text("{}")
        assert reader.search(unit(2, 2)[0], 1)[0][0].identity == "p2"
        with Gallery.open(path) as writer:   # a second opener rebuilds from SQLite
            writer.add("late", unit(9, 1))
        assert reader.search(unit(9, 1)[0], 1)[0][0].identity == "late"
    assert_index_holds_the_database(path)


# -- removal and erasure -----------------------------------------------------------------------------
READER = """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN")
    conn.execute("SELECT COUNT(*) FROM templates").fetchone()   # holds this snapshot
    print("READING", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("RELEASED", flush=True)
"""


def _gallery_with_victims(path: Path, index: str = "faiss:Flat") -> dict[str, bytes]:
    """A gallery with 'keep' and two people to remove; returns each victim's stored template bytes."""
    with Gallery.create(path, dim=DIM, fingerprint="fp", index=index) as g:
        g.add("keep", unit(1, 2), sources=["/photos/keep-1.jpg", "/photos/keep-2.jpg"])
        g.add("victim-one", unit(2, 2), sources=["/photos/victim-one-a.jpg", "/photos/victim-one-b.jpg"])
        g.add("victim-two", unit(3, 2), sources=["/photos/victim-two-a.jpg", "/photos/victim-two-b.jpg"])
        return {n: g.templates(n).tobytes() for n in ("victim-one", "victim-two")}


def _files_holding(path: Path, needles: list[bytes]) -> list[str]:
    found = []
    for f in sorted(path.iterdir()):
        data = f.read_bytes()
        found += [f"{f.name}:{n[:24]!r}" for n in needles if n in data]
    return found


def _needles(vectors: bytes, name: str) -> list[bytes]:
    """Every template's bytes, the name and the source file names: what erasure must remove."""
    size = 4 * DIM
    return [vectors[i:i + size] for i in range(0, len(vectors), size)] + [name.encode(), f"/photos/{name}-a".encode()]


def _cli(*args: object, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "verikit.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def test_remove_while_another_process_reads_says_the_bytes_are_not_yet_erased(tmp_path):
    path = tmp_path / "g"
    victims = _gallery_with_victims(path)
    reader = python(READER, path / DB_FILE)
    expect_line(reader, "READING")
    remove = _cli("gallery", "remove", "victim-one", "-g", path, "--yes", "--erase-timeout", "0")
    out, err = remove.communicate(timeout=300)
    assert remove.returncode == 4, err
    needles = _needles(victims["victim-one"], "victim-one")
    # Honest: either the bytes are gone, or the command said they are not (and exited 4).
    left = _files_holding(path, needles)
    assert left, "the reader should have kept the old pages in place (test set-up)"
    assert "NOT yet erased" in err and "gallery purge" in err, err
    assert " ".join(err.split()).count("warning") == 1
    reader.stdin.write("done\n")
    reader.stdin.flush()
    expect_line(reader, "RELEASED")
    finish(reader)
    # The next command that opens the gallery finishes the erasure.
    info = _cli("gallery", "info", "-g", path, "--format", "json")
    info_out, info_err = info.communicate(timeout=300)
    assert info.returncode == 0, info_err
    assert _files_holding(path, needles) == []
    with Gallery.open(path) as g:
        assert not g.erasure_pending and "victim-one" not in g and "keep" in g


def test_remove_waits_for_a_reader_within_its_bound_then_erases(tmp_path):
    path = tmp_path / "g"
    victims = _gallery_with_victims(path)
    reader = python(READER, path / DB_FILE)
    expect_line(reader, "READING")
    remove = _cli("gallery", "remove", "victim-two", "-g", path, "--yes", "--erase-timeout", "600", "--format", "json")
    line = remove.stderr.readline()
    assert "waiting up to 600 s" in line, line       # the signal: it is waiting for the reader now
    reader.stdin.write("done\n")
    reader.stdin.flush()
    expect_line(reader, "RELEASED")
    finish(reader)
    out, err = remove.communicate(timeout=300)
    assert remove.returncode == 0, err
    assert json.loads(out) == {"removed": "victim-two", "templates": 2, "erased": True}
    assert _files_holding(path, _needles(victims["victim-two"], "victim-two")) == []


@pytest.mark.parametrize("index", ["faiss:Flat", "faiss:HNSW16", "faiss:IVF2,Flat", "faiss:ivf-flat,min=4",
                                   "faiss:hnsw,min=4"])
def test_remove_with_no_reader_erases_everything_before_returning(tmp_path, index):
    """From the database, its WAL and the saved index (HNSW cannot remove: it is rebuilt), and the
    name and source paths from the audit log (it keeps an anonymised event)."""
    path = tmp_path / "g"
    victims = _gallery_with_victims(path, index)
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "remove", "victim-one", "-g", str(path),
                        "--yes"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    assert _files_holding(path, _needles(victims["victim-one"], "victim-one")) == []
    with Gallery.open(path) as g:
        log = g.audit_log()
    removed = [e for e in log if e["action"] == "remove"]
    assert len(removed) == 1 and removed[0]["identity"].startswith("removed-")
    assert removed[0]["detail"] == {"templates": 2, "redacted_events": 1}
    enrolled = [e for e in log if e["identity"] == removed[0]["identity"] and e["action"] == "enroll"]
    assert enrolled and enrolled[0]["detail"] == {"templates": 2, "redacted": True}
    assert any(e["identity"] == "keep" and e["detail"]["sources"] for e in log)  # others untouched


def test_keep_audit_keeps_the_name_in_the_log_but_not_the_templates(tmp_path):
    path = tmp_path / "g"
    victims = _gallery_with_victims(path)
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "remove", "victim-two", "-g", str(path),
                        "--yes", "--keep-audit"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    size = 4 * DIM
    templates = [victims["victim-two"][i:i + size] for i in range(0, 2 * size, size)]
    assert _files_holding(path, templates) == []
    with Gallery.open(path) as g:
        names = [(e["action"], e["identity"]) for e in g.audit_log()]
    assert ("remove", "victim-two") in names and ("enroll", "victim-two") in names


# -- crash safety: killed at named points of a write (signals, not delays) ----------------------------
KILLED_WRITER = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    v = np.random.default_rng(7).normal(size=(4, %d))
    with Gallery.open(sys.argv[1]) as g:
        g.add_many({"new-a": (v[:2], None), "new-b": (v[2:], None)})
""" % DIM


@pytest.mark.parametrize("point, survives", [("write-begun", False), ("write-before-commit", False),
                                             ("write-committed", True), ("index-saved", True)])
def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_gallery(tmp_path, point, survives):
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({f"p{i}": (unit(i, 2), None) for i in range(5)})
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(path)], stderr=subprocess.PIPE,
                             text=True, env={**ENV, "VERIKIT_TEST_STOP_AT": point})
    for line in child.stderr:  # the child stops itself right after printing the marker of `point`
        if line.strip() == f"verikit-marker: {point}":
            break
    else:
        pytest.fail(f"the writer never reached {point}")
    wait_stopped(child)
    child.send_signal(signal.SIGKILL)  # a stopped process still dies of SIGKILL, at exactly that point
    child.wait(timeout=60)
    with Gallery.open(path) as g:
        names = {p.name for p in g.identities()}
        assert names == {f"p{i}" for i in range(5)} | ({"new-a", "new-b"} if survives else set())
        assert g.info()["indexed_vectors"] == g.n_templates
        if survives:
            assert g.search(g.templates("new-b")[0], 1)[0][0].identity == "new-b"
        g.add("after", unit(50, 1))  # still writable
    assert_index_holds_the_database(path)


def test_one_gallery_shared_by_threads(tmp_path):
    """A Gallery serialises its own connection: threads searching while others enroll and remove
    (the pattern of a threaded server) see consistent results and raise nothing."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({f"p{i}": (unit(i, 2), None) for i in range(20)})

        def search(i: int) -> str:
            return g.search(unit(i % 20, 2)[0], 1)[0][0].identity

        def write(i: int) -> None:
            g.add(f"new{i}", unit(100 + i, 1))
            if i % 2:
                g.remove(f"new{i}")

        with ThreadPoolExecutor(6) as pool:  # searches and writes interleaved
            searches = [pool.submit(search, i) for i in range(120)]
            writes = [pool.submit(write, i) for i in range(20)]
            found = [f.result() for f in searches]
            for f in writes:
                f.result()
        assert found == [f"p{i % 20}" for i in range(120)]
        assert g.info()["indexed_vectors"] == g.n_templates == 40 + 10
    assert_index_holds_the_database(path)
