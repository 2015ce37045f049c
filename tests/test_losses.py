"""Loss and miner wiring with every distance: explicit-loop oracles on small tensors."""

from __future__ import annotations

import itertools

import pytest
import torch

from verikit.errors import DataError
from verikit.similarity import parse_measure
from verikit.train.losses import build_loss, build_miner

DISTANCES = ["cosine", "dot", "l2", "squared_l2", "l1", "rbf:0.8"]
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])


def _embeddings(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(len(LABELS), 5, generator=g, dtype=torch.float64), dim=1)


def _pair(spec: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """The measure's raw value (distance, or similarity) of two unit vectors, by hand."""
    m, d = parse_measure(spec), a - b
    if m.name == "rbf":
        return float(torch.exp(-(d @ d) / m.sigma ** 2))
    return {"cosine": float(a @ b), "dot": float(a @ b), "l2": float(d.norm()), "squared_l2": float(d @ d),
            "l1": float(d.abs().sum())}[m.name]


def _is_similarity(spec: str) -> bool:
    return parse_measure(spec).name in ("cosine", "dot", "rbf")


@pytest.mark.parametrize("spec", DISTANCES)
def test_triplet_loss_matches_explicit_loop(spec):
    x = _embeddings()
    margin = 0.1
    got = build_loss("triplet", margin=margin, distance=spec)(x, LABELS)
    losses = []
    for a, p, n in itertools.permutations(range(len(LABELS)), 3):
        if LABELS[a] == LABELS[p] and LABELS[a] != LABELS[n]:
            ap, an = _pair(spec, x[a], x[p]), _pair(spec, x[a], x[n])
            # similarities want s(a,p) > s(a,n) + margin; distances want d(a,n) > d(a,p) + margin
            violation = (an - ap if _is_similarity(spec) else ap - an) + margin
            losses.append(max(0.0, violation))
    positive = [v for v in losses if v > 0]  # pytorch-metric-learning averages the non-zero triplets
    assert positive, "the oracle must exercise some violated triplets"
    assert float(got) == pytest.approx(sum(positive) / len(positive), rel=1e-6)


@pytest.mark.parametrize("spec", DISTANCES)
def test_contrastive_loss_matches_explicit_loop(spec):
    x = _embeddings(1)
    got = build_loss("contrastive", distance=spec)(x, LABELS)
    pos_terms, neg_terms = [], []
    for i, j in itertools.permutations(range(len(LABELS)), 2):
        v = _pair(spec, x[i], x[j])
        if _is_similarity(spec):  # positives pulled to 1, negatives pushed below 0.5
            (pos_terms if LABELS[i] == LABELS[j] else neg_terms).append(
                max(0.0, 1.0 - v) if LABELS[i] == LABELS[j] else max(0.0, v - 0.5))
        else:  # positives pulled to 0, negatives pushed beyond 1.0
            (pos_terms if LABELS[i] == LABELS[j] else neg_terms).append(
                max(0.0, v) if LABELS[i] == LABELS[j] else max(0.0, 1.0 - v))

    def avg_nonzero(v):
        nz = [t for t in v if t > 0]
        return sum(nz) / len(nz) if nz else 0.0

    assert float(got) == pytest.approx(avg_nonzero(pos_terms) + avg_nonzero(neg_terms), rel=1e-6)


@pytest.mark.parametrize("spec", DISTANCES)
@pytest.mark.parametrize("loss", ["triplet", "contrastive", "multi_similarity"])
@pytest.mark.parametrize("miner", ["batch_hard", "semihard", "multi_similarity"])
def test_loss_and_miner_train_with_every_distance(spec, loss, miner):
    x = _embeddings(2).clone().requires_grad_(True)
    mine = build_miner(miner, distance=spec)
    assert mine.distance.is_inverted == _is_similarity(spec)
    fn = build_loss(loss, distance=spec)
    value = fn(x, LABELS, mine(x, LABELS))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_batch_hard_miner_picks_the_hardest_pairs_under_the_measure():
    x = _embeddings(3)
    for spec in ("l1", "rbf:0.8"):
        anchors, positives, negatives = build_miner("batch_hard", distance=spec)(x, LABELS)  # triplets
        sim = _is_similarity(spec)
        for a, p, n in zip(anchors.tolist(), positives.tolist(), negatives.tolist()):
            pos = [j for j in range(len(LABELS)) if j != a and LABELS[j] == LABELS[a]]
            neg = [j for j in range(len(LABELS)) if LABELS[j] != LABELS[a]]
            hardest_p = (min if sim else max)(pos, key=lambda j: _pair(spec, x[a], x[j]))
            hardest_n = (max if sim else min)(neg, key=lambda j: _pair(spec, x[a], x[j]))
            assert (p, n) == (hardest_p, hardest_n)


def test_proxy_losses_are_cosine_only():
    assert build_loss("normalized_softmax", num_classes=3, embedding_size=5, distance="dot") is not None
    with pytest.raises(DataError, match="defined on the cosine"):
        build_loss("arcface", num_classes=3, embedding_size=5, distance="rbf")


def test_unknown_distance_is_one_clear_error():
    with pytest.raises(DataError, match="unknown similarity/distance 'hamming'"):
        build_loss("triplet", distance="hamming")
    with pytest.raises(DataError, match="unknown similarity/distance"):
        build_miner("batch_hard", distance="hamming")
