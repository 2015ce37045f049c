"""InputSpec.equalize: photometric normalisation saved in the model and applied identically at
training and inference (histogram equalisation, torchvision's)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from tests.conftest import pattern_people, tiny_train_command
from verikit.errors import DataError
from verikit.models.embedder import Embedder
from verikit.models.inference import embed_files, embed_images
from verikit.models.preprocess import base_steps, to_tensor_transform
from verikit.structures import InputSpec
from verikit.train.config import config_from_dict
from verikit.train.data import LabelledImages, augmentation
from verikit.train.config import TrainConfig
from verikit.train.loop import train

SIZE = (32, 32)


def low_contrast(seed: int = 0, rgb: bool = False) -> Image.Image:
    """A dim 32x32 image whose grey levels span only 90-130 (a gradient plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    grey = 90 + xx + yy / 2 + rng.normal(0, 2, (32, 32))
    arr = np.stack([grey, grey * 0.9, grey * 1.05], -1) if rgb else grey
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB")


def uint8_of(spec: InputSpec, image: Image.Image) -> torch.Tensor:
    return torch.nn.Sequential(*base_steps(spec))(image)


@pytest.mark.parametrize("channels", [1, 3])
def test_transform_is_torchvision_equalize_after_resize_and_grey(channels):
    img = low_contrast(rgb=channels == 3)
    plain, hist = InputSpec(channels=channels, size=SIZE), InputSpec(channels=channels, size=SIZE, equalize="histogram")
    before = uint8_of(plain, img)
    assert before.dtype == torch.uint8 and int(before.max()) - int(before.min()) < 70  # a narrow range of levels
    expected = F.equalize(before)      # per channel for RGB
    got = uint8_of(hist, img)
    assert torch.equal(got, expected)
    assert int(got.min()) < 10 and int(got.max()) == 255   # the histogram was stretched
    # the full inference transform is that image, scaled and normalised with mean/std
    x = to_tensor_transform(hist)(img)
    want = (expected.float() / 255 - torch.tensor(hist.mean)[:, None, None]) / torch.tensor(hist.std)[:, None, None]
    assert x.shape == (channels, *SIZE) and torch.allclose(x, want, atol=1e-6)
    # "none" leaves the pipeline exactly as before
    assert torch.allclose(to_tensor_transform(plain)(img), (before.float() / 255 - 0.5) / 0.5, atol=1e-6)


def test_spec_serialisation_omits_none_and_round_trips():
    old_style = {"channels": 1, "size": [32, 32], "mean": [0.5], "std": [0.5], "interpolation": "bilinear"}
    spec = InputSpec.from_dict(old_style)
    assert spec.equalize == "none"
    assert spec.to_dict() == old_style        # old models' config.json stays byte-identical
    hist = InputSpec(channels=1, size=SIZE, equalize="histogram")
    assert hist.to_dict()["equalize"] == "histogram"
    assert InputSpec.from_dict(hist.to_dict()) == hist
    with pytest.raises(ValueError, match="equalize"):
        InputSpec(equalize="clahe")


def test_old_config_json_without_the_key_loads_as_none_with_the_same_bytes(tiny_model_dir, tmp_path):
    raw = (tiny_model_dir / "config.json").read_bytes()
    assert b"equalize" not in raw
    model = Embedder.load(tiny_model_dir)
    assert model.input_spec.equalize == "none"
    model.save(tmp_path / "again")
    assert (tmp_path / "again" / "config.json").read_bytes() == raw


def test_saved_equalized_model_reloads_with_its_spec_and_embeds_identically(tmp_path):
    torch.manual_seed(0)
    spec = InputSpec(channels=1, size=SIZE, equalize="histogram")
    model = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=spec).eval()
    fp = model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["input_spec"]["equalize"] == "histogram"
    loaded = Embedder.load(tmp_path / "m")
    assert loaded.input_spec == spec and loaded.fingerprint == fp
    images = [low_contrast(s) for s in range(3)]
    np.testing.assert_array_equal(embed_images(model, images), embed_images(loaded, images))
    # files go through the same transform (enroll / benchmark path)
    paths = []
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    np.testing.assert_allclose(embed_files(loaded, paths, num_workers=0).embeddings, embed_images(loaded, images),
                               atol=1e-6)
    # same weights without equalisation: another fingerprint and other embeddings
    plain = Embedder.build("timm:test_resnet", embedding_size=8, input_spec=InputSpec(channels=1, size=SIZE)).eval()
    plain.load_state_dict(loaded.state_dict())
    assert plain.fingerprint != fp
    assert not np.allclose(embed_images(plain, images), embed_images(loaded, images))


def test_training_cache_matches_the_inference_transform(tmp_path):
    low_contrast(3).save(tmp_path / "a.png")
    spec = InputSpec(channels=1, size=SIZE, equalize="histogram")
    data = LabelledImages([("x", tmp_path / "a.png")], spec, ())
    assert torch.equal(data[0][0], to_tensor_transform(spec)(low_contrast(3)))
    # augmentation (brightness/contrast jitter, or the affine one) runs after the equalised cache
    for strength in ("strong", "affine"):
        aug = LabelledImages([("x", tmp_path / "a.png")], spec, augmentation(spec, strength))
        assert torch.equal(aug.cache[0], uint8_of(spec, low_contrast(3)))
        assert aug[0][0].shape == (1, *SIZE)


def test_training_with_equalize_records_it_in_the_model(tmp_path):
    people = pattern_people(tmp_path / "people", 6, 4, size=32)
    cfg = TrainConfig(backbone="timm:test_resnet", embedding_size=16, image_size=SIZE, channels=1, epochs=1,
                      batch_size=8, m_per_class=2, val_fraction=0.34, device="cpu", augment="strong",
                      loss="normalized_softmax", miner="none", equalize="histogram")
    result = train(people, cfg)
    assert result.model.input_spec.equalize == "histogram"
    assert np.isfinite(result.history[-1].loss) and result.history[-1].val_eer is not None
    assert result.model.config.training["config"]["equalize"] == "histogram"
    result.model.save(tmp_path / "m")
    assert Embedder.load(tmp_path / "m").input_spec.equalize == "histogram"


def test_config_file_key_is_checked():
    assert config_from_dict({"equalize": "histogram"}).input_spec().equalize == "histogram"
    assert config_from_dict({}).input_spec().equalize == "none"
    with pytest.raises(DataError, match="equalize"):
        config_from_dict({"equalize": "clahe"})


def test_cli_train_equalize_option(tmp_path):
    people = pattern_people(tmp_path / "people", 6, 3, size=32)
    base, env = tiny_train_command(people)
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad"), "--equalize", "clahe"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode != 0 and "equalize" in bad.stderr and "Traceback" not in bad.stderr
    r = subprocess.run([*base, "--out", str(tmp_path / "m"), "--equalize", "histogram"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["input_spec"]["equalize"] == "histogram"
    assert json.loads((tmp_path / "m" / "train_config.json").read_text())["equalize"] == "histogram"
