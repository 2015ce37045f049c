"""verikit.segment: mask datasets, the crop/paste geometry of TorchMaskSegmenter (checked exactly
with a hand-set 1x1 convolution), training that must beat an untrained network, and the weights
round trip. Real components only: tiny networks, synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from verikit.errors import DataError, PluginError
from verikit.segment import SIDECAR_FILE, WEIGHTS_FILE
from verikit.segment.base import TorchMaskSegmenter, context_region, foreground_logits
from verikit.segment.data import find_mask_pairs, load_pair, read_mask, split_pairs
from verikit.segment.training import fit_segmenter, mask_iou
from verikit.segment.weights import load_weights, read_sidecar
from verikit.structures import Detections
from verikit.testing import check_segmenter, synthetic_mask_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- datasets ------------------------------------------------------------------------------------
def _pair_folders(tmp_path, names=("a", "b", "c"), mask_names=None, mask_suffix=".png"):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(exist_ok=True)
    masks.mkdir(exist_ok=True)
    for name in names:
        Image.new("RGB", (20, 10), (9, 9, 9)).save(images / f"{name}.jpg")
    for name in mask_names if mask_names is not None else names:
        Image.new("L", (20, 10), 0).save(masks / f"{name}{mask_suffix}")
    return images, masks


def test_pairs_match_by_stem_and_sub_folder(tmp_path):
    images, masks = _pair_folders(tmp_path)
    (images / "sub").mkdir()
    (masks / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(images / "sub" / "a.png")
    Image.new("L", (8, 8)).save(masks / "sub" / "a.bmp")
    pairs = find_mask_pairs(images, masks)
    assert [(p.image.relative_to(images).as_posix(), p.mask.relative_to(masks).as_posix()) for p in pairs] == [
        ("a.jpg", "a.png"), ("b.jpg", "b.png"), ("c.jpg", "c.png"), ("sub/a.png", "sub/a.bmp")]


def test_mask_rule_is_above_127_or_a_0_1_label_map(tmp_path):
    grey = np.array([[0, 1, 127, 128, 255]], np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    assert read_mask(tmp_path / "grey.png").tolist() == [[False, False, False, True, True]]
    Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8), "L").save(tmp_path / "labels.png")
    assert read_mask(tmp_path / "labels.png").tolist() == [[False, True, True, False]]
    colour = np.zeros((1, 2, 3), np.uint8)
    colour[0, 1] = (192, 128, 128)  # a VOC-style colour mask: the brightest channel decides
    Image.fromarray(colour, "RGB").save(tmp_path / "colour.png")
    assert read_mask(tmp_path / "colour.png").tolist() == [[False, True]]


@pytest.mark.parametrize("case, needle", [
    ("image without mask", "image '.*c.jpg' has no mask named 'c"),
    ("mask without image", "mask '.*d.png' has no image named 'd"),
    ("duplicate stem", "two mask files share the name 'a'"),
    ("size mismatch", "mask '.*a.png' is 21x10 but its image '.*a.jpg' is 20x10"),
    ("missing folder", "folder '.*nowhere' does not exist"),
    ("empty folder", "no image files in mask folder"),
])
def test_dataset_errors_are_one_line_and_name_the_file(tmp_path, case, needle):
    images, masks = _pair_folders(tmp_path, mask_names={"image without mask": ("a", "b")}.get(case))
    if case == "mask without image":
        Image.new("L", (20, 10)).save(masks / "d.png")
    elif case == "duplicate stem":
        Image.new("L", (20, 10)).save(masks / "a.bmp")
    elif case == "size mismatch":
        Image.new("L", (21, 10)).save(masks / "a.png")
    elif case == "missing folder":
        masks = tmp_path / "nowhere"
    elif case == "empty folder":
        for f in masks.iterdir():
            f.unlink()
    with pytest.raises(DataError, match=needle) as info:
        for pair in find_mask_pairs(images, masks):
            load_pair(pair)
    assert "\n" not in str(info.value)


def test_split_is_seeded_disjoint_and_keeps_a_training_pair(tmp_path):
    pairs = find_mask_pairs(*_pair_folders(tmp_path, names=[f"x{i}" for i in range(10)]))
    train, val = split_pairs(pairs, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val)
    assert split_pairs(pairs, 0.3, seed=1) == (train, val) and split_pairs(pairs, 0.3, seed=2) != (train, val)
    assert split_pairs(pairs[:1], 0.5, seed=0) == (pairs[:1], [])
    assert split_pairs(pairs, 0.0, seed=0) == (sorted(pairs, key=lambda p: p.image), [])
    with pytest.raises(DataError, match=r"validation fraction must be in \[0, 1\)"):
        split_pairs(pairs, 1.0, seed=0)


# -- geometry ------------------------------------------------------------------------------------
def _bright_net(k: float = 40.0) -> torch.nn.Module:
    """1x1 conv: logit = k * (mean of the [0, 1] channels - 0.5): white -> ~1, black -> ~0."""
    net = torch.nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        net.weight.fill_(k / 3)
        net.bias.fill_(-k / 2)
    return net


def _unit(net, **kw):
    return TorchMaskSegmenter(net, mean=(0, 0, 0), std=(1, 1, 1), **kw)


def _white_rectangle():
    pixels = np.zeros((80, 100, 3), np.uint8)
    pixels[10:50, 20:60] = 255  # x 20..59, y 10..49
    return Image.fromarray(pixels, "RGB")


def test_mask_is_pasted_exactly_where_the_box_is():
    image = _white_rectangle()
    dets = Detections([[30, 20, 70, 60]], [1.0], image_size=(100, 80))  # overlaps the rectangle's lower right
    mask = _unit(_bright_net(), input_size=40, context=0.0).segment([image], [dets])[0].masks[0]  # 40 px: no resize
    expected = np.zeros((80, 100), bool)
    expected[20:50, 30:60] = True  # white AND inside the box; white pixels left of x=30 are not this box's
    assert np.array_equal(mask >= 0.5, expected)
    assert mask[expected].min() > 0.99 and mask[~expected].max() < 0.01


def test_context_grows_the_box_and_resizing_keeps_the_place():
    image = _white_rectangle()
    dets = Detections([[30, 20, 70, 60]], [1.0], image_size=(100, 80))
    assert context_region(dets.boxes[0], 0.25, 100, 80) == (20, 10, 80, 70)
    exact = _unit(_bright_net(), input_size=60, context=0.25).segment([image], [dets])[0].masks[0]
    whole = np.zeros((80, 100), bool)
    whole[10:50, 20:60] = True
    assert np.array_equal(exact >= 0.5, whole)
    resized = _unit(_bright_net(), input_size=24, context=0.25).segment([image], [dets])[0].masks[0]
    wrong = (resized >= 0.5) != whole
    rows, cols = np.nonzero(wrong)
    # a down- and up-sampled mask may only disagree within 2 px of the rectangle's edges
    assert wrong.sum() < 0.1 * whole.sum()
    assert all(min(abs(r - 10), abs(r - 49)) <= 2 or min(abs(c - 20), abs(c - 59)) <= 2 for r, c in zip(rows, cols))


def test_boxes_images_batches_and_thresholds():
    image = _white_rectangle()
    seg = _unit(_bright_net(), input_size=32, context=0.0, batch_size=2, threshold=0.5)
    dets = [Detections([[0, 0, 100, 80], [20, 10, 60, 50], [70, 60, 100, 80]], [1, 1, 1], image_size=(100, 80)),
            Detections.empty(image_size=(100, 80)), Detections([[0, 0, 10, 10]], [1], image_size=(100, 80))]
    out = seg.segment([image, image, image], dets)
    assert [m.masks.shape for m in out] == [(3, 80, 100), (0, 80, 100), (1, 80, 100)]
    assert set(np.unique(out[0].masks)) <= {0.0, 1.0}
    assert out[0].masks[1, 10:50, 20:60].all() and out[0].masks[2].sum() == 0 and out[2].masks.sum() == 0
    with pytest.raises(DataError, match="detections for image 0 are for a 50x50 image, not 100x80"):
        seg.segment([image], [Detections([[0, 0, 5, 5]], [1], image_size=(50, 50))])
    check_segmenter(seg)


def test_multi_class_output_uses_the_softmax_of_the_foreground_channel():
    logits = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    for fg in range(3):
        assert torch.allclose(torch.sigmoid(foreground_logits(logits, fg)), logits.softmax(1)[:, fg], atol=1e-6)
    assert torch.equal(foreground_logits(logits[:, :1]), logits[:, 0])


def test_check_segmenter_catches_a_wrong_shape():
    class Broken:
        def segment(self, images, detections):
            from verikit.structures import Masks
            return [Masks(np.zeros((len(d), 4, 4), np.float32)) for d in detections]

    with pytest.raises(AssertionError, match="masks of shape"):
        check_segmenter(Broken())


# -- training ------------------------------------------------------------------------------------
def _tiny_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 1, 1))


@pytest.fixture(scope="module")
def disks(tmp_path_factory):
    return find_mask_pairs(*synthetic_mask_dataset(tmp_path_factory.mktemp("disks"), n=12, size=48))


@pytest.fixture(scope="module")
def trained(disks, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    torch.set_num_threads(1)
    summary = fit_segmenter(_tiny_net, spec="tiny", options={"width": 8}, pairs=disks, out=out, epochs=12,
                            batch_size=4, lr=0.02, size=48, val_fraction=0.25, seed=0, mean=(0.5,) * 3,
                            std=(0.25,) * 3)
    return out, summary


def test_training_beats_an_untrained_network(trained, disks):
    from verikit.segment.training import evaluate_iou
    from verikit.io import load_image

    out, summary = trained
    _, val = split_pairs(disks, 0.25, 0)
    torch.manual_seed(0)
    untrained = TorchMaskSegmenter(_tiny_net(), input_size=48, mean=(0.5,) * 3, std=(0.25,) * 3, context=0.0)
    before = float(np.mean(evaluate_iou(untrained, [load_image(p.image) for p in val], [load_pair(p)[1] for p in val])))
    assert summary["val_images"] == 3 and summary["images"] == 9 and len(summary["val_iou_per_epoch"]) == 12
    assert before < 0.4 < 0.8 < summary["val_iou"], (before, summary)
    assert summary["val_iou"] == max(summary["val_iou_per_epoch"]) == summary["val_iou_per_epoch"][summary["best_epoch"] - 1]
    assert summary["loss_per_epoch"][-1] < summary["loss_per_epoch"][0]


def test_saved_weights_reload_to_the_same_masks(trained, disks):
    out, summary = trained
    meta = read_sidecar(str(out / WEIGHTS_FILE))
    assert meta["spec"] == "tiny" and meta["options"] == {"width": 8, "input_size": 48}
    assert meta["training"]["val_iou"] == summary["val_iou"]
    assert json.loads((out / SIDECAR_FILE).read_text()) == meta
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file behind
    a, b = _tiny_net(), _tiny_net()
    load_weights(a, out / WEIGHTS_FILE)
    load_weights(b, out / WEIGHTS_FILE)
    image = Image.open(disks[0].image).convert("RGB")
    whole = [Detections([[0, 0, 48, 48]], [1], image_size=(48, 48))]
    kw = dict(input_size=48, mean=(0.5,) * 3, std=(0.25,) * 3, context=0.0)
    ma = TorchMaskSegmenter(a, **kw).segment([image], whole)[0].masks
    assert np.array_equal(ma, TorchMaskSegmenter(b, **kw).segment([image], whole)[0].masks)
    assert mask_iou(ma[0] >= 0.5, load_pair(disks[0])[1]) > 0.7
    with pytest.raises(PluginError, match="do not fit this network"):
        load_weights(torch.nn.Conv2d(3, 1, 1), out / WEIGHTS_FILE)
    with pytest.raises(PluginError, match="does not exist"):
        load_weights(a, out / "nope.safetensors")


def test_bad_training_settings_are_data_errors(disks, tmp_path):
    with pytest.raises(DataError, match="epochs and batch size"):
        fit_segmenter(_tiny_net, spec="tiny", options={}, pairs=disks, out=tmp_path, epochs=0)


def test_batchnorm_statistics_are_recomputed_as_a_plain_average():
    from verikit.segment.training import recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.01))
    batches = [torch.randn(2, 3, 8, 8) + i for i in range(3)]
    recalibrate_batchnorm(net, batches)
    with torch.no_grad():
        outs = [net[0](b) for b in batches]
    expected_mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    expected_var = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs]).mean(0)
    bn = net[1]
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(bn.running_var, expected_var, atol=1e-4)
    assert bn.momentum == 0.01 and int(bn.num_batches_tracked) == 3
