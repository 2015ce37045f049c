"""Distances and similarities: training-side (pytorch-metric-learning) and scoring-side
(verikit.similarity) against hand computations, and the gallery scoring with the model's measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from verikit.errors import DataError
from verikit.evaluate.pairs import all_pairs
from verikit.similarity import MEASURES, parse_measure
from verikit.train.distances import build_distance

# Unit vectors in 2-D, chosen so every distance is easy to work out by hand.
A = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
B = np.array([[1.0, 0.0], [0.0, -1.0]])
COS = np.array([[1.0, 0.0], [0.6, -0.8], [0.0, -1.0]])
SQ_L2 = np.array([[0.0, 2.0], [0.8, 3.6], [2.0, 4.0]])          # (dx^2 + dy^2) per pair
L1 = np.array([[0.0, 2.0], [1.2, 2.4], [2.0, 2.0]])             # |dx| + |dy| per pair

RAW = {  # what the pytorch-metric-learning distance returns (distances or similarities)
    "cosine": COS, "dot": COS, "l2": np.sqrt(SQ_L2), "squared_l2": SQ_L2, "l1": L1,
    "rbf:0.5": np.exp(-SQ_L2 / 0.25),
}
PUBLIC = {  # verikit's public scores: higher = more alike
    "cosine": COS, "dot": COS, "l2": 1 / (1 + np.sqrt(SQ_L2)), "squared_l2": 1 / (1 + SQ_L2),
    "l1": 1 / (1 + L1), "rbf:0.5": np.exp(-SQ_L2 / 0.25),
}


@pytest.mark.parametrize("spec", list(RAW))
def test_training_distance_matches_hand_computation(spec):
    dist = build_distance(spec)
    got = dist(torch.tensor(A, dtype=torch.float64), torch.tensor(B, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, RAW[spec], atol=1e-6)
    # similarities say "larger is closer" so losses and miners flip their comparisons
    assert dist.is_inverted == (spec in ("cosine", "dot", "rbf:0.5"))


@pytest.mark.parametrize("spec", ["l2", "squared_l2", "l1", "rbf:0.5", "cosine"])
def test_training_distance_sees_unit_l2_vectors_like_the_gallery(spec):
    # Scaled inputs give the same values: every measure L2-normalises first (l1 too, not to unit L1 norm).
    dist = build_distance(spec)
    got = dist(torch.tensor(3 * A), torch.tensor(0.5 * B)).numpy()
    np.testing.assert_allclose(got, RAW[spec], atol=1e-6)


@pytest.mark.parametrize("spec", list(PUBLIC))
def test_public_scores_match_hand_computation(spec):
    m = parse_measure(spec)
    np.testing.assert_allclose(m.scores(A, B), PUBLIC[spec], atol=1e-12)
    np.testing.assert_allclose(m.pair_scores(A[:2], B), np.diag(PUBLIC[spec][:2]), atol=1e-12)


@pytest.mark.parametrize("spec", ["l2", "squared_l2", "l1"])
def test_distance_scores_invert_exactly(spec):
    m = parse_measure(spec)
    raw = {"l2": np.sqrt(SQ_L2), "squared_l2": SQ_L2, "l1": L1}[spec]
    np.testing.assert_allclose(m.distance_of(m.scores(A, B)), raw, atol=1e-12)


@pytest.mark.parametrize("spec", ["cosine", "dot", "l2", "squared_l2", "rbf", "rbf:0.3"])
def test_from_cosine_equals_scoring_the_unit_vectors(spec):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m = parse_measure(spec)
    np.testing.assert_allclose(m.from_cosine(x @ x[:5].T), m.scores(x, x[:5]), atol=1e-7)


def test_l1_is_not_a_function_of_the_cosine():
    with pytest.raises(DataError, match="not a function of the cosine"):
        parse_measure("l1").from_cosine([0.5])
    # Two pairs with the same cosine but different L1 distances: a cosine index cannot rank L1.
    a = np.array([[1.0, 0.0, 0.0]])
    b1 = np.array([[0.0, 1.0, 0.0]])
    b2 = np.array([[0.0, math.sqrt(0.5), math.sqrt(0.5)]])
    m = parse_measure("l1")
    assert float((a @ b1.T)[0, 0]) == float((a @ b2.T)[0, 0])
    assert m.scores(a, b1)[0, 0] != pytest.approx(m.scores(a, b2)[0, 0])


def test_parse_measure_specs_and_errors():
    assert parse_measure("RBF:0.50").spec == "rbf:0.5"
    assert parse_measure("rbf").sigma == 1.0
    assert parse_measure(None).spec == "cosine"
    assert parse_measure("squared-l2").name == "squared_l2"
    assert set(MEASURES) == {"cosine", "dot", "l2", "squared_l2", "l1", "rbf"}
    for bad, msg in [("manhattan", "unknown similarity"), ("rbf:-1", "positive"), ("rbf:x", "number"),
                     ("l2:3", "takes no argument")]:
        with pytest.raises(DataError, match=msg):
            parse_measure(bad)


@pytest.mark.parametrize("spec", ["rbf:0.7", "l1"])
def test_all_pairs_matches_explicit_pairs(spec):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = [0, 0, 1, 1, 1, 2, 2, 3, 3]
    m = parse_measure(spec)
    genuine, impostor = all_pairs(x, labels, spec)
    want_g = [m.pair_scores(x[i], x[j])[0] for i in range(9) for j in range(i + 1, 9) if labels[i] == labels[j]]
    want_i = [m.pair_scores(x[i], x[j])[0] for i in range(9) for j in range(i + 1, 9) if labels[i] != labels[j]]
    np.testing.assert_allclose(genuine, want_g, atol=1e-5)
    np.testing.assert_allclose(impostor, want_i, atol=1e-5)


def test_rbf_gradient_is_finite_at_identical_points():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], requires_grad=True)
    build_distance("rbf:0.5")(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# -- the gallery scores with the recorded measure ---------------------------------------------------

def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("spec", ["rbf:0.7", "l2", "l1", "cosine"])
def test_gallery_scores_and_ranks_with_its_measure(tmp_path, spec):
    from verikit.index.gallery import Gallery

    rng = np.random.default_rng(2)
    templates = {f"p{i}": _unit(rng, 3, 6) for i in range(5)}
    probes = _unit(rng, 4, 6)
    m = parse_measure(spec)
    with Gallery.create(tmp_path / "g", dim=6, fingerprint="f", similarity=spec) as g:
        g.add_many({n: (v, None) for n, v in templates.items()})
        assert g.info()["similarity"] == m.spec
        best = {n: m.scores(probes, v).max(axis=1) for n, v in templates.items()}  # (probes,) per identity
        for k, hits in enumerate(g.search(probes, top_k=3)):
            want = sorted(best, key=lambda n: -best[n][k])[:3]
            assert [h.identity for h in hits] == want
            np.testing.assert_allclose([h.score for h in hits], [best[n][k] for n in want], atol=2e-6)
        np.testing.assert_allclose(g.score(probes[0], "p3"), best["p3"][0], atol=1e-6)
    with Gallery.open(tmp_path / "g") as g:  # the measure is recorded, not remembered by the caller
        assert g.measure.spec == m.spec


def test_model_trained_with_rbf_gives_gallery_scores_exp_of_squared_distance(synthetic_faces, tmp_path):
    from verikit.io import scan_identity_folders
    from verikit.models.embedder import Embedder
    from verikit.models.inference import embed_files
    from verikit.pipeline.operations import enroll, open_gallery_for, verify
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    sigma = 0.7
    cfg = TrainConfig(backbone="timm:test_resnet", embedding_size=16, image_size=(32, 32), epochs=1, batch_size=8,
                      m_per_class=2, loss="contrastive", distance=f"rbf:{sigma}", val_fraction=0, warmup_epochs=0)
    result = train(synthetic_faces, cfg)
    assert result.model.config.similarity == "rbf:0.7"
    result.model.save(tmp_path / "m")
    model = Embedder.load(tmp_path / "m")
    assert model.config.similarity == "rbf:0.7"

    people = scan_identity_folders(synthetic_faces).by_identity
    enrolled = {n: ps[:3] for n, ps in people.items()}
    probe = people["id1"][3]
    with open_gallery_for(model, tmp_path / "g", create=True) as g:
        enroll(model, g, enrolled, num_workers=0)
        decision = verify(model, g, probe, "id1", threshold=0.5)
        hits = g.search(embed_files(model, [probe], num_workers=0).embeddings, top_k=4)[0]
    emb = embed_files(model, [probe, *enrolled["id1"]], num_workers=0).embeddings
    want = max(math.exp(-float(np.sum((emb[0] - t) ** 2)) / sigma ** 2) for t in emb[1:])
    assert decision.score == pytest.approx(want, abs=1e-5)
    assert {h.identity: h.score for h in hits}["id1"] == pytest.approx(want, abs=1e-5)
