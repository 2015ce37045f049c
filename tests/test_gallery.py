"""Gallery: SQLite as the source of truth, the faiss index derived from it, exact search, safe changes."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from verikit.errors import DataError, FingerprintMismatchError, GalleryError, IdentityNotFoundError
from verikit.index.gallery import DB_FILE, INDEX_FILE, INDEX_META_FILE, Gallery

DIM = 8


def unit(rng, n, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def gallery(tmp_path):
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp-a") as g:
        yield g


def brute_force_top_k(templates: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The oracle: every identity's best template score, sorted, by an explicit loop."""
    best = {name: float(max(t @ q for t in vecs)) for name, vecs in templates.items()}
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


@pytest.mark.parametrize("per_identity", [1, 3, 7])
def test_search_equals_brute_force_over_identities(gallery, per_identity):
    rng = np.random.default_rng(per_identity)
    templates = {f"p{i}": unit(rng, int(rng.integers(1, per_identity + 1))) for i in range(40)}
    gallery.add_many({n: (v, None) for n, v in templates.items()})
    queries = unit(rng, 25)
    for q, hits in zip(queries, gallery.search(queries, top_k=5)):
        expected = brute_force_top_k(templates, q, 5)
        assert [h.identity for h in hits] == [n for n, _ in expected]
        np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-5, atol=1e-6)


def test_search_with_top_k_larger_than_gallery(gallery):
    rng = np.random.default_rng(0)
    gallery.add("a", unit(rng, 2))
    gallery.add("b", unit(rng, 1))
    hits = gallery.search(unit(rng, 1), top_k=10)[0]
    assert sorted(h.identity for h in hits) == ["a", "b"]


def test_empty_gallery_search_returns_no_hits(gallery):
    assert gallery.search(unit(np.random.default_rng(0), 2), top_k=3) == [[], []]


def test_score_is_best_template_cosine(gallery):
    rng = np.random.default_rng(1)
    t = unit(rng, 4)
    gallery.add("x", t)
    q = unit(rng, 1)[0]
    assert gallery.score(q, "x") == pytest.approx(float((t @ q).max()), abs=1e-6)


def test_vectors_are_normalised_on_the_way_in(gallery):
    gallery.add("x", np.full((1, DIM), 3.0, np.float32))
    assert np.linalg.norm(gallery.templates("x")[0]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, DIM + 1), np.float32), "expected vectors of size 8"),
    (np.full((1, DIM), np.nan, np.float32), "NaN"),
    (np.zeros((1, DIM), np.float32), "zero vector"),
    (np.zeros((0, DIM), np.float32), "no vectors"),
])
def test_bad_vectors_are_refused_and_nothing_changes(gallery, bad, message):
    before = gallery.generation
    with pytest.raises(DataError, match=message):
        gallery.add("x", bad)
    assert gallery.generation == before and len(gallery) == 0


def test_enroll_appends_templates_and_lists_identities(gallery):
    rng = np.random.default_rng(2)
    gallery.add("alice", unit(rng, 2), sources=["a1.jpg", "a2.jpg"], metadata={"team": "red"})
    gallery.add("alice", unit(rng, 1), sources=["a3.jpg"])
    gallery.add("bob", unit(rng, 1))
    people = {p.name: p for p in gallery.identities()}
    assert people["alice"].n_templates == 3 and people["bob"].n_templates == 1
    assert gallery.identity("alice").sources == ("a1.jpg", "a2.jpg", "a3.jpg")
    assert gallery.identity("alice").metadata == {"team": "red"}
    assert gallery.n_templates == 4 and "alice" in gallery and "carol" not in gallery


def test_remove_really_deletes_templates(tmp_path):
    rng = np.random.default_rng(3)
    secret = unit(rng, 1)
    other = unit(rng, 1)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        g.add("secret", secret)
        g.add("other", other)
        assert g.remove("secret") == 1
        assert "secret" not in g
        assert [h.identity for h in g.search(secret, top_k=5)[0]] == ["other"]
    # Not just unlinked: the vector's bytes are gone from every file of the gallery.
    needle = np.ascontiguousarray(secret[0]).tobytes()
    for f in (tmp_path / "g").iterdir():
        assert needle not in f.read_bytes(), f"removed template still readable in {f.name}"
    with Gallery.open(tmp_path / "g") as g:
        assert g.info()["indexed_vectors"] == 1


def test_rename_and_metadata(gallery):
    gallery.add("old", unit(np.random.default_rng(4), 1))
    gallery.add("taken", unit(np.random.default_rng(5), 1))
    gallery.rename("old", "new")
    assert "new" in gallery and "old" not in gallery
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.rename("new", "taken")
    gallery.set_metadata("new", {"role": "admin", "x": "1"})
    gallery.set_metadata("new", {"x": None})
    assert gallery.identity("new").metadata == {"role": "admin"}
    assert gallery.search(unit(np.random.default_rng(4), 1), 1)[0][0].identity == "new"


def test_unknown_identity_and_bad_names(gallery):
    with pytest.raises(IdentityNotFoundError, match="'ghost' is not enrolled"):
        gallery.remove("ghost")
    for bad in ["", " padded ", "two\nlines"]:
        with pytest.raises(GalleryError, match="invalid identity name"):
            gallery.add(bad, unit(np.random.default_rng(0), 1))


def test_audit_log_records_every_change(gallery):
    rng = np.random.default_rng(6)
    gallery.add("a", unit(rng, 2))
    gallery.add("a", unit(rng, 1))
    gallery.rename("a", "b")
    gallery.remove("b")
    actions = [e["action"] for e in gallery.audit_log()]
    assert actions == ["remove", "rename", "add_templates", "enroll", "create"]


def test_a_failure_inside_the_transaction_rolls_everything_back(gallery, monkeypatch):
    rng = np.random.default_rng(7)
    gallery.add("keep", unit(rng, 1))
    generation = gallery.generation
    calls = {"n": 0}
    real_audit = Gallery._audit

    def failing_audit(self, cur, action, identity, detail, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # after the first identity of the batch was written
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return real_audit(self, cur, action, identity, detail, **kw)

    monkeypatch.setattr(Gallery, "_audit", failing_audit)
    # sqlite's error reaches the caller as one GalleryError line naming the gallery
    with pytest.raises(GalleryError, match=r"gallery '.*': disk I/O error \(simulated\)"):
        gallery.add_many({"n1": (unit(rng, 2), None), "n2": (unit(rng, 2), None)})
    monkeypatch.undo()
    assert [p.name for p in gallery.identities()] == ["keep"]
    assert gallery.generation == generation and gallery.n_templates == 1
    assert gallery.info()["indexed_vectors"] == 1


def test_fingerprint_mismatch_is_refused_with_advice(tmp_path):
    Gallery.create(tmp_path / "g", dim=DIM, fingerprint="a" * 64).close()
    with pytest.raises(FingerprintMismatchError, match="use the model it was built with"):
        Gallery.open(tmp_path / "g", fingerprint="b" * 64)
    Gallery.open(tmp_path / "g", fingerprint="a" * 64).close()


def test_create_refuses_existing_and_open_refuses_missing(tmp_path):
    Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp").close()
    with pytest.raises(GalleryError, match="already exists"):
        Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp")
    with pytest.raises(GalleryError, match="no gallery at"):
        Gallery.open(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="not a readable verikit gallery"):
        Gallery.open(tmp_path / "junk")


def test_stale_or_corrupt_index_is_rebuilt_from_sqlite(tmp_path):
    rng = np.random.default_rng(8)
    data = {f"p{i}": unit(rng, 2) for i in range(10)}
    q = unit(rng, 3)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        g.add_many({n: (v, None) for n, v in data.items()})
        expected = g.search(q, 3)
    # 1) the process died after the commit but before the index was saved: generation lags
    state = json.loads((tmp_path / "g" / INDEX_META_FILE).read_text())
    state["generation"] -= 1
    (tmp_path / "g" / INDEX_META_FILE).write_text(json.dumps(state))
    with Gallery.open(tmp_path / "g") as g:
        assert g.search(q, 3) == expected
    assert json.loads((tmp_path / "g" / INDEX_META_FILE).read_text())["generation"] == state["generation"] + 1
    # 2) the index file is garbage
    (tmp_path / "g" / INDEX_FILE).write_bytes(b"\x00garbage" * 10)
    with Gallery.open(tmp_path / "g") as g:
        assert g.search(q, 3) == expected
    # 3) the index files are gone
    (tmp_path / "g" / INDEX_FILE).unlink()
    (tmp_path / "g" / INDEX_META_FILE).unlink()
    with Gallery.open(tmp_path / "g") as g:
        assert g.search(q, 3) == expected


@pytest.mark.parametrize("index", ["faiss:HNSW16", "faiss:IVF4,Flat"])
def test_other_faiss_indexes_add_remove_and_reopen(tmp_path, index):
    rng = np.random.default_rng(9)
    data = {f"p{i}": unit(rng, 3) for i in range(60)}
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index=index) as g:
        g.add_many({n: (v, None) for n, v in data.items()})
        g.remove("p0")  # HNSW cannot remove: the gallery rebuilds the index instead
        g.add("late", unit(rng, 1))
        assert g.info()["indexed_vectors"] == 59 * 3 + 1
    with Gallery.open(tmp_path / "g") as g:
        probe = data["p5"][0]
        assert g.search(probe, 1)[0][0].identity == "p5"
        assert all(h.identity != "p0" for h in g.search(data["p0"][0], 10)[0])


def test_bad_index_spec_fails_before_creating_anything(tmp_path):
    with pytest.raises(GalleryError, match="faiss cannot build index"):
        Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index="faiss:NotAnIndex99")
    assert not (tmp_path / "g" / DB_FILE).exists()


def test_rename_and_metadata_leave_the_saved_index_untouched(tmp_path):
    rng = np.random.default_rng(11)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        g.add("a", unit(rng, 2))
    index_file = tmp_path / "g" / INDEX_FILE
    before = (index_file.stat().st_mtime_ns, json.loads((tmp_path / "g" / INDEX_META_FILE).read_text()))
    with Gallery.open(tmp_path / "g") as g:
        g.rename("a", "b")
        g.set_metadata("b", {"k": "v"})
    assert (index_file.stat().st_mtime_ns, json.loads((tmp_path / "g" / INDEX_META_FILE).read_text())) == before
    with Gallery.open(tmp_path / "g") as g:  # still fresh: no rebuild, and the renamed identity is found
        assert g.search(g.templates("b"), 1)[0][0].identity == "b"
    assert index_file.stat().st_mtime_ns == before[0]
