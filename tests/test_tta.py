"""ModelConfig.tta: mirror-averaged embeddings recorded in the model (test-time augmentation)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from tests.conftest import pattern_people, tiny_train_command
from verikit.errors import DataError, ModelError
from verikit.models.embedder import Embedder
from verikit.models.inference import embed_files, embed_images
from verikit.structures import InputSpec
from verikit.train.config import config_from_dict
from verikit.train.config import TrainConfig
from verikit.train.loop import train

SPEC = InputSpec(channels=1, size=(32, 32))


def asymmetric(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).convert("RGB")


def build(tta: str) -> Embedder:
    torch.manual_seed(0)
    return Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC, tta=tta).eval()


def test_hflip_is_the_normalised_sum_of_image_and_mirror_embeddings():
    plain, tta = build("none"), build("hflip")
    tta.load_state_dict(plain.state_dict())
    x = torch.randn(3, 1, 32, 32)
    with torch.inference_mode():
        a, b = plain(x), plain(x.flip(-1))
        want = torch.nn.functional.normalize(a + b, dim=1)
        got = tta(x)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(3), atol=1e-6)
    assert not torch.allclose(got, a, atol=1e-3)       # it is not the single-view embedding


def test_hflip_model_gives_a_photo_and_its_mirror_the_same_embedding():
    model = build("hflip")
    images = [asymmetric(s) for s in range(4)]
    mirrored = [ImageOps.mirror(im) for im in images]
    np.testing.assert_allclose(embed_images(model, images), embed_images(model, mirrored), atol=1e-5)
    plain = build("none")
    assert not np.allclose(embed_images(plain, images), embed_images(plain, mirrored), atol=1e-3)


def test_training_mode_sees_single_views():
    plain, tta = build("none"), build("hflip")
    tta.load_state_dict(plain.state_dict())
    x = torch.randn(4, 1, 32, 32)
    plain.train(), tta.train()
    assert tta(x).shape == (4, 8)
    assert torch.allclose(tta(x), plain(x), atol=1e-6)


def test_saved_tta_round_trips_and_changes_the_fingerprint(tmp_path, tiny_model_dir):
    assert b'"tta"' not in (tiny_model_dir / "config.json").read_bytes()     # old files stay byte-identical
    assert Embedder.load(tiny_model_dir).config.tta == "none"
    model = build("hflip")
    fp = model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["tta"] == "hflip"
    loaded = Embedder.load(tmp_path / "m")
    assert loaded.config.tta == "hflip" and loaded.fingerprint == fp
    images = [asymmetric(s) for s in range(3)]
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
    files = embed_files(loaded, [tmp_path / f"{i}.png" for i in range(3)], num_workers=0).embeddings
    np.testing.assert_allclose(files, embed_images(model, images), atol=1e-6)
    plain = build("none")
    plain.load_state_dict(loaded.state_dict())
    assert plain.fingerprint != fp                    # a gallery enrolled with one refuses the other


def test_unknown_tta_in_a_config_file_is_one_clear_error(tmp_path):
    build("none").save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "tta": "five_crop"}))
    with pytest.raises(ModelError, match=r"config.json' is malformed: field 'tta' must be one of none, hflip"):
        Embedder.load(tmp_path / "m")


@pytest.mark.parametrize("augment, tta, expected", [("strong", "auto", "hflip"), ("light", "auto", "hflip"),
                                                    ("affine", "auto", "none"), ("none", "auto", "none"),
                                                    ("strong", "none", "none"), ("affine", "hflip", "hflip")])
def test_auto_mirrors_only_networks_trained_on_mirrored_images(augment, tta, expected):
    assert TrainConfig(augment=augment, tta=tta).model_tta() == expected


def test_config_key_is_checked():
    assert config_from_dict({"tta": "none"}).tta == "none"
    with pytest.raises(DataError, match="tta"):
        config_from_dict({"tta": "ten_crop"})


def test_training_records_tta_and_validates_with_it(tmp_path):
    people = pattern_people(tmp_path / "people", 6, 4, size=32)
    cfg = TrainConfig(backbone="timm:test_resnet", embedding_size=8, image_size=(32, 32), channels=1, epochs=1,
                      batch_size=8, m_per_class=2, val_fraction=0.34, device="cpu", augment="strong",
                      loss="normalized_softmax", miner="none")
    result = train(people, cfg)
    assert result.model.config.tta == "hflip" and result.history[-1].val_eer is not None
    result.model.save(tmp_path / "m")
    assert Embedder.load(tmp_path / "m").config.tta == "hflip"


def test_cli_train_tta_option(tmp_path):
    people = pattern_people(tmp_path / "people", 6, 3, size=32)
    base, env = tiny_train_command(people)
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--tta", "ten_crop"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "tta" in bad.stderr and "must be one of" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad" / "config.json").exists()
    r = subprocess.run([*base, "--out", str(tmp_path / "m"), "--augment", "strong", "--tta", "none"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tta" not in json.loads((tmp_path / "m" / "config.json").read_text())
    assert json.loads((tmp_path / "m" / "train_config.json").read_text())["tta"] == "none"


# -- embed_from: templates read from the pooled backbone features under the neck ---------------

def test_pooled_templates_are_the_normalised_pooled_backbone_features():
    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC, embed_from="pooled").eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.inference_mode():
        want = torch.nn.functional.normalize(model.backbone(x).mean(dim=(-2, -1)), dim=1)
        got = model(x)
    assert model.embedding_size == model.backbone.num_features != 8
    assert got.shape == (3, model.embedding_size) and torch.allclose(got, want, atol=1e-6)
    model.train()   # the loss trains the neck
    assert model(x).shape == (3, 8)


def test_pooled_with_hflip_averages_the_mirrored_pooled_features():
    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC, embed_from="pooled",
                           tta="hflip").eval()
    x = torch.randn(2, 1, 32, 32)
    n = torch.nn.functional.normalize
    with torch.inference_mode():
        pool = lambda t: n(model.backbone(t).mean(dim=(-2, -1)), dim=1)
        assert torch.allclose(model(x), n(pool(x) + pool(x.flip(-1)), dim=1), atol=1e-6)


def test_pooled_model_round_trips_and_builds_a_gallery_of_its_size(tmp_path):
    from verikit.index.gallery import Gallery

    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC, embed_from="pooled").eval()
    fp = model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["embed_from"] == "pooled"
    loaded = Embedder.load(tmp_path / "m")
    assert loaded.config.embed_from == "pooled" and loaded.fingerprint == fp
    emb = embed_images(loaded, [asymmetric(s) for s in range(3)])
    assert emb.shape == (3, loaded.embedding_size)
    with Gallery.create(tmp_path / "g", dim=loaded.embedding_size, fingerprint=fp) as g:
        g.add("a", emb)
        assert g.search(emb[:1], top_k=1)[0][0].identity == "a"
    neck = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=SPEC).eval()
    neck.load_state_dict(loaded.state_dict())
    assert neck.fingerprint != fp and embed_images(neck, [asymmetric(0)]).shape == (1, 8)


def test_embed_from_is_checked_in_configs_and_files(tmp_path):
    assert config_from_dict({"embed_from": "pooled"}).embed_from == "pooled"
    with pytest.raises(DataError, match="embed_from"):
        config_from_dict({"embed_from": "layer3"})
    build("none").save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "embed_from": "layer3"}))
    with pytest.raises(ModelError, match=r"config.json' is malformed: field 'embed_from' must be one of neck, pooled"):
        Embedder.load(tmp_path / "m")


def test_training_with_pooled_templates_validates_and_saves_them(tmp_path):
    people = pattern_people(tmp_path / "people", 6, 4, size=32)
    cfg = TrainConfig(backbone="timm:test_resnet", embedding_size=8, image_size=(32, 32), channels=1, epochs=1,
                      batch_size=8, m_per_class=2, val_fraction=0.34, device="cpu", augment="affine",
                      loss="normalized_softmax", miner="none", embed_from="pooled")
    result = train(people, cfg)
    assert result.model.config.embed_from == "pooled" and result.model.config.tta == "none"
    assert result.history[-1].val_eer is not None
    assert result.model.embedding_size == result.model.backbone.num_features
