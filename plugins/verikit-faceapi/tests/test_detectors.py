"""face-api.js's SSD-MobileNetV1 and Tiny-YOLOv2 face detectors in verikit: each layer against
TensorFlow's definition written as loops, the decoding and NMS against face-api.js's code written
as loops, the conversion by a round trip through tfjs files, the detector's options and contract
on converted random weights, and -- where the real weights are fetched and the shared data is
present -- the whole detector against the boxes face-api.js itself produced under Node.js
(``reference/reference_boxes.json``, made by ``reference/make_reference.py``)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from verikit.errors import ModelError, PluginError
from verikit.evaluate.detection.metrics import iou_matrix
from verikit.io import load_image
from verikit.registry import detectors
from verikit.testing import check_detector
from verikit_faceapi import create_detector
from verikit_faceapi.face_detector import FaceApiBoxDetector, reshaped_dims, resize_to_square
from verikit_faceapi.nets import MEAN_RGB
from verikit_faceapi.ssd import SSD_ANCHORS, DepthwiseBN, OffsetConv, SsdMobileNetV1, decode_boxes, face_scores
from verikit_faceapi.tiny_yolo import TINY_ANCHORS, SeparableLeaky, TinyYolo, decode_cells, max_pool_same
from verikit_faceapi.weights import NETWORKS, convert, default_dir, load_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_package import write_fake_package  # noqa: E402
from tf_reference import (faceapi_nms, faceapi_ssd_nms, ssd_decode_by_hand, tf_conv_by_hand,  # noqa: E402
                          tf_max_pool_same, tf_resize_bilinear_legacy, tiny_extract_boxes_by_hand)

HERE = Path(__file__).resolve().parent
BUNDLED_ORL = HERE.parents[2] / "data" / "orl_faces"
DATA = Path(os.environ.get("VERIKIT_DATA") or HERE.parents[3].parent / "shared" / "data")


def _t(x_hwc: np.ndarray) -> torch.Tensor:
    return torch.tensor(x_hwc, dtype=torch.float32).permute(2, 0, 1)[None]


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).detach().numpy()


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """Random networks, their tfjs package folder and the converted safetensors files."""
    root = tmp_path_factory.mktemp("faceapi_detectors")
    nets = write_fake_package(root / "package" / "model", seed=3)
    convert(root / "package" / "model", root / "weights")
    files = {k: str(root / "weights" / v[2]) for k, v in NETWORKS.items()}
    return nets, files


# -- layers against TensorFlow's definitions ----------------------------------------------------------
@pytest.mark.parametrize("kernel, stride, size", [(3, 2, (10, 9)), (3, 2, (8, 8)), (1, 1, (5, 7)), (3, 1, (6, 5))])
def test_ssd_offset_conv_is_tf_conv_plus_offset_then_relu6(kernel, stride, size):
    rng = np.random.default_rng(kernel * 10 + stride)
    x = rng.normal(size=(*size, 4)) * 3
    layer = OffsetConv(4, 5, kernel, stride)
    w, offset = rng.normal(size=(kernel, kernel, 4, 5)), rng.normal(size=5)
    layer.conv.weight.data = torch.tensor(w, dtype=torch.float32).permute(3, 2, 0, 1)
    layer.offset.data = torch.tensor(offset, dtype=torch.float32)
    expected = np.clip(tf_conv_by_hand(x, w, stride) + offset, 0, 6)
    assert np.allclose(_hwc(layer(_t(x))), expected, atol=1e-4)


@pytest.mark.parametrize("stride, size", [(1, (7, 6)), (2, (9, 8)), (2, (8, 8))])
def test_ssd_depthwise_is_tf_depthwise_then_batch_norm_then_relu6(stride, size):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(*size, 3)) * 3
    layer = DepthwiseBN(3, stride).eval()
    w = rng.normal(size=(3, 3, 3, 1))
    mean, var, gamma, beta = rng.normal(size=3), rng.random(3) + 0.5, rng.random(3) + 0.5, rng.normal(size=3)
    layer.conv.weight.data = torch.tensor(w, dtype=torch.float32).permute(2, 3, 0, 1)
    for t, v in ((layer.bn.running_mean, mean), (layer.bn.running_var, var), (layer.bn.weight.data, gamma),
                 (layer.bn.bias.data, beta)):
        t.copy_(torch.tensor(v, dtype=torch.float32))
    # tf.batchNorm(x, mean, variance, offset, scale, epsilon) = (x - mean) * scale / sqrt(variance + eps) + offset
    expected = (tf_conv_by_hand(x, w, stride, depthwise=True) - mean) * gamma / np.sqrt(var + 0.001) + beta
    assert np.allclose(_hwc(layer(_t(x))), np.clip(expected, 0, 6), atol=1e-4)


def test_tiny_yolo_layers_are_tensorflows():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, 8, 3))
    # the separable layer: zero-pad 1, depthwise 3x3 'valid', pointwise 1x1, bias, leaky ReLU 0.1
    sep = SeparableLeaky(3, 4)
    dw, pw, b = rng.normal(size=(3, 3, 3, 1)), rng.normal(size=(1, 1, 3, 4)), rng.normal(size=4)
    sep.depthwise.weight.data = torch.tensor(dw, dtype=torch.float32).permute(2, 3, 0, 1)
    sep.pointwise.weight.data = torch.tensor(pw, dtype=torch.float32).permute(3, 2, 0, 1)
    sep.pointwise.bias.data = torch.tensor(b, dtype=torch.float32)
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    pre = tf_conv_by_hand(padded, dw, 1, depthwise=True, padding="valid") @ pw[0, 0] + b
    assert np.allclose(_hwc(sep(_t(x))), np.where(pre > 0, pre, 0.1 * pre), atol=1e-4)
    # the first layer: a 3x3 'valid' convolution
    net = TinyYolo()
    w0 = net.conv0.weight.detach().permute(2, 3, 1, 0).numpy()
    expected = tf_conv_by_hand(x, w0, 1, padding="valid") + net.conv0.bias.detach().numpy()
    assert np.allclose(_hwc(net.conv0(_t(x))), expected, atol=1e-4)
    # max pooling 'same' at stride 2 and 1, odd and even sizes
    for shape, stride in (((9, 8, 2), 2), ((7, 7, 2), 2), ((5, 6, 2), 1)):
        y = rng.normal(size=shape)
        assert np.allclose(_hwc(max_pool_same(_t(y), stride)), tf_max_pool_same(y, stride), atol=1e-6)


def test_network_shapes_follow_face_api_js():
    with torch.inference_mode():
        boxes, logits = SsdMobileNetV1().eval()(torch.zeros(1, 3, 512, 512))
        assert boxes.shape == (1, SSD_ANCHORS, 4) and logits.shape == (1, SSD_ANCHORS, 3)
        assert TinyYolo()(torch.zeros(1, 3, 416, 416)).shape == (1, 25, 13, 13)  # 416 -> 13 x 13 cells
        assert TinyYolo()(torch.zeros(1, 3, 608, 608)).shape == (1, 25, 19, 19)


# -- pre- and post-processing against face-api.js's loops ---------------------------------------------
@pytest.mark.parametrize("h, w, size", [(7, 5, 16), (23, 31, 10), (12, 12, 12), (9, 9, 4)])
def test_input_is_face_api_js_pad_to_square_then_tfjs_resize_bilinear(h, w, size):
    """padToSquare (zeros at the bottom / right), then resizeBilinear without half-pixel centres."""
    x = np.random.default_rng(h).integers(0, 256, size=(h, w, 3)).astype(np.float64)
    side = max(h, w)
    square = np.pad(x, ((0, side - h), (0, side - w), (0, 0)))
    ours = resize_to_square(x.astype(np.uint8), size).permute(1, 2, 0).numpy()
    assert np.allclose(ours, tf_resize_bilinear_legacy(square, size), atol=0.02)  # float32 grid: ~1e-4 of 255


def test_normalised_input_is_the_normalised_resize_in_and_out_of_inference_mode():
    """The normalisation is applied with the resize ((x - mean) / scale of face-api.js's input), on a
    read-only pixel array as PIL gives it; the sampling grid cached for one source shape serves
    later calls of either mode and of another shape's source unchanged."""
    from PIL import Image

    x = np.random.default_rng(5).integers(0, 256, size=(13, 20, 3)).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(x))
    assert not pixels.flags.writeable
    expected = (tf_resize_bilinear_legacy(np.pad(x.astype(np.float64), ((0, 7), (0, 0), (0, 0))), 16)
                - np.array(MEAN_RGB)) / 255.0
    with torch.inference_mode():
        inside = resize_to_square(pixels, 16, MEAN_RGB, 255.0)
    other = resize_to_square(x[:, :13], 16, MEAN_RGB, 255.0)  # 13 x 13: no padding
    outside = resize_to_square(pixels, 16, MEAN_RGB, 255.0)
    assert not outside.is_inference() and torch.equal(inside, outside)
    assert np.allclose(outside.permute(1, 2, 0).numpy(), expected, atol=1e-4)
    square = tf_resize_bilinear_legacy(x[:, :13].astype(np.float64), 16)
    assert np.allclose(other.permute(1, 2, 0).numpy(), (square - np.array(MEAN_RGB)) / 255.0, atol=1e-4)


@pytest.mark.parametrize("kind", ["ssd", "tiny_yolo"])
def test_batch_prepared_on_several_threads_is_the_one_prepared_on_one(kind):
    """With two torch threads the images of a batch are prepared on two worker threads at once,
    each into its own slot: the batch is bitwise the one a single thread makes (odd shapes, both
    orientations, a grey image; one image alone stays on the calling thread), and an image that
    fails fails the call."""
    import threading

    from PIL import Image

    import verikit_faceapi.face_detector as face_detector

    rng = np.random.default_rng(11)
    shapes = [(37, 53), (61, 29), (40, 40), (17, 90), (88, 31), (45, 60), (33, 34)]
    images = [Image.fromarray(rng.integers(0, 256, size=(h, w, 3)).astype(np.uint8)) for h, w in shapes]
    images[2] = images[2].convert("L")
    det = FaceApiBoxDetector(SsdMobileNetV1() if kind == "ssd" else TinyYolo(), kind, input_size=64,
                             score_threshold=0.5, nms_iou=0.4, max_results=None)
    seen: set[str] = set()
    each_image = face_detector._each_image

    def recording(fn, count):
        each_image(lambda k: (seen.add(threading.current_thread().name), fn(k)), count)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = det.prepare(images)
        alone = det.prepare(images[:1])
        torch.set_num_threads(2)
        face_detector._each_image = recording
        two = det.prepare(images)
        on_workers = set(seen)
        seen.clear()
        assert torch.equal(det.prepare(images[:1]), alone) and seen == {threading.current_thread().name}
        face_detector._each_image = each_image
        with pytest.raises(RuntimeError, match="non-empty"):  # grid_sample's own error, raised by the call
            det.prepare([*images[:3], Image.new("RGB", (0, 0)), *images[3:]])
    finally:
        face_detector._each_image = each_image
        torch.set_num_threads(threads)
    assert torch.equal(one, two) and two.is_contiguous(memory_format=torch.channels_last)
    assert on_workers and all(n.startswith("verikit-pool-") for n in on_workers)  # not the caller


def test_reshaped_dims_round_halves_up_as_javascript_does():
    assert reshaped_dims(450, 401, 512) == (512, 456)  # 401 * 512 / 450 = 456.28
    assert reshaped_dims(401, 450, 512) == (456, 512)
    assert reshaped_dims(4, 1, 2) == (2, 1)  # 0.5 rounds up in JavaScript (Python's round() gives 0)


def test_box_decoding_and_scores_are_face_api_js_formulas():
    rng = np.random.default_rng(0)
    enc = rng.normal(size=(50, 4))
    centre, size = rng.random((50, 2)), rng.random((50, 2)) * 0.3 + 0.01
    anchors = np.concatenate([centre - size / 2, centre + size / 2], 1)
    ours = decode_boxes(torch.tensor(enc), torch.tensor(anchors)).numpy()
    assert np.allclose(ours, ssd_decode_by_hand(enc, anchors), atol=1e-9)
    logits = rng.normal(size=(50, 3))
    assert np.allclose(face_scores(torch.tensor(logits)).numpy(), 1 / (1 + np.exp(-logits[:, 1])))
    out = rng.normal(size=(1, 25, 4, 4))
    boxes, scores = decode_cells(torch.tensor(out))
    by_hand = tiny_extract_boxes_by_hand(out[0].transpose(1, 2, 0), TINY_ANCHORS, 0.0)
    assert np.allclose(boxes[0].numpy(), [b for b, _ in by_hand], atol=1e-9)
    assert np.allclose(scores[0].numpy(), [s for _, s in by_hand], atol=1e-12)


@pytest.mark.parametrize("kind, cap", [("ssd", 100), ("ssd", 3), ("tiny_yolo", None)])
def test_nms_selects_what_face_api_js_selects(kind, cap):
    rng = np.random.default_rng(len(kind) + (cap or 0))
    centres = rng.random((60, 2)) * 0.6 + 0.2
    sizes = rng.random((60, 2)) * 0.2 + 0.05
    boxes = np.concatenate([centres - sizes, centres + sizes], 1)
    scores = rng.random(60)
    iou = 0.5 if kind == "ssd" else 0.4
    det = FaceApiBoxDetector(torch.nn.Identity(), kind, input_size=512, score_threshold=0.3, nms_iou=iou,
                             max_results=cap)
    kept_boxes, kept_scores = det.select(torch.tensor(boxes), torch.tensor(scores))
    if kind == "ssd":
        expected = faceapi_ssd_nms(boxes, scores, cap, iou, 0.3)
    else:  # face-api.js thresholds while decoding, then suppresses among the rest
        above = np.where(scores > 0.3)[0]
        expected = [int(above[i]) for i in faceapi_nms(boxes[above], scores[above], iou)]
    assert np.allclose(kept_boxes.numpy(), boxes[expected]) and np.allclose(kept_scores.numpy(), scores[expected])


# -- conversion and the detector on converted random weights --------------------------------------------
def test_conversion_round_trips_both_detectors(fake):
    nets, files = fake
    x = torch.randn(1, 3, 512, 512)
    with torch.inference_mode():
        loaded = load_network("ssd", files["ssd"])
        assert torch.equal(loaded.anchors, nets.ssd.anchors)
        for a, b in zip(loaded(x), nets.ssd(x)):
            assert torch.equal(a, b)
        y = torch.randn(2, 3, 416, 416)
        assert torch.equal(load_network("tiny_yolo", files["tiny_yolo"])(y), nets.tiny_yolo(y))


def _fake_options(spec: str, options: dict, files: dict) -> dict:
    out = {**options, "weights": files["landmarks"]} if options.get("landmarks", True) else dict(options)
    boxes = spec.split(":", 1)[1]
    if boxes in ("ssd", "tiny_yolo"):
        # random weights score thousands of boxes: keep a few, so the landmark stage stays quick
        out.update(box_weights=files[boxes], score_threshold=0.9, max_results=4)
    return out


@pytest.mark.parametrize("spec, options", create_detector.examples)
def test_every_declared_example_passes_the_detector_contract(fake, spec, options):
    _, files = fake
    check_detector(detectors.create(spec, **_fake_options(spec, options, files)))
    assert create_detector.example in create_detector.examples


def test_detector_options(fake):
    _, files = fake
    ssd = create_detector("ssd", box_weights=files["ssd"], weights=files["landmarks"], score_threshold=0.7,
                          max_results=5)
    assert ssd.margin == 0.0 and ssd.box_detector.max_results == 5 and ssd.box_detector.score_threshold == 0.7
    assert create_detector("haar", weights=files["landmarks"]).margin == 0.2  # other detectors: the old default
    tiny = create_detector("tiny_yolo", box_weights=files["tiny_yolo"], landmarks=False, input_size=320, border=0)
    assert isinstance(tiny, FaceApiBoxDetector) and tiny.input_size == 320 and tiny.border == 0.0
    assert type(create_detector("haar", landmarks=False)).__name__ == "HaarDetector"
    for spec, bad, match in [
        ("ssd", dict(score_threshold=1.0), r"score_threshold must be a number in \[0, 1\)"),
        ("ssd", dict(score_threshold=float("nan")), "score_threshold must be a number"),
        ("ssd", dict(input_size=416), "input_size must be 512"),
        ("tiny_yolo", dict(input_size=400), "multiple of 32"),
        ("tiny_yolo", dict(nms_iou=0), r"nms_iou must be a number in \(0, 1\]"),
        ("ssd", dict(max_results=0), "max_results must be a positive integer"),
        ("ssd", dict(border=-1), "border must be a number"),
        ("ssd", dict(enhance="bright"), "enhance must be one of none, equalize, clahe"),
        ("haar", dict(enhance="equalize"), r"enhance apply to face-api.js's own detectors"),
        ("ssd", dict(box_options={"min_neighbors": 3}), "box_options is for another box detector"),
        ("haar", dict(score_threshold=0.3), r"score_threshold apply to face-api.js's own detectors"),
        ("ssd", dict(landmarks="yes"), "landmarks must be true or false"),
        ("none", dict(landmarks=False), "would detect nothing"),
    ]:
        with pytest.raises(PluginError, match=match):
            create_detector(spec, **bad)
    with pytest.raises(PluginError, match="does not accept these options"):
        detectors.create("faceapi:ssd", threshold=0.5)


def test_missing_detector_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIKIT_FACEAPI_DIR", str(tmp_path))
    reason = detectors.status("faceapi")
    assert "ssd_mobilenetv1.safetensors" in reason and "python -m verikit_faceapi fetch" in reason
    with pytest.raises(ModelError, match="python -m verikit_faceapi fetch"):
        create_detector("tiny_yolo", landmarks=False)


# -- the real weights against face-api.js itself ---------------------------------------------------------
REAL = default_dir()
needs_real = pytest.mark.skipif(not all((REAL / NETWORKS[k][2]).is_file() for k in ("ssd", "tiny_yolo", "landmarks")),
                                reason=f"real faceapi weights not in {REAL}; run python -m verikit_faceapi fetch")
REFERENCE = json.loads((HERE / "reference" / "reference_boxes.json").read_text())


def faceapi_landmarks(net: torch.nn.Module, image, box) -> np.ndarray:
    """face-api.js's own landmark step on one detection, written out: the box clipped to the image
    and floored, zero-padded to a centred square, legacy-resized to 112, the network, the
    padding taken back out, shifted by the (unfloored) box corner."""
    W, H = image.size
    x, y, right, bottom = box
    cx, cy = max(x, 0.0), max(y, 0.0)
    fx, fy = math.floor(cx), math.floor(cy)
    fw, fh = math.floor(min(right - cx, W - cx)), math.floor(min(bottom - cy, H - cy))
    crop = torch.from_numpy(np.array(image)).permute(2, 0, 1).float()[:, fy:fy + fh, fx:fx + fw]
    diff = abs(fh - fw)
    after = math.floor(diff * 0.5 + 0.5)
    pad = (diff - after, after, 0, 0) if fh > fw else (0, 0, diff - after, after)
    square = torch.nn.functional.pad(crop, pad).permute(1, 2, 0).numpy()
    x112 = (resize_to_square(square, 112) - torch.tensor(MEAN_RGB)[:, None, None]) / 255.0
    with torch.inference_mode():
        frac = net(x112[None])[0].double().numpy()
    scale = 112 / max(fw, fh)
    dw, dh = fw * scale, fh * scale
    shift = np.array([abs(dw - dh) / 2 if dw < dh else 0.0, abs(dw - dh) / 2 if dh < dw else 0.0])
    return (frac * 112 - shift) / np.array([dw, dh]) * np.array([fw, fh]) + np.array([x, y])


def _photo(rel: str):
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"{path} not found; set VERIKIT_DATA")
    return load_image(path)


@needs_real
@pytest.mark.parametrize("kind", ["ssd", "tiny_yolo"])
def test_real_detectors_reproduce_face_api_js(kind):
    """Same pixels in (verikit decodes them, and handed them to face-api.js), the same boxes out:
    every box within 0.01 px of face-api.js's (clipped to the image), every score within 5e-4."""
    settings = REFERENCE["settings"][kind]
    threshold = settings["minConfidence" if kind == "ssd" else "scoreThreshold"]
    det = create_detector(kind, score_threshold=threshold, border=0)
    compared = 0
    for photo in REFERENCE["photos"]:
        image = _photo(photo["path"])
        assert image.size == (photo["width"], photo["height"])
        ours = det.detect([image])[0]
        ref = photo[kind]
        assert len(ours) == len(ref), (photo["path"], len(ours), len(ref))
        if not ref:
            continue
        w, h = image.size
        ref_boxes = np.clip(np.array([r["box"] for r in ref]), 0, [w, h, w, h])
        order = iou_matrix(ours.boxes, ref_boxes).argmax(1)  # each of ours -> face-api.js's box it is
        assert sorted(order) == list(range(len(ref))), photo["path"]
        assert np.abs(ours.boxes - ref_boxes[order]).max() < 0.01, photo["path"]
        assert np.abs(ours.scores - np.array([r["score"] for r in ref])[order]).max() < 5e-4, photo["path"]
        if kind == "ssd":
            # the 68-point network given face-api.js's own crop reproduces its landmarks ...
            net = det.net
            for r in ref:
                assert np.abs(faceapi_landmarks(net, image, r["box"]) - np.array(r["landmarks"])).max() < 0.01
            # ... and verikit's crop (box rounded, not floored; antialiased resize; cut the same way
            # for every box source) lands within 4% of the box's size on average, on faces of 20 px
            # or more (on a 9-pixel box one pixel of rounding is 10%)
            sizes = (ours.boxes[:, 2:] - ours.boxes[:, :2]).max(1)
            refmarks = np.array([r["landmarks"] for r in ref])[order]
            err = np.linalg.norm(ours.landmarks[:, :68] - refmarks, axis=2).mean(1) / sizes
            assert err[sizes >= 20].max() < 0.04, (photo["path"], err)
        compared += len(ref)
    assert compared >= 30


@needs_real
def test_real_ssd_finds_faces_that_fill_the_frame_with_its_border_search():
    paths = [BUNDLED_ORL / f"s{s}" / f"{i}.pgm" for s in (1, 3, 8, 12) for i in (1, 6)]
    images = [load_image(p) for p in paths]
    plain = create_detector("ssd", border=0, landmarks=False).detect(images)
    framed = create_detector("ssd").detect(images)
    assert sum(len(d) == 1 for d in framed) == len(images)  # one face in every ORL photo
    assert sum(len(d) == 0 for d in plain) >= 2  # face-api.js's SSD misses some of them
    for p, f in zip(plain, framed):  # where the first search finds a face, its boxes are kept
        if len(p):
            assert np.array_equal(p.boxes, f.boxes)


def _torch_prepare(det: FaceApiBoxDetector, images) -> torch.Tensor:
    """The input batch as the detector made it before its preparation moved to numpy (torch ops
    throughout: float copy, zero padding, in-place normalisation, grid_sample, copy into a
    channels-last batch) -- the 'before' of the test below, kept verbatim."""
    from verikit_faceapi.face_detector import _sample_grid
    from verikit_faceapi.tiny_yolo import TINY_MEAN_RGB

    mean, scale = ((127.5,) * 3, 127.5) if det.kind == "ssd" else (TINY_MEAN_RGB, 255.0)
    size = det.input_size
    batch = torch.empty((len(images), 3, size, size)).contiguous(memory_format=torch.channels_last)
    for k, image in enumerate(images):
        pixels = np.asarray(image.convert("RGB"))
        h, w, channels = pixels.shape
        side = max(h, w)
        rows, cols = h + int(h < side), w + int(w < side)
        x = torch.empty((1, rows, cols, channels))
        x[0, :h, :w] = torch.from_numpy(np.array(pixels))
        x[0, h:] = 0.0
        x[0, :h, w:] = 0.0
        x.sub_(torch.tensor(mean, dtype=x.dtype)).div_(scale)
        batch[k] = torch.nn.functional.grid_sample(x.permute(0, 3, 1, 2), _sample_grid(rows, cols, side, size),
                                                   mode="bilinear", padding_mode="border", align_corners=True)[0]
    return batch


@needs_real
@pytest.mark.parametrize("kind", ["ssd", "tiny_yolo"])
def test_real_fddb_boxes_are_unchanged_by_the_numpy_preparation(kind):
    """On real FDDB photos (portrait and landscape, so the padding falls on either side; one grey,
    converted to RGB) the batch the detector prepares is bitwise the one torch's ops made before,
    at 1 and 2 threads, and detect() returns exactly the boxes and scores the network gives on that
    earlier batch (at a low threshold, so many boxes are compared)."""
    from verikit.evaluate.detection.fddb import read_fddb

    folds = DATA / "fddb" / "FDDB-folds" / "FDDB-fold-02-ellipseList.txt"
    if not folds.is_file():
        pytest.skip(f"{folds} not found; set VERIKIT_DATA")
    images = [load_image(item.path) for item in read_fddb(folds)[:8]]
    assert {w > h for w, h in (im.size for im in images)} == {True, False}
    images[3] = images[3].convert("L")
    det = create_detector(kind, landmarks=False, border=0, score_threshold=0.05)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with torch.inference_mode():
                before = _torch_prepare(det, images)
                after = det.prepare(images)
            assert after.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(after, before)
    finally:
        torch.set_num_threads(threads)
    with torch.inference_mode():
        raw = det.raw_boxes(before)
    found = det.detect(images)
    compared = 0
    for image, boxes, scores, dets in zip(images, *raw, found):
        boxes, scores = det.select(boxes, scores)
        pixels = det.to_image(boxes, image.size)
        nonempty = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
        assert np.array_equal(dets.boxes, pixels[nonempty]) and np.array_equal(dets.scores, scores.numpy()[nonempty])
        compared += len(dets)
    assert compared >= 16
