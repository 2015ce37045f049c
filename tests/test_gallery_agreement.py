"""`gallery check` proves the derived index agrees with SQLite (verikit.index.agreement): counts,
ids as sets, and stored vectors read back from a faiss:Flat index (Milvus: plugins/verikit-milvus)."""

from __future__ import annotations

import numpy as np

from verikit.index.gallery import Gallery

DIM = 8


def unit(rng, n):
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_check_compares_ids_and_sampled_vectors_of_a_flat_index(tmp_path):
    rng = np.random.default_rng(0)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        for i in range(4):
            g.add(f"p{i}", unit(rng, 3))
        report = g.check_report()
        assert report["problems"] == [] and report["index"] == {
            "templates": 12, "indexed_vectors": 12, "ids_compared": True, "vectors_sampled": 12}
        index = g._index.backend.index  # change one stored vector behind the gallery's back
        index.remove_ids(np.array([5], dtype=np.int64))
        index.add_with_ids(unit(rng, 1), np.array([5], dtype=np.int64))
        assert any("1 of 12 sampled vectors in the index differ" in p and "[5]" in p for p in g.check())


def test_check_of_a_quantised_index_compares_ids_but_not_vectors(tmp_path):
    rng = np.random.default_rng(1)
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp", index="faiss:IVF2,SQ8") as g:
        g.add("a", unit(rng, 100))
        report = g.check_report()
        assert report["problems"] == [] and report["index"]["ids_compared"] and report["index"]["vectors_sampled"] == 0
