"""The search cache (verikit.index.searchcache): hit names and re-rank vectors kept in memory between
searches must give exactly the answers of the uncached path, and a long-lived reader holding them
must still see another PROCESS's rename, removal and enroll on its next search (real processes that
synchronise on printed lines, never on sleeps)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from verikit.errors import GalleryError
from verikit.index import ranking, searchcache
from verikit.index.gallery import Gallery
from verikit.index.store import read_snapshot

DIM = 24
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def clustered(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(1234).normal(size=(300, DIM))
    v = c[rng.integers(0, 300, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


VECTORS = clustered(7, 2400)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """An IVF-PQ gallery (re-ranked from stored templates), some identities with 3 templates."""
    path = tmp_path_factory.mktemp("searchcache") / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="faiss:ivf-pq,min=2000") as g:
        for s in range(0, 2100, 700):
            g.add_many({f"p{i}": (VECTORS[i:i + 1], None) for i in range(s, s + 700)})
        g.add_many({f"m{j}": (VECTORS[2100 + 3 * j:2103 + 3 * j], None) for j in range(100)})
        assert g.info()["approximate"]["rerank"] > 0
    return path


@pytest.fixture
def gallery(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "g")
    return tmp_path / "g"


@pytest.fixture
def eager(monkeypatch):
    """Buy the full copies on the first search under every key (the ski-rental rule otherwise reads
    SQLite until loading pays), so what is checked is the cached path."""
    monkeypatch.setattr(searchcache._Rental, "pays", lambda self, rows: True)


def uncached(g: Gallery, q: np.ndarray, k: int):
    """The search as it was before the cache: names and re-rank vectors read from SQLite."""
    with read_snapshot(g._conn):
        g._index.sync(g._conn)
        return ranking.index_search(g._conn, g._index.backend, g.measure, g._validated(q, "q"), k)


def loaded(g: Gallery) -> tuple[bool, bool]:
    c = g._search_cache
    return c._names.loaded, c._vectors.loaded


def test_cached_search_gives_exactly_the_uncached_answers(gallery, eager):
    q = clustered(99, 200)
    with Gallery.open(gallery) as g:
        g.search(q[:1], 5)
        assert loaded(g) == (True, True)
        for k in (1, 5, 12):
            assert g.search(q, k) == uncached(g, q, k)
            assert [g.search(q[i], k)[0] for i in range(0, 200, 20)] == [uncached(g, q[i], k)[0] for i in range(0, 200, 20)]
        assert loaded(g) == (True, True)  # still the cached path: nothing changed


def test_without_room_for_the_vectors_the_rerank_reads_sqlite_and_answers_the_same(gallery, eager, monkeypatch):
    monkeypatch.setattr(searchcache, "VECTOR_CACHE_BYTES", 0)
    q = clustered(98, 50)
    with Gallery.open(gallery) as g:
        assert g.search(q, 5) == uncached(g, q, 5)
        assert loaded(g) == (True, False)


@pytest.mark.parametrize("value", ["lots", "nan", "-5", "inf"])
def test_an_uninterpretable_cache_size_is_a_one_line_error_not_a_default(gallery, eager, monkeypatch, value):
    monkeypatch.setenv("VERIKIT_RERANK_CACHE_MB", value)
    with Gallery.open(gallery) as g:
        with pytest.raises(GalleryError, match="VERIKIT_RERANK_CACHE_MB") as err:
            g.search(clustered(96, 3), 5)
    assert "\n" not in str(err.value)


def test_the_cache_size_setting_decides_whether_the_vectors_are_copied(gallery, eager, monkeypatch):
    q = clustered(95, 20)
    monkeypatch.setenv("VERIKIT_RERANK_CACHE_MB", "0")
    with Gallery.open(gallery) as g:
        g.search(q, 5)
        assert loaded(g) == (True, False)
    monkeypatch.delenv("VERIKIT_RERANK_CACHE_MB")  # the default (256 MB) holds this small gallery
    with Gallery.open(gallery) as g:
        g.search(q, 5)
        assert loaded(g) == (True, True)


def test_the_full_copies_are_bought_only_once_reads_have_cost_as_much(gallery, monkeypatch):
    """Ski rental: the first searches read SQLite; the copy is loaded once their time reaches the
    estimated load cost, and the estimate is then the measured one."""
    monkeypatch.setattr(searchcache, "_NAME_LOAD_S_PER_ROW", 1.0)  # never pays until lowered below
    q = clustered(97, 400)
    with Gallery.open(gallery) as g:
        c = g._search_cache
        g.search(q[:1], 5)
        assert loaded(g) == (False, False) and c._names.spent > 0
        c._names.per_row = c._names.spent / 2400 * 3  # about three more searches' worth
        threshold = c._names.per_row * 2400
        for i in range(1, 200):
            g.search(q[i], 5)
            if c._names.loaded:
                break
        assert c._names.loaded and i >= 2 and c._names.spent >= threshold
        assert 0 < c._names.per_row < 1.0  # measured
        assert g.search(q, 5) == uncached(g, q, 5)


def test_own_writes_and_another_connections_writes_empty_the_names(gallery, eager):
    with Gallery.open(gallery) as g, Gallery.open(gallery) as other:
        assert g.search(VECTORS[5], 5)[0][0].identity == "p5"
        g.rename("p5", "own-rename")                   # this connection: total_changes moves
        assert g.search(VECTORS[5], 5)[0][0].identity == "own-rename"
        other.rename("own-rename", "other-rename")     # another connection: data_version moves
        assert g.search(VECTORS[5], 5)[0][0].identity == "other-rename"
        assert loaded(g) == (True, True)
        other.set_metadata("p7", {"x": 1})             # no name changed: still right after the reload
        assert g.search(VECTORS[7], 5)[0][0].identity == "p7"
        assert loaded(g) == (True, True)


OTHER_PROCESS = """
    import sys
    import numpy as np
    from verikit.index.gallery import Gallery
    for line in sys.stdin:
        verb, *args = line.split()
        with Gallery.open(sys.argv[1]) as g:
            if verb == "rename":
                g.rename(args[0], args[1])
            elif verb == "remove":
                g.remove(args[0])
            else:
                v = np.frombuffer(bytes.fromhex(args[1]), dtype=np.float32)
                g.add(args[0], v[None, :])
        print("DONE", verb, flush=True)
"""


def test_a_long_lived_cached_reader_sees_another_process_rename_remove_and_enroll(gallery, eager):
    other = subprocess.Popen([sys.executable, "-c", textwrap.dedent(OTHER_PROCESS), str(gallery)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=ENV)

    def tell(command: str) -> None:
        other.stdin.write(command + "\n")
        other.stdin.flush()
        line = other.stdout.readline().strip()
        assert line == f"DONE {command.split()[0]}", f"child said {line!r}; stderr: {other.stderr.read() if not line else ''}"

    try:
        with Gallery.open(gallery) as reader:       # kept open, like a service
            assert reader.search(VECTORS[10], 5)[0][0].identity == "p10"
            assert [h.identity for h in reader.search(VECTORS[2103], 3)[0]][0] == "m1"
            assert loaded(reader) == (True, True)
            tell("rename p10 renamed-by-other")
            assert reader.search(VECTORS[10], 5)[0][0].identity == "renamed-by-other"
            tell("remove m1")
            hits = reader.search(VECTORS[2103], 30)[0]
            assert "m1" not in {h.identity for h in hits} and len(hits) == 30
            removed = np.arange(2104, 2107)  # m1's template ids (p0.. are 1..2100, m0 2101..2103)
            assert not np.isin(removed, reader._search_cache._vtids).any()  # its vectors left the copy too
            fresh = clustered(555, 1)[0]
            tell("add newcomer " + fresh.tobytes().hex())
            # k=5: a k=1 shortlist of this test's tiny PQ codes (3 bytes) can miss even an exact copy
            assert reader.search(fresh, 5)[0][0].identity == "newcomer"
            for q in clustered(96, 30):
                assert reader.search(q, 6) == uncached(reader, q, 6)
            assert loaded(reader) == (True, True)
    finally:
        other.stdin.close()
        other.wait(timeout=60)


def test_a_damaged_template_fails_only_the_searches_that_reach_it_as_without_the_cache(gallery, eager):
    with Gallery.open(gallery) as g:
        g.search(VECTORS[0], 5)
        assert loaded(g) == (True, True)
        raw = sqlite3.connect(gallery / "gallery.sqlite")   # another tool rewrites a template (damage)
        raw.execute("UPDATE templates SET vector = ? WHERE id = 101", (b"\0" * 7,))
        raw.commit()
        raw.close()
        with pytest.raises(GalleryError, match="template 101 is damaged"):
            g.search(VECTORS[100], 5)                       # its own vector: shortlisted, re-read, refused
        assert not g._search_cache._vectors.loaded         # the full copy was given up, not kept stale
        answered = 0
        for q in VECTORS[1000:1040]:
            try:
                expected = uncached(g, q, 5)
            except GalleryError:
                continue
            assert g.search(q, 5) == expected
            answered += 1
        assert answered >= 30
