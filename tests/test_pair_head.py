"""The learned pair head: symmetry, that training learns, safe storage bound to the model, and
`verify --scorer pair-head`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_cli import ok, one_line_error, run
from verikit.errors import FingerprintMismatchError, ModelError
from verikit.models.pair_head import PAIR_HEAD_WEIGHTS, PairHead, SavedPairHead
from verikit.train.pair_head import PairHeadConfig, all_pair_indices, pair_head_scores, train_head


def _clusters(n_ids: int, per: int, dim: int = 8, spread: float = 0.35, seed: int = 0):
    """Unit vectors around one random centre per identity."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    x = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(n_ids * per, dim)) * np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), [i for i in range(n_ids) for _ in range(per)]


def test_pair_head_is_symmetric_and_scores_are_probabilities():
    torch.manual_seed(0)
    head = PairHead(8, hidden=16)
    a, _ = _clusters(3, 2, seed=1)
    b, _ = _clusters(3, 2, seed=2)
    s = head.scores(a, b)
    np.testing.assert_allclose(s, head.scores(b, a), atol=1e-7)
    assert ((s > 0) & (s < 1)).all()
    assert head.best_score(a[0], b) == pytest.approx(head.scores(np.repeat(a[:1], len(b), 0), b).max())


def test_all_pair_indices():
    i, j, same = all_pair_indices(["a", "a", "b"])
    assert list(zip(i.tolist(), j.tolist(), same.tolist())) == [(0, 1, 1.0), (0, 2, 0.0), (1, 2, 0.0)]


def test_training_learns_to_separate_unseen_identities():
    from verikit.evaluate.metrics import eer

    train_x, train_y = _clusters(12, 6, seed=3)
    test_x, test_y = _clusters(8, 6, seed=4)  # other identities
    untrained = PairHead(8, 32)
    head, history = train_head(train_x, train_y, PairHeadConfig(hidden=32, steps=200))
    assert history[-1] < history[0]
    before = eer(*pair_head_scores(untrained, test_x, test_y))[0]
    after = eer(*pair_head_scores(head, test_x, test_y))[0]
    from verikit.evaluate.pairs import all_pairs
    cosine = eer(*all_pairs(test_x, test_y, "cosine"))[0]  # ~0.17 on these clusters
    assert after < before - 0.2 and after < cosine + 0.05


def test_saved_head_round_trips_and_is_bound_to_the_model(tmp_path):
    torch.manual_seed(0)
    saved = SavedPairHead(PairHead(8, 16), "fp-model", 0.7, {"note": "x"})
    saved.save(tmp_path)
    x, _ = _clusters(4, 2)
    back = SavedPairHead.load(tmp_path, fingerprint="fp-model")
    assert back.threshold == 0.7
    np.testing.assert_array_equal(back.head.scores(x[:4], x[4:]), saved.head.scores(x[:4], x[4:]))
    with pytest.raises(FingerprintMismatchError, match="pair-head train"):
        SavedPairHead.load(tmp_path, fingerprint="another")
    torch.manual_seed(1)
    other = SavedPairHead(PairHead(8, 16), "fp-model")
    from safetensors.torch import save
    (tmp_path / PAIR_HEAD_WEIGHTS).write_bytes(save(other.head.state_dict()))  # swapped weights
    with pytest.raises(ModelError, match="does not match"):
        SavedPairHead.load(tmp_path)
    with pytest.raises(ModelError, match="no pair head"):
        SavedPairHead.load(tmp_path / "nowhere")


def test_pair_head_train_and_verify_commands(tmp_path, synthetic_faces, tiny_model_dir):
    import shutil

    from verikit.models.embedder import Embedder
    from verikit.models.inference import embed_files

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    gallery = tmp_path / "g"
    ok("enroll", "--from-folder", synthetic_faces, "--model", model_dir, "--gallery", gallery, "-q")
    one_line_error(run("verify", synthetic_faces / "id1" / "3.png", "--claim", "id1", "--gallery", gallery,
                       "--scorer", "pair-head"), "no pair head", "pair-head train")
    report = json.loads(ok("pair-head", "train", synthetic_faces, "--model", model_dir, "--val-fraction", "0.5",
                           "--steps", "50", "-f", "json", "-q").stdout)
    assert report["train_identities"] == 2 and report["val_identities"] == 2 and report["threshold"] is not None
    probe = synthetic_faces / "id1" / "3.png"
    d = json.loads(ok("verify", probe, "--claim", "id1", "--gallery", gallery, "--scorer", "pair-head",
                      "-f", "json").stdout)
    # the score is the head's best sigmoid over the claim's templates, the threshold its calibrated one
    model = Embedder.load(model_dir)
    head = SavedPairHead.load(model_dir, fingerprint=model.fingerprint)
    templates = sorted(p for p in (synthetic_faces / "id1").iterdir() if p.suffix == ".png")
    emb = embed_files(model, [probe, *templates], num_workers=0).embeddings
    assert d["score"] == pytest.approx(head.head.best_score(emb[0], emb[1:]), abs=1e-5)
    assert d["threshold"] == pytest.approx(head.threshold, abs=1e-6)
