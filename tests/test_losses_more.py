"""NT-Xent, the pair-margin miner and the proxy losses sub-center ArcFace and ProxyAnchor:
explicit-loop oracles on small tensors, and proxy losses that learn on a few steps."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests.test_losses import LABELS, _embeddings, _is_similarity, _pair  # shared hand computations
from verikit.errors import DataError
from verikit.train.losses import (LOSSES, MINERS, NTXENT_TEMPERATURE, PROXY_LOSSES, build_loss, build_miner,
                                  pair_margins)



def test_new_names_are_listed():
    assert {"ntxent", "subcenter_arcface", "proxy_anchor"} <= set(LOSSES)
    assert {"subcenter_arcface", "proxy_anchor"} <= set(PROXY_LOSSES) and "ntxent" not in PROXY_LOSSES
    assert "pair_margin" in MINERS


@pytest.mark.parametrize("spec", ["cosine", "l2"])
def test_ntxent_matches_explicit_loop(spec):
    """For each ordered positive pair (a, p): -log(e^(s_ap/t) / (e^(s_ap/t) + sum over the anchor's
    negatives n of e^(s_an/t))), s the similarity (minus the distance for distances), averaged."""
    x = _embeddings(4)
    got = build_loss("ntxent", distance=spec)(x, LABELS)
    sign = 1.0 if _is_similarity(spec) else -1.0
    t = NTXENT_TEMPERATURE
    terms = []
    for a, p in itertools.permutations(range(len(LABELS)), 2):
        if LABELS[a] != LABELS[p]:
            continue
        pos = math.exp(sign * _pair(spec, x[a], x[p]) / t)
        negs = sum(math.exp(sign * _pair(spec, x[a], x[n]) / t) for n in range(len(LABELS)) if LABELS[n] != LABELS[a])
        terms.append(-math.log(pos / (pos + negs)))
    assert float(got) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_ntxent_has_no_margin():
    with pytest.raises(DataError, match="no margin"):
        build_loss("ntxent", margin=0.3)


@pytest.mark.parametrize("spec", ["cosine", "l2", "rbf:2"])
def test_pair_margin_miner_matches_explicit_loop(spec):
    x = _embeddings(5)
    margin = 0.3
    pos_margin, neg_margin = pair_margins(spec, margin)
    a1, p, a2, n = build_miner("pair_margin", margin=margin, distance=spec)(x, LABELS)
    got_pos = set(zip(a1.tolist(), p.tolist()))
    got_neg = set(zip(a2.tolist(), n.tolist()))
    want_pos, want_neg = set(), set()
    for i, j in itertools.permutations(range(len(LABELS)), 2):
        v = _pair(spec, x[i], x[j])
        if LABELS[i] == LABELS[j]:
            # hard positives: less similar than 1 - margin, or farther than margin
            if (v < 1 - margin) if _is_similarity(spec) else (v > margin):
                want_pos.add((i, j))
        elif (v > 0.5) if _is_similarity(spec) else (v < 1.0):  # negatives inside the contrastive margin
            want_neg.add((i, j))
    assert (pos_margin, neg_margin) == ((1 - margin, 0.5) if _is_similarity(spec) else (margin, 1.0))
    assert want_pos and want_neg, "the oracle must select something"
    assert got_pos == want_pos and got_neg == want_neg


def test_pair_margin_miner_feeds_a_pair_loss():
    x = _embeddings(6).clone().requires_grad_(True)
    value = build_loss("contrastive")(x, LABELS, build_miner("pair_margin")(x, LABELS))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["subcenter_arcface", "proxy_anchor"])
def test_proxy_losses_learn(name):
    """Built with one proxy per identity, they train (embeddings and proxies) and the loss falls."""
    torch.manual_seed(0)
    labels = torch.arange(4).repeat_interleave(4)
    feats = torch.randn(len(labels), 12)
    net = torch.nn.Linear(12, 8)
    fn = build_loss(name, num_classes=4, embedding_size=8)
    assert sum(p.numel() for p in fn.parameters()) >= 4 * 8
    opt = torch.optim.Adam([*net.parameters(), *fn.parameters()], lr=0.05)
    values = []
    for _ in range(15):
        loss = fn(torch.nn.functional.normalize(net(feats), dim=1), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < 0.5 * values[0]


@pytest.mark.parametrize("name", ["subcenter_arcface", "proxy_anchor"])
def test_new_proxy_losses_need_identities_and_the_cosine(name):
    with pytest.raises(DataError, match="needs num_classes"):
        build_loss(name)
    with pytest.raises(DataError, match="defined on the cosine"):
        build_loss(name, num_classes=3, embedding_size=5, distance="l2")


@pytest.mark.parametrize("name", ["subcenter_arcface", "proxy_anchor"])
def test_loop_gives_the_new_proxies_to_the_optimizer(name):
    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec
    from verikit.train.config import TrainConfig
    from verikit.train.loop import build_optimizer

    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=InputSpec(size=(32, 32)))
    fn = build_loss(name, num_classes=4, embedding_size=8)
    groups = build_optimizer(TrainConfig(loss=name), model, fn).param_groups
    assert len(groups) == 3 and {id(p) for p in groups[2]["params"]} == {id(p) for p in fn.parameters()}


@pytest.mark.parametrize("loss,miner", [("subcenter_arcface", "batch_hard"), ("proxy_anchor", "batch_hard"),
                                        ("ntxent", "pair_margin")])
def test_one_epoch_of_the_loop_with_the_new_losses(synthetic_faces, loss, miner):
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    cfg = TrainConfig(backbone="timm:test_resnet", embedding_size=8, image_size=(32, 32), epochs=1, batch_size=4,
                      m_per_class=2, loss=loss, miner=miner, val_fraction=0.5, augment="none", device="cpu")
    result = train(synthetic_faces, cfg)
    assert len(result.history) == 1 and math.isfinite(result.history[0].loss)
    assert result.model.config.training["config"]["loss"] == loss
