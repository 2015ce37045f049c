"""Managed approximate indexes (issue 12): layouts chosen by size, trained by themselves, tuned to a
measured recall; removal, rename, reopening, crashes and other processes keep working."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from verikit.errors import GalleryError
from verikit.index import approximate
from verikit.index.approximate import ManagedIndex, nlist_for, parse, with_recall
from verikit.index.gallery import INDEX_META_FILE, Gallery

DIM = 24
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def clustered(seed: int, n: int, centres: int = 300) -> np.ndarray:
    """Unit vectors around identity-like centres (real embeddings cluster by person)."""
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(1234).normal(size=(centres, DIM))
    v = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def fill(g: Gallery, vectors: np.ndarray, start: int = 0, batch: int = 1000) -> None:
    for s in range(0, len(vectors), batch):
        g.add_many({f"p{start + s + j}": (vectors[s + j:s + j + 1], None) for j in range(min(batch, len(vectors) - s))})


def true_top(gallery_vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ gallery_vectors.T), axis=1, kind="stable")[:, :k]


# -- specs -----------------------------------------------------------------------------------------
def test_specs_parse_with_their_options_and_bad_ones_are_refused_in_one_line():
    assert parse("IVF1024,Flat") is None and parse("Flat") is None  # raw faiss strings stay raw
    s = parse("ivf-pq,recall=0.99,k=5,min=2000")
    assert (s.kind, s.family, s.recall, s.k, s.min, s.quantised) == ("ivf-pq", "ivf-pq", 0.99, 5, 2000, True)
    assert parse("auto").family == "ivf-flat" and parse("auto").min == approximate.AUTO_MIN
    assert approximate.normalize("auto") == "faiss:auto" and approximate.normalize("faiss:Flat") == "faiss:Flat"
    assert with_recall("auto", 0.9) == "faiss:auto,recall=0.9"
    assert with_recall("faiss:hnsw,recall=0.5,min=7", 0.99) == "faiss:hnsw,min=7,recall=0.99"
    for bad, why in [("ivf-flat,recall=1.5", "recall must be in (0, 1]"), ("ivf-flat,recall=nan", "recall must"),
                     ("hnsw,k=0", "k must be"), ("ivf-sq8,nprobe=3", "cannot read option 'nprobe=3'"),
                     ("ivf-flat,min=0", "min must be")]:
        with pytest.raises(GalleryError, match=why.replace("(", r"\(").replace("]", r"\]")) as e:
            parse(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(GalleryError, match="--recall applies to an approximate index"):
        with_recall("faiss:Flat", 0.9)


def test_nlist_grows_with_the_gallery_within_faiss_training_needs():
    assert nlist_for(1_000_000) == 2048 and nlist_for(100_000) == 512
    for n in (50, 1000, 5000, 10**5, 10**7):
        assert 39 * nlist_for(n) <= max(n, 39)  # enough training points per list


def test_growth_rebuilds_every_approximate_kind_so_each_is_tuned_again_on_held_out_templates():
    for kind in ("hnsw", "ivf-flat", "ivf-pq"):
        index = ManagedIndex(DIM, parse(f"{kind},min=100"))
        index.layout = index.layout_for(1000)
        index.tuning = {"layout": index.layout, "trained_at": 1000}
        assert index.action(3999) is None and index.action(4000) == "rebuild"  # HNSW is no longer re-tuned in place


def test_exact_scan_over_chunks_is_the_true_top_k_with_the_held_out_queries_left_out():
    from verikit.index.tuning import exact_scan

    v = clustered(5, 900)
    ids = np.arange(100, 1000, dtype=np.int64)  # template ids are not row numbers
    rows = [0, 1, 2, 450, 899]  # rows 0-2 and 899 sit in different chunks, some near each other
    qids = ids[rows]
    chunks = [(ids[s:s + 256], v[s:s + 256]) for s in range(0, 900, 256)]  # the queries' own rows in 3 chunks
    found, seconds = exact_scan(chunks, qids, v[rows], 10)
    scores = v[rows] @ v.T
    scores[:, rows] = -np.inf  # no held-out template is anyone's answer: the index being measured lacks them
    assert found.tolist() == ids[np.argsort(-scores, axis=1, kind="stable")[:, :10]].tolist() and seconds > 0
    assert not np.isin(found, qids).any()


# -- behaviour in a gallery --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ivf-flat", "ivf-sq8", "ivf-pq", "hnsw"])
def test_exact_below_min_then_trained_and_tuned_recall_holds_on_new_queries(tmp_path, kind):
    vectors = clustered(0, 4000)
    target = 0.9
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index=f"faiss:{kind},min=3000,recall={target}") as g:
        fill(g, vectors[:2000])
        assert g.info()["approximate"] is None  # exact below min
        fill(g, vectors[2000:], start=2000)
        info = g.info()["approximate"]
        assert info["met"] and info["recall"] >= target and info["trained_at"] == 3000 and info["queries"] == 500  # trained at the write that crossed min
        assert info["layout"].startswith("HNSW" if kind == "hnsw" else "IVF")
        assert (info["rerank"] > 0) == (kind in ("ivf-sq8", "ivf-pq"))  # quantised codes: re-ranked exactly
        # An independent check on queries the tuning never saw: recall@10 of the gallery's own search.
        q = clustered(99, 200)
        truth = true_top(vectors, q, 10)
        hits = g.search(q, 10)
        found = [{int(h.identity[1:]) for h in row} for row in hits]
        recall = np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found, truth)])
        assert recall >= target - 0.05, (kind, recall, info)


class People:
    """A structured gallery: people (random centres in 32 dimensions) with 5 templates each, every
    template its centre plus isotropic noise as large as the centre's spread; fresh queries are new
    templates of enrolled people (a returning person). Hard enough that HNSW32 on 5,000 of them
    is well short of perfect recall at small efSearch, so the tuning has a real choice to make."""

    DIM, PER, NOISE = 32, 5, 1.0

    def __init__(self, n: int) -> None:
        self.n = n
        self.centres = np.random.default_rng(2024).standard_normal((n // self.PER, self.DIM)).astype(np.float32)

    def _draw(self, people: np.ndarray, seed: int) -> np.ndarray:
        x = self.centres[people] + self.NOISE * np.random.default_rng(seed).standard_normal(
            (len(people), self.DIM)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def templates(self) -> np.ndarray:
        return self._draw(np.arange(self.n) // self.PER, 0)

    def fresh(self, m: int) -> np.ndarray:
        return self._draw(np.random.default_rng(7).integers(0, self.n // self.PER, m), 1)


@pytest.mark.parametrize("kind", ["hnsw", "ivf-flat", "ivf-sq8"])
def test_the_recall_gallery_info_shows_is_what_fresh_queries_get(tmp_path, kind):
    """The tuning queries are held out of the index they measure (issue 12). Tuned on templates that
    were still nodes of the HNSW graph, the figure was inflated: 0.998 measured at efSearch 16
    where fresh queries got 0.937 on this data. Tolerance 0.02: about 3 standard errors of the two
    estimates together (500 tuning queries, 1,000 fresh ones, each ~0.004 at recall 0.97).
    (ivf-pq is left out: 4 bytes of code per 32-d vector cannot reach 0.97 here even re-ranked,
    and sweeping every nprobe to say so takes a minute; its tuning path is the same code.)"""
    people, target = People(5_000), 0.97
    vectors, q = people.templates(), people.fresh(1000)
    with Gallery.create(tmp_path / "g", dim=People.DIM, fingerprint="fp",
                        index=f"faiss:{kind},min={len(vectors)},recall={target}") as g:
        fill(g, vectors, batch=5000)
        info = g.info()
        tuned = info["approximate"]
        assert tuned["met"] and tuned["held_out"] and tuned["queries"] == 500 and tuned["trained_at"] == len(vectors)
        assert info["indexed_vectors"] == len(vectors)  # the held-out templates joined the index afterwards
        assert 0 < tuned["recall_se"] < 0.02
        truth = true_top(vectors, q, 10)
        found = [{int(h.identity[1:]) for h in row} for row in g.search(q, 10)]
    fresh = np.mean([len(f & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    assert fresh >= target - 0.02, (kind, fresh, tuned)
    assert abs(fresh - tuned["recall"]) <= 0.03, (kind, fresh, tuned)  # the stored figure says what users get


def test_retrained_when_grown_fourfold_and_a_reopen_trusts_the_saved_tuning(tmp_path):
    path = tmp_path / "g"
    vectors = clustered(1, 8400)
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="faiss:ivf-flat,min=2000") as g:
        fill(g, vectors[:2100], batch=2100)
        first = g.info()["approximate"]
        fill(g, vectors[2100:8300], start=2100)
        assert g.info()["approximate"] == first  # grown < 4x: the partition is kept
        fill(g, vectors[8300:], start=8300)
        second = g.info()["approximate"]
    assert first["trained_at"] == 2100 and first["layout"] == f"IVF{nlist_for(2100)},Flat"
    assert second["trained_at"] == 8400 and second["layout"] == f"IVF{nlist_for(8400)},Flat" != first["layout"]
    assert json.loads((path / INDEX_META_FILE).read_text())["tuning"]["layout"] == second["layout"]
    with Gallery.open(path) as g:  # the saved index and its tuning are loaded, not rebuilt
        assert g._index.rebuilds == 0 and g.info()["approximate"] == second
    record = json.loads((path / INDEX_META_FILE).read_text())
    record["tuning"] = None  # an approximate index.faiss whose tuning is lost is not trusted
    (path / INDEX_META_FILE).write_text(json.dumps(record))
    with Gallery.open(path) as g:
        assert g._index.rebuilds == 1 and g.info()["approximate"]["layout"] == second["layout"]


@pytest.mark.parametrize("kind", ["ivf-pq", "hnsw"])
def test_removal_and_rename_keep_working(tmp_path, kind):
    vectors = clustered(2, 3000)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index=f"faiss:{kind},min=2000") as g:
        fill(g, vectors)
        assert g.info()["approximate"] is not None
        assert g.search(vectors[5], 1)[0][0].identity == "p5"
        g.remove("p5")
        g.rename("p6", "renamed")
        assert all(h.identity != "p5" for h in g.search(vectors[5], 20)[0])
        assert g.search(vectors[6], 1)[0][0].identity == "renamed"
        assert g.info()["indexed_vectors"] == 2999 and g.info()["approximate"] is not None
    with Gallery.open(tmp_path / "g") as g:
        assert g.search(vectors[6], 1)[0][0].identity == "renamed" and g.check() == []


def test_auto_is_exact_until_its_documented_size(tmp_path):
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index="auto") as g:
        fill(g, clustered(3, 500))
        assert g.info()["index"] == "faiss:auto" and g.info()["approximate"] is None
    assert ManagedIndex(DIM, parse("auto")).layout_for(approximate.AUTO_MIN - 1) == "Flat"
    assert ManagedIndex(DIM, parse("auto")).layout_for(approximate.AUTO_MIN).startswith("IVF")


def test_auto_falls_back_to_exact_when_measured_not_worth_it_and_keeps_ivf_where_data_has_structure(tmp_path):
    """auto never serves an approximate index slower than exact search: isotropic random vectors in
    64-d have no neighbourhood structure (recall 0.95 needs nprobe near nlist), clustered ones do."""
    from verikit.index.tuning import MIN_SPEEDUP

    dim, n = 64, 10_000
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(300, dim))
    clustered64 = centres[rng.integers(0, 300, n)] + 0.6 * rng.normal(size=(n, dim))
    isotropic = rng.normal(size=(n, dim))
    for name, raw in (("clustered", clustered64), ("isotropic", isotropic)):
        vectors = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)
        path = tmp_path / name
        with Gallery.create(path, dim=dim, fingerprint="fp", index=f"auto,min={n}") as g:
            for s in range(0, n, 2500):
                g.add_many({f"p{i}": (vectors[i:i + 1], None) for i in range(s, s + 2500)})
            info = g.info()["approximate"]
            hits = g.search(vectors[:50], 10)
        if name == "clustered":  # the partition pays: IVF kept, at its measured recall and speed
            assert info["layout"].startswith("IVF") and "fallback" not in info, info
            assert info["met"] and info["speedup"] >= MIN_SPEEDUP
            continue
        nlist = int(info["tried"]["layout"][3:].split(",")[0])
        assert info["fallback"] == "exact" and info["layout"] == "Flat" and info["trained_at"] == n, info
        assert info["tried"]["speedup"] < MIN_SPEEDUP or not info["tried"]["met"]
        if "became as slow as the exact scan" in info["reason"]:
            # The sweep stopped where a wider search cost as much as the exact scan, short of the
            # recall: where that happens depends on the machine's load (seen at nprobe 60 of 256
            # on a busy CI machine), what must hold is that the target was not met there.
            assert not info["tried"]["met"] and info["tried"]["recall"] < info["target"], info
        else:  # the recall was met, but only by a search over much of the partition
            assert info["tried"]["value"] >= nlist // 4, info
        assert "searching exactly" in info["reason"] and "\n" not in info["reason"]
        truth = true_top(vectors, vectors[:50], 10)  # served exactly: the true top-10, nothing approximate
        assert [[int(h.identity[1:]) for h in row] for row in hits] == truth.tolist()
        with Gallery.open(path) as g:  # the decision is saved with the index: not re-measured on open
            assert g._index.rebuilds == 0 and g.info()["approximate"] == info
        record = json.loads((path / INDEX_META_FILE).read_text())["tuning"]
        assert record["fallback"] == "exact"
    m = ManagedIndex(dim, parse(f"auto,min={n}"))
    m.restore({"layout": "Flat", "fallback": "exact", "trained_at": n})  # grown 4x: measured again
    assert m.action(n) is None and m.action(4 * n - 1) is None and m.action(4 * n) == "rebuild"


# -- other processes, crashes ---------------------------------------------------------------------------
WRITER = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    v = np.load(sys.argv[2])
    with Gallery.open(sys.argv[1]) as g:
        g.add_many({f"w{i}": (v[i:i + 1], None) for i in range(len(v))})
    print("DONE", flush=True)
"""


def test_a_reader_adopts_the_index_another_process_trained(tmp_path):
    """A writer crosses the training size; a long-lived reader in flat mode sees the change on its
    next search and loads the writer's trained index instead of training again."""
    path = tmp_path / "g"
    vectors = clustered(4, 3000)
    np.save(tmp_path / "v.npy", vectors[1000:])
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="faiss:ivf-flat,min=2500") as g:
        fill(g, vectors[:1000])
    with Gallery.open(path) as reader:
        before = reader._index.rebuilds
        assert reader.info()["approximate"] is None
        r = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), str(path), str(tmp_path / "v.npy")],
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0 and r.stdout.strip() == "DONE", r.stderr
        assert reader.search(vectors[1500], 1)[0][0].identity == "w500"
        saved = json.loads((path / INDEX_META_FILE).read_text())["tuning"]
        assert reader.info()["approximate"]["layout"] == saved["layout"]
        assert reader._index.rebuilds == before  # adopted, not retrained


KILLED = """
    import sys, numpy as np
    from verikit.index.gallery import Gallery
    v = np.load(sys.argv[2])
    with Gallery.open(sys.argv[1]) as g:
        g.add_many({f"w{i}": (v[i:i + 1], None) for i in range(len(v))})
"""


def test_a_writer_killed_after_committing_past_the_training_size_leaves_a_sound_gallery(tmp_path):
    path = tmp_path / "g"
    vectors = clustered(5, 3000)
    np.save(tmp_path / "v.npy", vectors[1000:])
    with Gallery.create(path, dim=DIM, fingerprint="fp", index="faiss:ivf-sq8,min=2500") as g:
        fill(g, vectors[:1000])
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED), str(path), str(tmp_path / "v.npy")],
                             stderr=subprocess.PIPE, text=True, env={**ENV, "VERIKIT_TEST_STOP_AT": "write-committed"})
    for line in child.stderr:
        if line.strip() == "verikit-marker: write-committed":
            break
    else:
        pytest.fail("the writer never committed")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    with Gallery.open(path) as g:  # committed, index never trained nor saved: this process does it
        assert g.n_templates == 3000 and g.info()["indexed_vectors"] == 3000
        assert g.info()["approximate"]["met"] and g.search(vectors[2999], 1)[0][0].identity == "w1999"
    with Gallery.open(path) as g:
        assert g._index.rebuilds == 0 and g.check() == []


def test_cli_enroll_recall_and_gallery_info_show_the_measured_figure(tmp_path, tiny_model_dir):
    from tests.conftest import pattern_people

    people = pattern_people(tmp_path / "people", 6, 2, size=32)
    gallery = tmp_path / "g"
    base = [sys.executable, "-m", "verikit.cli.main"]
    bad = subprocess.run(base + ["enroll", "--from-folder", str(people), "-m", str(tiny_model_dir), "-g", str(gallery),
                                 "--recall", "0.9"], capture_output=True, text=True, env=ENV, timeout=300)
    assert bad.returncode == 2 and "--recall applies to an approximate index" in bad.stderr
    r = subprocess.run(base + ["enroll", "--from-folder", str(people), "-m", str(tiny_model_dir), "-g", str(gallery),
                               "--index", "faiss:ivf-flat,min=10", "--recall", "0.9", "--quiet"],
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    info = subprocess.run(base + ["gallery", "info", "-g", str(gallery), "--format", "json"], capture_output=True,
                          text=True, env=ENV, timeout=300)
    d = json.loads(info.stdout)
    assert d["index"] == "faiss:ivf-flat,min=10,recall=0.9"
    assert d["approximate"]["target"] == 0.9 and d["approximate"]["recall"] >= 0.9 and d["approximate"]["trained_at"] == 12


# -- the GPU path (no GPU here: the CPU fallback and the mirror's invalidation are what run) ----------
def test_gpu_mirror_is_dropped_on_every_change_and_the_cpu_answers_without_a_gpu(monkeypatch):
    from verikit.index import gpu
    from verikit.index.faiss_backend import FaissIndex

    monkeypatch.setenv("VERIKIT_FAISS_GPU", "0")
    assert gpu.gpus() == 0
    monkeypatch.delenv("VERIKIT_FAISS_GPU")
    index = FaissIndex(DIM, "IVF4,Flat")
    v = clustered(6, 400)
    for change in (lambda: index.train(v), lambda: index.add(np.arange(400), v),
                   lambda: index.remove(np.arange(10))):
        index._gpu.index = "a stale GPU copy"
        change()
        assert index._gpu.index is None  # never searched again: a fresh copy is made from the CPU index
    assert index._gpu.search(index.index, v[:2], 5) is None or gpu.gpus() > 0  # CPU build: the CPU answers
    scores, ids = index.search(v[10:12], 1)
    assert ids[:, 0].tolist() == [10, 11]
