"""Ensembles: the score is the mean of the members' cosines, the saved model round-trips and
its fingerprint covers every member, unfit members are refused, and the CLI never overwrites."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.test_cli import ok, run
from verikit.errors import ModelError
from verikit.models.embedder import Embedder
from verikit.models.ensemble import build_ensemble
from verikit.structures import InputSpec

SPEC = InputSpec(channels=1, size=(32, 32))


def member(seed: int, size: int = 8, spec: InputSpec = SPEC, **kw) -> Embedder:
    torch.manual_seed(seed)
    return Embedder.build("timm:test_resnet", embedding_size=size, input_spec=spec, **kw).eval()


def test_ensemble_cosine_is_the_mean_of_the_members_cosines():
    members = [member(0), member(1, size=12, tta="hflip"), member(2, embed_from="pooled")]
    model = build_ensemble(members)
    x = torch.randn(4, 1, 32, 32)
    with torch.inference_mode():
        ens = model(x)
        cos = [m(x) @ m(x).T for m in members]
    assert ens.shape == (4, 8 + 12 + members[2].embedding_size) and model.embedding_size == ens.shape[1]
    assert torch.allclose(ens.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(ens @ ens.T, sum(cos) / 3, atol=1e-5)
    model.train()  # members keep their inference path even when the ensemble is put in training mode
    with torch.inference_mode():
        assert all(not m.training for m in model.backbone.members)
        assert torch.allclose(model.backbone(x).flatten(1), ens, atol=1e-5)


def test_saved_ensemble_loads_and_its_fingerprint_covers_the_members(tmp_path):
    members = [member(0), member(1)]
    fp = build_ensemble(members).save(tmp_path / "a")
    loaded = Embedder.load(tmp_path / "a")
    x = torch.randn(2, 1, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), build_ensemble(members)(x), atol=1e-6)
    assert loaded.fingerprint == fp and loaded.config.training["ensemble_of"] == [m.fingerprint for m in members]
    with torch.no_grad():
        members[1].head.proj.weight.add_(0.01)
    assert build_ensemble(members).save(tmp_path / "b") != fp


def test_unfit_members_are_refused():
    with pytest.raises(ModelError, match="at least two"):
        build_ensemble([member(0)])
    with pytest.raises(ModelError, match="member 1 reads other inputs"):
        build_ensemble([member(0), member(1, spec=dataclasses.replace(SPEC, size=(40, 40)))])
    with pytest.raises(ModelError, match="member 1 scores with 'l2'"):
        build_ensemble([member(0), member(1, similarity="l2")])


def test_cli_writes_an_ensemble_and_never_overwrites_a_model(tmp_path):
    for k in (0, 1):
        member(k).save(tmp_path / f"m{k}")
    r = ok("ensemble", tmp_path / "ens", "--model", tmp_path / "m0", "--model", tmp_path / "m1")
    assert "ensemble of 2 models, 16-d templates" in r.stdout
    assert Embedder.load(tmp_path / "ens").config.backbone == "ensemble"
    before = (tmp_path / "m0" / "model.safetensors").read_bytes()
    r = run("ensemble", tmp_path / "m0", "--model", tmp_path / "m0", "--model", tmp_path / "m1")
    assert r.returncode == 1 and "already holds a model" in r.stderr
    assert (tmp_path / "m0" / "model.safetensors").read_bytes() == before
