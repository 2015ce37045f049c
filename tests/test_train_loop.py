"""The training loop on a tiny model and synthetic identities: exact resume, logs, early stopping,
freezing and per-group learning rates, validation metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import pattern_people
from verikit.errors import DataError
from verikit.models.embedder import Embedder
from verikit.train.checkpoint import load_checkpoint
from verikit.train.config import TrainConfig
from verikit.train.loop import build_optimizer, seed_everything, train


class Interrupt(Exception):
    """Stands in for Ctrl-C / a killed job after some epoch."""


@pytest.fixture(scope="module")
def eight_people(tmp_path_factory) -> Path:
    return pattern_people(tmp_path_factory.mktemp("eight"), 8, 4, size=32)


def tiny(**kw) -> TrainConfig:
    base = dict(backbone="timm:test_resnet", embedding_size=16, image_size=(32, 32), epochs=2, batch_size=8,
                m_per_class=2, val_fraction=0.25, device="cpu", augment="light")
    return TrainConfig(**{**base, **kw})


def stop_after(epoch: int):
    def on_epoch(record):
        if record.epoch == epoch:
            raise Interrupt
    return on_epoch


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# Augmentation on (its randomness must be replayed) and both optimizer kinds; the proxy loss also
# checks that the learned proxies are restored. The gradual-unfreezing run is cut in the middle of
# its unfreezing: the top stage already has optimizer state, the next ones do not yet.
@pytest.mark.parametrize("loss, optimizer, extra, cut", [
    ("triplet", "adamw", {}, 1), ("normalized_softmax", "sgd", {}, 1),
    ("triplet", "adamw", {"epochs": 4, "freeze_epochs": 1, "gradual_unfreeze": 1}, 2)])
def test_resume_gives_the_weights_of_an_uninterrupted_run(eight_people, tmp_path, loss, optimizer, extra, cut):
    cfg = tiny(loss=loss, optimizer=optimizer, **{"epochs": 3, **extra})
    whole = params(train(eight_people, cfg, out_dir=tmp_path / "whole").model)

    with pytest.raises(Interrupt):
        train(eight_people, cfg, out_dir=tmp_path / "cut", on_epoch=stop_after(cut))
    after_cut = load_checkpoint(tmp_path / "cut").model
    epochs_seen = []
    resumed = train(eight_people, cfg, out_dir=tmp_path / "cut", resume=True,
                    on_epoch=lambda r: epochs_seen.append(r.epoch))

    # continued after the last completed epoch, did not start over
    assert epochs_seen == list(range(cut + 1, cfg.epochs + 1))
    assert [r.epoch for r in resumed.history] == list(range(1, cfg.epochs + 1))
    got = params(resumed.model)
    assert got.keys() == whole.keys()
    for k in whole:
        torch.testing.assert_close(got[k], whole[k], rtol=0, atol=1e-6, msg=k)
    # ... and training after the interruption really moved the weights (the check above is not vacuous).
    assert max((got[k].float() - after_cut[k].float()).abs().max().item() for k in got) > 1e-3


def test_csv_log_has_one_row_per_epoch_even_after_a_resume(eight_people, tmp_path):
    cfg = tiny(epochs=3)
    with pytest.raises(Interrupt):
        train(eight_people, cfg, out_dir=tmp_path, on_epoch=stop_after(2))
    result = train(eight_people, cfg, out_dir=tmp_path, resume=True)

    with open(tmp_path / "train_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "lr", "images_per_s", "val_eer", "val_tar_at_far_1e_2", "val_tar_at_far_1e_3"} <= set(rows[0])
    for row, rec in zip(rows, result.history):
        assert float(row["loss"]) == pytest.approx(rec.loss)
        assert float(row["val_eer"]) == pytest.approx(rec.val_eer)
        assert 0.0 <= float(row["val_tar_at_far_1e_3"]) <= float(row["val_tar_at_far_1e_2"]) <= 1.0
    # The cosine schedule ends at zero: the last epoch's learning rate says the schedule ran to its end.
    assert float(rows[-1]["lr"]) == pytest.approx(0.0, abs=1e-9) and float(rows[0]["lr"]) > 0
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert saved["epochs"] == 3 and saved["image_size"] == [32, 32]
    assert result.model.config.training["config"] == saved


def test_early_stopping_ends_when_validation_eer_stops_improving(eight_people, tmp_path):
    # These synthetic identities are separable from the first epoch (EER 0), so no later epoch is
    # strictly better: with patience 1 training stops after epoch 2 of 6.
    result = train(eight_people, tiny(epochs=6, patience=1))
    assert result.history[0].val_eer == 0.0
    assert [r.epoch for r in result.history] == [1, 2] and result.stopped_early
    assert result.model.config.training["stopped_early"] is True


def test_frozen_backbone_does_not_move_during_the_freeze(eight_people, tmp_path):
    cfg = tiny(epochs=2, freeze_epochs=1, augment="none")
    seed_everything(cfg.seed)  # the loop builds the model right after seeding: the same initial weights
    init = Embedder.build(cfg.backbone, embedding_size=16, input_spec=cfg.input_spec()).state_dict()
    with pytest.raises(Interrupt):
        train(eight_people, cfg, out_dir=tmp_path, on_epoch=stop_after(1))
    after_one = load_checkpoint(tmp_path).model
    backbone = [k for k in init if k.startswith("backbone.")]
    assert backbone and all(torch.equal(after_one[k], init[k]) for k in backbone)  # incl. BN statistics
    assert not torch.equal(after_one["head.proj.weight"], init["head.proj.weight"])
    final = params(train(eight_people, cfg, out_dir=tmp_path, resume=True).model)
    assert any(not torch.equal(final[k], init[k]) for k in backbone)  # unfrozen in epoch 2


# test_resnet's timm grouping: stem, layer1, layer2, layer3, layer4 (bottom first).
STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


def stage_of(name: str) -> str:
    """The timm stage of a backbone state-dict key (``backbone.`` prefix dropped)."""
    first = name.split(".")[0]
    return first if first.startswith("layer") else "stem"


def test_backbone_groups_follow_timms_stages():
    from verikit.train.loop import backbone_groups

    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=tiny().input_spec())
    groups = backbone_groups(model.backbone)
    named = dict(model.backbone.named_parameters())
    assert [sorted({stage_of(n) for n in g if n in named}) for g in groups] == [[s] for s in STAGES]
    assert set().union(*groups) >= set(named)  # every parameter is in some group


@pytest.mark.parametrize("epoch, frozen", [(1, STAGES), (2, STAGES[:4]), (3, STAGES[:4]), (4, STAGES[:3]),
                                           (5, STAGES[:3]), (8, STAGES[:1]), (10, ()), (30, ())])
def test_gradual_unfreezing_schedule_sets_requires_grad_and_batchnorm_mode(epoch, frozen):
    from verikit.train.loop import set_train_mode

    cfg = tiny(freeze_epochs=1, gradual_unfreeze=2)  # epoch 1 frozen; then one stage every 2 epochs, top first
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=cfg.input_spec())
    assert set_train_mode(model, cfg, epoch) == len(frozen)
    for name, p in model.backbone.named_parameters():
        assert p.requires_grad == (stage_of(name) not in frozen), (epoch, name)
    for name, m in model.backbone.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert m.training == (stage_of(name) not in frozen), (epoch, name)
    assert all(p.requires_grad for p in model.head.parameters()) and model.head.training


def test_gradual_unfreezing_moves_exactly_the_unfrozen_stages(eight_people, tmp_path):
    # A real run: the backbone frozen in epoch 1, layer4 unfrozen in epoch 2, layer3 too in epoch 3.
    # After every epoch, the weights and batch-norm statistics of the still-frozen stages are
    # bit-identical to their initial values; every tensor of the unfrozen stages has moved.
    cfg = tiny(epochs=3, freeze_epochs=1, gradual_unfreeze=1, augment="none", val_fraction=0.0, backbone_lr_scale=0.5,
               loss="normalized_softmax")  # its loss never reaches 0 (a zero gradient would move no bias)
    seed_everything(cfg.seed)
    before = Embedder.build(cfg.backbone, embedding_size=16, input_spec=cfg.input_spec()).state_dict()
    snapshots = {}
    train(eight_people, cfg, out_dir=tmp_path,
          on_epoch=lambda r: snapshots.__setitem__(r.epoch, load_checkpoint(tmp_path).model))
    trained = {1: (), 2: ("layer4",), 3: ("layer3", "layer4")}
    for epoch, stages in trained.items():
        after = snapshots[epoch]
        for k in before:
            if not k.startswith("backbone."):
                continue
            moved = not torch.equal(after[k], before[k])
            assert moved == (stage_of(k[len("backbone."):]) in stages), (epoch, k)
        assert not torch.equal(after["head.proj.weight"], before["head.proj.weight"])
        before = after


def test_backbone_learning_rate_scale_sets_its_param_group(eight_people):
    cfg = tiny(lr=2e-3, backbone_lr_scale=0.1)
    model = Embedder.build(cfg.backbone, embedding_size=16, input_spec=cfg.input_spec())
    opt = build_optimizer(cfg, model, torch.nn.Linear(1, 1))
    backbone_group, head_group = opt.param_groups[0], opt.param_groups[1]
    assert backbone_group["lr"] == pytest.approx(2e-4) and head_group["lr"] == pytest.approx(2e-3)
    assert {id(p) for p in backbone_group["params"]} == {id(p) for p in model.backbone.parameters()}
    assert len(opt.param_groups) == 3  # the loss's parameters get their own group (no weight decay)
    assert opt.param_groups[2]["weight_decay"] == 0.0
    # lr scale 0: the backbone's parameters stay exactly where they started while the head trains.
    seed_everything(0)
    start = Embedder.build(cfg.backbone, embedding_size=16, input_spec=cfg.input_spec()).state_dict()
    out = train(eight_people, tiny(epochs=1, backbone_lr_scale=0.0, optimizer="sgd")).model
    named = dict(out.named_parameters())
    assert all(torch.equal(named[k], start[k]) for k in named if k.startswith("backbone."))
    assert not torch.equal(named["head.proj.weight"], start["head.proj.weight"])


def test_resume_without_a_checkpoint_is_one_clear_error(eight_people, tmp_path):
    with pytest.raises(DataError, match="no checkpoint to resume from"):
        train(eight_people, tiny(), out_dir=tmp_path, resume=True)


def test_bad_settings_are_refused_before_training(eight_people):
    with pytest.raises(DataError, match="field 'optimizer' must be one of adamw, sgd"):
        train(eight_people, tiny(optimizer="adam"))
    with pytest.raises(DataError, match="field 'augment' must be one of none, light, strong, affine, got \"heavy\""):
        train(eight_people, tiny(augment="heavy"))


def test_tensorboard_gets_each_epoch_once_after_a_resume(eight_people, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (verikit[tensorboard])")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny(epochs=3)
    with pytest.raises(Interrupt):
        train(eight_people, cfg, out_dir=tmp_path, on_epoch=stop_after(2))
    train(eight_people, cfg, out_dir=tmp_path, resume=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/eer", "val/tar_at_far_1e_3"} <= set(events.Tags()["scalars"])
    assert sorted(e.step for e in events.Scalars("train/loss")) == [1, 2, 3]


@pytest.mark.parametrize("channels", [3, 1])
def test_pretrained_weights_bring_their_input_normalisation(eight_people, tmp_path, channels):
    # timm's test_efficientnet says its checkpoints expect ImageNet's mean and std; a local weights
    # file for it (random values, written here) must make the model normalise that way, in
    # training and, recorded in config.json, at inference.
    from safetensors.torch import save_file
    import timm

    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    weights = tmp_path / "w.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), str(weights))
    cfg = tiny(backbone="timm:test_efficientnet", backbone_options={"weights": str(weights)}, channels=channels,
               epochs=1, val_fraction=0.0)
    model = train(eight_people, cfg).model
    want_mean = imagenet_mean if channels == 3 else (sum(imagenet_mean) / 3,)
    want_std = imagenet_std if channels == 3 else (sum(imagenet_std) / 3,)
    assert model.input_spec.mean == pytest.approx(want_mean) and model.input_spec.std == pytest.approx(want_std)
    model.save(tmp_path / "m")
    assert Embedder.load(tmp_path / "m").input_spec.mean == pytest.approx(want_mean)
    # From random weights the same backbone keeps verikit's default normalisation.
    scratch = train(eight_people, tiny(backbone="timm:test_efficientnet", channels=channels, epochs=1,
                                       val_fraction=0.0)).model
    assert scratch.input_spec.mean == (0.5,) * channels
