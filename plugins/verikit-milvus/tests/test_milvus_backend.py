"""verikit-milvus on Milvus Lite (a real local file, no network): the gallery API and the CLI with
``--index milvus``, answers equal to exact faiss, catching up after another process's write, and
a writer killed between its SQLite commit and its Milvus upsert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install pymilvus milvus-lite)")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install milvus-lite)")

from verikit.errors import GalleryError, PluginError  # noqa: E402
from verikit.index.gallery import Gallery  # noqa: E402
from verikit.registry import index_backends  # noqa: E402
from verikit_milvus import LITE_FILE, create  # noqa: E402

DIM = 16
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def unit(rng, n, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(g, rng, people=12, per=3):
    data = {f"p{i}": unit(rng, per) for i in range(people)}
    for name, v in data.items():
        g.add(name, v)
    return data


def test_registered_and_specs_checked():
    assert any(i.name == "milvus" and i.distribution == "verikit-milvus" for i in index_backends.infos())
    assert create("http://milvus:19530,index=hnsw", dim=8).index_type == "HNSW"
    with pytest.raises(PluginError, match="expected a server URI"):
        create("localhost:19530", dim=8)
    with pytest.raises(PluginError, match="unknown option 'nprobe=4'"):
        create("http://h:19530,nprobe=4", dim=8)
    with pytest.raises(PluginError, match="Milvus Lite supports only the exact FLAT"):
        create(",index=HNSW", dim=8)


def test_gallery_api_matches_exact_faiss(tmp_path):
    """Enroll, search, remove, rename: the Milvus gallery answers exactly as a faiss:Flat one."""
    rng = np.random.default_rng(0)
    queries = unit(rng, 20)
    with Gallery.create(tmp_path / "m", dim=DIM, fingerprint="fp", index="milvus") as m, \
            Gallery.create(tmp_path / "f", dim=DIM, fingerprint="fp", index="faiss:Flat") as f:
        data = fill(m, np.random.default_rng(1))
        fill(f, np.random.default_rng(1))
        assert (tmp_path / "m" / LITE_FILE).exists() and m.info()["indexed_vectors"] == 36

        def same():
            hm, hf = m.search(queries, 5), f.search(queries, 5)
            assert [[h.identity for h in r] for r in hm] == [[h.identity for h in r] for r in hf]
            np.testing.assert_allclose([[h.score for h in r] for r in hm], [[h.score for h in r] for r in hf],
                                       atol=1e-5)

        same()
        probe = data["p3"][:1]
        assert m.search(probe, 1)[0][0].identity == "p3"
        for g in (m, f):
            g.remove("p3")
            g.rename("p4", "renamed")
        assert m.info()["indexed_vectors"] == 33
        assert "p3" not in {h.identity for h in m.search(probe, 33)[0]}
        assert m.search(data["p4"][:1], 1)[0][0].identity == "renamed"
        same()
        assert m.check() == []
    with Gallery.open(tmp_path / "m") as m:  # the saved pointer is trusted after its ids check out
        assert m._index.rebuilds == 0 and m.info()["indexed_vectors"] == 33


WRITER = """
import sys, numpy as np
from verikit.index.gallery import Gallery
with Gallery.open(sys.argv[1]) as g:
    g.add("child", np.load(sys.argv[2]))
"""


def test_reopened_gallery_catches_up_after_a_writer_killed_after_its_commit(tmp_path):
    """A writer SIGKILLed between its SQLite commit and its Milvus upsert: the truth (SQLite) has the
    templates, the collection does not; the next process catches the collection up, no rebuild."""
    rng = np.random.default_rng(2)
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="milvus") as g:
        fill(g, rng, people=4)
    child_vecs = unit(rng, 2)
    np.save(tmp_path / "v.npy", child_vecs)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(tmp_path / "v.npy")],
                             stderr=subprocess.PIPE, text=True, env={**ENV, "VERIKIT_TEST_STOP_AT": "write-committed"})
    assert child.stderr is not None
    for line in child.stderr:  # the signal: the child stopped itself right after its commit
        if "verikit-marker: write-committed" in line:
            break
    child.send_signal(signal.SIGKILL)
    child.wait()
    with Gallery.open(path) as g:
        assert g.n_templates == 14 and g.info()["indexed_vectors"] == 14
        assert g._index.rebuilds == 0  # caught up from the saved state, not rebuilt
        assert g.search(child_vecs, 1)[0][0].identity == "child"
        assert g.check() == []


def test_cli_enroll_search_remove_rename_with_index_milvus(tmp_path):
    """The CLI end to end: enroll two folders into a Milvus gallery (one process each), then
    gallery info/rename/remove and identify, every answer through the Milvus index."""
    from PIL import Image
    import torch
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    torch.manual_seed(0)
    model = tmp_path / "model"
    Embedder.build("timm:test_resnet", embedding_size=DIM, input_spec=InputSpec(size=(32, 32))).eval().save(model)
    rng = np.random.default_rng(3)
    people = tmp_path / "people"
    for person in ("ann", "bob"):
        (people / person).mkdir(parents=True)
        base = rng.integers(0, 255, size=(32, 32, 3))
        for k in range(2):
            noisy = np.clip(base + rng.normal(0, 8, size=base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(people / person / f"{k}.png")
    gal = tmp_path / "gal"

    def cli(*args, check=True):
        r = subprocess.run([sys.executable, "-m", "verikit.cli.main", *args], capture_output=True, text=True, env=ENV)
        assert not check or r.returncode == 0, r.stderr
        return r

    for person in ("ann", "bob"):  # two processes, one after the other, on the same Milvus Lite file
        cli("enroll", person, *map(str, sorted((people / person).iterdir())), "-m", str(model), "-g", str(gal),
            "--index", "milvus", "--device", "cpu", "--quiet")
    info = json.loads(cli("gallery", "info", "-g", str(gal), "--format", "json").stdout)
    assert info["index"] == "milvus" and info["indexed_vectors"] == 4 and info["identities"] == 2
    assert "WARNING" not in cli("gallery", "check", "-g", str(gal)).stderr  # no pymilvus noise on stderr
    cli("gallery", "rename", "ann", "anna", "-g", str(gal))
    hit = json.loads(cli("search", str(people / "ann" / "0.png"), "-m", str(model), "-g", str(gal),
                         "--top-k", "1", "--device", "cpu", "--format", "json").stdout)
    assert json.dumps(hit).count("anna") >= 1
    cli("gallery", "remove", "bob", "--yes", "-g", str(gal))
    info = json.loads(cli("gallery", "info", "-g", str(gal), "--format", "json").stdout)
    assert info["indexed_vectors"] == 2 and info["identities"] == 1
    assert cli("gallery", "check", "-g", str(gal)).returncode == 0


def test_a_lite_file_held_by_another_open_gallery_is_a_one_line_error(tmp_path):
    rng = np.random.default_rng(4)
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="milvus") as g:
        fill(g, rng, people=2)
        r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "info", "-g", str(path)],
                           capture_output=True, text=True, env=ENV)
        assert r.returncode == 1 and "from one process at a time" in r.stderr
        assert "Traceback" not in r.stderr


def test_removed_templates_leave_the_milvus_lite_files(tmp_path):
    """A Milvus delete is only a tombstone: after `remove` no data file of the Lite store may still
    hold the removed template ids (the collection is rebuilt from SQLite, dropping the old files)."""
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (a milvus-lite dependency) reads its data files")
    rng = np.random.default_rng(5)
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="milvus") as g:
        fill(g, rng, people=3)
        secret = g.templates("p1")
    store = path / LITE_FILE

    def stored_ids():
        return {i for f in store.rglob("*.parquet") if "data" in f.parent.name
                for i in pq.read_table(f).to_pydict().get("id", [])}

    assert stored_ids() == set(range(1, 10))  # flushed at close: the ids are in the data files
    with Gallery.open(path) as g:
        g.remove("p1")
        assert g.info()["indexed_vectors"] == 6 and g.search(secret[:1], 9)[0][0].identity != "p1"
    assert stored_ids() == {1, 2, 3, 7, 8, 9}
    raw = b"".join(f.read_bytes() for f in store.rglob("*") if f.is_file())
    assert not any(v.astype(np.float32).tobytes() in raw for v in secret)


def test_migrate_faiss_to_milvus_and_back_and_check_proves_agreement(tmp_path):
    """`gallery migrate` builds the new index from SQLite, proves it agrees, records it and deletes
    the old index's data; `gallery check` reports what it compared."""
    rng = np.random.default_rng(6)
    path = tmp_path / "g"
    queries = unit(rng, 10)
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="faiss:Flat") as g:
        fill(g, rng, people=5)
        before = [[(h.identity, round(h.score, 5)) for h in r] for r in g.search(queries, 3)]

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "verikit.cli.main", *args], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, r.stderr
        return r

    out = json.loads(cli("gallery", "migrate", str(path), "--to", "milvus", "--format", "json").stdout)
    assert out["from"] == "faiss:Flat" and out["to"] == "milvus"
    assert out["templates"] == out["indexed_vectors"] == 15 and out["ids_compared"] and out["vectors_sampled"] == 15
    assert json.loads((path / "index.faiss").read_text())["backend"] == "milvus"  # the faiss copy is replaced
    assert "15 templates; index milvus holds the same ids as the database, 15 sampled vectors equal" in \
        cli("gallery", "check", "-g", str(path)).stderr
    with Gallery.open(path) as g:
        assert g.index_spec == "milvus" and g._index.rebuilds == 0
        assert [[(h.identity, round(h.score, 5)) for h in r] for r in g.search(queries, 3)] == before
    cli("gallery", "migrate", str(path), "--to", "faiss:Flat")
    assert not (path / LITE_FILE).exists()  # the Milvus copy of the templates is gone
    assert "15 sampled vectors equal" in cli("gallery", "check", "-g", str(path)).stderr
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "migrate", str(path), "--to", "faiss:Flat"],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "already uses index 'faiss:Flat'" in r.stderr


def test_check_finds_an_index_that_disagrees_with_the_database(tmp_path):
    rng = np.random.default_rng(7)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index="milvus") as g:
        fill(g, rng, people=3)
        assert g.check() == []
        backend = g._index.backend
        backend.add(np.array([1], dtype=np.int64), unit(rng, 1))  # a vector changed behind the gallery's back
        assert any("1 of 9 sampled vectors in the index differ" in p for p in g.check())
        backend.add(np.array([999], dtype=np.int64), unit(rng, 1))  # an id the database does not hold
        assert any("holds 1 it does not [999]" in p for p in g.check())


def test_an_unreachable_server_is_a_one_line_error_and_the_gallery_survives(tmp_path):
    """Port 9 on 127.0.0.1 has no Milvus: the API and the CLI say so in one line, no traceback.
    (The SQLite gallery is created; it opens once the server is reachable.)"""
    path = tmp_path / "g"
    with pytest.raises(GalleryError, match=r"cannot open Milvus at 'http://127.0.0.1:9': .*\S$"):
        Gallery.create(path, dim=DIM, fingerprint="fp", index="milvus:http://127.0.0.1:9")
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "info", "-g", str(path)],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "cannot open Milvus at 'http://127.0.0.1:9'" in r.stderr
    assert "Traceback" not in r.stderr and "<MilvusException" not in r.stderr


def test_the_server_path_rebuilds_without_emptying_the_shared_collection(tmp_path):
    """On a server other processes search the collection while one rebuilds it, so a rebuild must
    never empty it: it upserts every template and then deletes only the ids the database lacks.
    Exercised on a Milvus Lite file with the server strategy switched on (no server here)."""
    rng = np.random.default_rng(8)
    backend = create(dim=DIM, gallery=tmp_path, uid="shared")
    backend._shared = True
    try:
        vecs = unit(rng, 6)
        backend.add(np.arange(1, 7), vecs)
        assert backend.remove(np.array([6])) and sorted(backend.ids().tolist()) == [1, 2, 3, 4, 5]
        other = create(dim=DIM, gallery=tmp_path, uid="shared")  # another process's view of the collection
        other._shared = True
        backend.begin_rebuild()
        backend.add(np.arange(2, 5), vecs[1:4])  # the database now holds templates 2, 3, 4
        assert sorted(other.ids().tolist()) == [1, 2, 3, 4, 5]  # mid-rebuild: nothing the database holds is missing
        backend.end_rebuild()
        assert sorted(other.ids().tolist()) == [2, 3, 4]
        np.testing.assert_allclose(other.vectors(np.array([3])), vecs[2:3], atol=1e-6)
    finally:
        backend.close()
