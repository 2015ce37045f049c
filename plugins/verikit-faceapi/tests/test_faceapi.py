"""verikit-faceapi: the tfjs reader, TensorFlow's padding and layouts against hand computations,
conversion and the pinned download (from a local tarball), both entry points' contracts, the
ready-made model, and -- where the real weights have been fetched -- what they find on ORL."""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from verikit.errors import ModelError, PluginError
from verikit.io import load_image
from verikit.models.embedder import Embedder
from verikit.pipeline.alignment import IBUG68_NAMES
from verikit.registry import backbones, detectors
from verikit.testing import check_backbone, check_detector
from verikit_faceapi import create_backbone, create_detector
from verikit_faceapi.__main__ import main as faceapi_main
from verikit_faceapi.nets import PlainConv, SeparableConv, same_pad
from verikit_faceapi.tfjs import read_tfjs_weights
from verikit_faceapi.weights import NETWORKS, convert, default_dir, fetch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_package import write_fake_package  # noqa: E402
from tf_reference import tf_conv_by_hand  # noqa: E402

BUNDLED_ORL = Path(__file__).resolve().parents[3] / "data" / "orl_faces"


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """Random networks, their tfjs package folder, and the converted safetensors files."""
    root = tmp_path_factory.mktemp("faceapi")
    nets = write_fake_package(root / "package" / "model")
    convert(root / "package" / "model", root / "weights")
    return nets.descriptor, nets.landmarks, root


def test_tfjs_reader_dequantises_and_checks_the_byte_count(tmp_path):
    q = np.array([0, 1, 255, 7], np.uint8)
    f = np.array([1.5, -2.0], np.float32)
    (tmp_path / "w.bin").write_bytes(q.tobytes() + f.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2], "dtype": "float32"}]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    w = read_tfjs_weights(tmp_path / "m.json")
    assert w["a"].tolist() == [[-1.0, -0.5], [126.5, 2.5]] and w["b"].tolist() == [1.5, -2.0]
    manifest[0]["weights"].pop()
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="the shards hold 12 bytes, the manifest describes 4"):
        read_tfjs_weights(tmp_path / "m.json")


@pytest.mark.parametrize("n, k, s, expected", [(112, 3, 2, (0, 1)), (7, 3, 1, (1, 1)), (9, 3, 2, (1, 1)),
                                               (8, 7, 2, (2, 3))])
def test_same_pad_matches_tensorflow(n, k, s, expected):
    # TensorFlow: out = ceil(n / s); total = max((out - 1) * s + k - n, 0); the odd pixel goes after.
    x = torch.zeros(1, 1, n, n + 1)
    padded = same_pad(x, k, s)
    out_w = -(-(n + 1) // s)
    total_w = max((out_w - 1) * s + k - (n + 1), 0)
    assert padded.shape[-2] == n + sum(expected) and padded.shape[-1] == n + 1 + total_w


def test_converted_layers_compute_what_tensorflow_computes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 8, 3))
    conv = PlainConv(3, 4, 2)
    w, b = rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    conv.conv.weight.data = torch.tensor(w, dtype=torch.float32).permute(3, 2, 0, 1)
    conv.conv.bias.data = torch.tensor(b, dtype=torch.float32)
    ours = conv(torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None])[0].permute(1, 2, 0).detach().numpy()
    assert np.allclose(ours, tf_conv_by_hand(x, w, 2) + b, atol=1e-4)
    sep = SeparableConv(3, 5, 2)
    dw, pw, pb = rng.normal(size=(3, 3, 3, 1)), rng.normal(size=(1, 1, 3, 5)), rng.normal(size=5)
    sep.depthwise.weight.data = torch.tensor(dw, dtype=torch.float32).permute(2, 3, 0, 1)
    sep.pointwise.weight.data = torch.tensor(pw, dtype=torch.float32).permute(3, 2, 0, 1)
    sep.pointwise.bias.data = torch.tensor(pb, dtype=torch.float32)
    ours = sep(torch.tensor(x, dtype=torch.float32).permute(2, 0, 1)[None])[0].permute(1, 2, 0).detach().numpy()
    expected = tf_conv_by_hand(x, dw, 2, depthwise=True) @ pw[0, 0] + pb
    assert np.allclose(ours, expected, atol=1e-4)


def test_conversion_round_trips_every_tensor(fake):
    descriptor, landmarks, root = fake
    x = torch.randn(2, 3, 150, 150)
    net = create_backbone(weights=str(root / "weights" / "dlib_resnet.safetensors"))
    assert torch.equal(net(x), descriptor(x))
    y = torch.randn(2, 3, 112, 112)
    from verikit_faceapi.weights import load_network
    assert torch.equal(load_network("landmarks", root / "weights" / "landmark68.safetensors")(y), landmarks(y))
    with pytest.raises(ModelError, match="not face-api.js's descriptor network"):
        bad = root / "bad"
        write_fake_package(bad)
        (bad / NETWORKS["descriptor"][0]).write_text((bad / NETWORKS["landmarks"][0]).read_text().replace(
            NETWORKS["landmarks"][1], NETWORKS["descriptor"][1]))
        (bad / NETWORKS["descriptor"][1]).write_bytes((bad / NETWORKS["landmarks"][1]).read_bytes())
        convert(bad, root / "bad_out")


def tarball(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:  # random weights do not compress; level 9 only costs time
        tar.add(root / "package", arcname="package")
    return buf.getvalue()


def test_fetch_checks_the_pinned_integrity_and_converts(fake, tmp_path):
    _, _, root = fake
    data = tarball(root)
    (tmp_path / "face-api.tgz").write_bytes(data)
    url = (tmp_path / "face-api.tgz").as_uri()
    good = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    written = fetch(tmp_path / "out", url=url, integrity=good)
    assert sorted(p.name for p in written) == sorted(n[2] for n in NETWORKS.values())
    for p in written:
        assert p.read_bytes() == (root / "weights" / p.name).read_bytes()
    with pytest.raises(ModelError, match="refusing it"):
        fetch(tmp_path / "refused", url=url, integrity="sha512-" + base64.b64encode(b"x" * 64).decode())
    assert not (tmp_path / "refused").exists()  # nothing written from a refused download
    with pytest.raises(ModelError, match="cannot download"):
        fetch(tmp_path / "none", url=(tmp_path / "missing.tgz").as_uri(), integrity=good)


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIKIT_FACEAPI_DIR", str(tmp_path))
    assert default_dir() == tmp_path
    with pytest.raises(ModelError, match="python -m verikit_faceapi fetch"):
        create_detector()
    with pytest.raises(ModelError, match="weights not found at the given path"):
        create_backbone(weights=str(tmp_path / "nope.safetensors"))


def test_backbone_contract_and_grey_input(fake):
    _, _, root = fake
    file = str(root / "weights" / "dlib_resnet.safetensors")
    check_backbone(create_backbone)
    check_backbone(functools.partial(create_backbone, weights=file), size=150)
    rgb, grey = create_backbone(weights=file), create_backbone(weights=file, in_chans=1)
    g = torch.rand(1, 1, 150, 150)
    mean_rgb, mean_grey = torch.tensor(rgb.input_spec.mean)[:, None, None], grey.input_spec.mean[0]
    # A grey image in the grey model == its three copies in the RGB model, up to the mean's spread
    # over channels (the summed filters see the channel-average mean).
    assert torch.allclose(grey(g - mean_grey), rgb(g.expand(1, 3, -1, -1) - mean_grey), atol=1e-4)
    assert not torch.allclose(rgb(g.expand(1, 3, -1, -1) - mean_rgb), rgb(g.expand(1, 3, -1, -1)), atol=1e-3)
    with pytest.raises(ModelError, match="no architecture 'resnet50'"):
        create_backbone("resnet50")
    assert backbones.create("faceapi:dlib_resnet").num_features == 128


def test_detector_contract_landmarks_and_options(fake):
    _, _, root = fake
    file = str(root / "weights" / "landmark68.safetensors")
    whole = create_detector(None, weights=file)
    check_detector(whole)
    face = load_image(BUNDLED_ORL / "s1" / "1.pgm")
    dets = whole.detect([face])[0]
    assert dets.landmark_names[:68] == IBUG68_NAMES and dets.landmarks.shape == (1, 70, 2)
    assert np.allclose(dets.landmarks[0, 68], dets.landmarks[0, 36:42].mean(0), atol=1e-4)  # left_eye (image left)
    haar = create_detector("haar", weights=file)
    check_detector(haar)
    assert len(haar.detect([face])[0]) == 1  # the Haar box (with its border search) on an ORL photo
    # equalize: the landmark network sees the equalised image (so other points), the boxes stay
    dark = face.point(lambda v: v // 4)
    plain, equalised = whole.detect([dark])[0], create_detector(None, weights=file, equalize=True).detect([dark])[0]
    assert np.array_equal(plain.boxes, equalised.boxes) and not np.allclose(plain.landmarks, equalised.landmarks)
    from PIL import ImageOps
    assert np.allclose(equalised.landmarks, whole.detect([ImageOps.equalize(dark)])[0].landmarks, atol=1e-4)
    for bad, match in [(dict(margin=-0.1), "margin must be between 0 and 1"),
                       (dict(equalize="yes"), "equalize must be true or false"),
                       (dict(boxes="faceapi"), "cannot be faceapi itself"),
                       (dict(boxes=None, box_options={"eyes": False}), "needs a box detector"),
                       (dict(box_options=[1]), "box_options must be an object")]:
        with pytest.raises(PluginError, match=match):
            create_detector(weights=file, **bad)
    assert any(i.name == "faceapi" and i.distribution == "verikit-faceapi" for i in detectors.infos())
    assert any(i.name == "faceapi" and i.distribution == "verikit-faceapi" for i in backbones.infos())


def test_model_command_writes_a_mirror_averaged_descriptor_model(fake, tmp_path, capsys):
    descriptor, _, root = fake
    assert faceapi_main(["model", str(tmp_path / "m"), "--weights", str(root / "weights" / "dlib_resnet.safetensors")]) == 0
    model = Embedder.load(tmp_path / "m").eval()
    assert model.config.embed_from == "pooled" and model.config.tta == "hflip" and "weights" not in model.config.backbone_options
    x = torch.randn(3, 3, 150, 150)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(
            torch.nn.functional.normalize(descriptor(x).flatten(1)) + torch.nn.functional.normalize(
                descriptor(x.flip(-1)).flatten(1)))
        assert torch.allclose(model(x), expected, atol=1e-5)
    assert faceapi_main(["model", str(tmp_path / "n"), "--weights", str(tmp_path / "none.safetensors")]) == 1
    assert "weights not found" in capsys.readouterr().err and not (tmp_path / "n").exists()


# -- with the real weights (python -m verikit_faceapi fetch), when this machine has them -----------
REAL = default_dir()
needs_real = pytest.mark.skipif(not all((REAL / n[2]).is_file() for n in NETWORKS.values()),
                                reason=f"real faceapi weights not in {REAL}; run python -m verikit_faceapi fetch")


@needs_real
def test_real_landmarks_agree_with_haar_eyes_and_the_descriptor_tells_people_apart():
    from verikit.models.inference import embed_images
    from verikit.pipeline.detection import FaceCropper
    from verikit.pipeline.settings import PipelineSettings

    paths = [BUNDLED_ORL / s / f"{i}.pgm" for s in ("s1", "s2") for i in (1, 2)]
    images = [load_image(p) for p in paths]
    haar = detectors.create("haar").detect(images)
    marks = create_detector().detect(images)
    compared = 0
    for h, m in zip(haar, marks):
        if h.landmark(0, "left_eye") is None or h.landmark(0, "right_eye") is None:
            continue  # Haar's eye search may miss; the landmark network is checked where it did not
        iod = np.hypot(*np.subtract(h.landmark(0, "right_eye"), h.landmark(0, "left_eye")))
        for eye in ("left_eye", "right_eye"):
            assert np.hypot(*np.subtract(m.landmark(0, eye), h.landmark(0, eye))) < 0.25 * iod
        compared += 1
    assert compared >= 2, "Haar found both eyes in fewer than two of the four photos"
    crops = FaceCropper(PipelineSettings("faceapi", crop_margin=0.25)).crops_of_images(images, paths)
    model = Embedder.build("faceapi:dlib_resnet", input_spec=create_backbone().input_spec,
                           backbone_options={"pretrained": True}, embed_from="pooled").eval()
    e = embed_images(model, [c[0].image for c in crops])
    same = min(e[0] @ e[1], e[2] @ e[3])
    different = max(e[i] @ e[j] for i in (0, 1) for j in (2, 3))
    assert same > different, (same, different)


def test_training_from_the_pretrained_descriptor_uses_its_normalisation(fake, tmp_path):
    """verikit train with faceapi:dlib_resnet from weights: the model records the backbone's own
    mean and std (not verikit's 0.5 / 0.5), and a frozen backbone keeps the pretrained weights."""
    from PIL import Image

    from verikit.train.data import Split
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    _, _, root = fake
    file = str(root / "weights" / "dlib_resnet.safetensors")
    items = []
    for person in range(4):
        for k in range(4):
            path = tmp_path / f"p{person}_{k}.png"
            Image.fromarray(np.random.default_rng(person * 10 + k).integers(0, 255, (104, 104, 3), np.uint8)).save(path)
            items.append((f"p{person}", path))
    cfg = TrainConfig(backbone="faceapi:dlib_resnet", backbone_options={"weights": file}, image_size=(104, 104),
                      channels=3, embedding_size=16, loss="normalized_softmax", batch_size=8, m_per_class=2,
                      epochs=1, freeze_epochs=1, val_fraction=0.0, device="cpu", workers=0, augment="none")
    model = train(None, cfg, split=Split(items, [])).model
    declared = create_backbone(weights=file).input_spec
    assert model.config.input_spec.mean == declared.mean and model.config.input_spec.std == (1.0, 1.0, 1.0)
    pretrained = create_backbone(weights=file).state_dict()
    assert all(torch.equal(v, pretrained[k]) for k, v in model.backbone.state_dict().items())
