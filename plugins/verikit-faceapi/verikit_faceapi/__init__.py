"""verikit-faceapi: pretrained face networks (face-api.js's weights) as verikit plugins.

This package owns two entries:

* ``faceapi`` in ``verikit.backbones`` -- dlib's ResNet face descriptor (``faceapi:dlib_resnet``,
  the only architecture): 150x150 RGB chips in, a 128-d descriptor out, as an already-pooled
  backbone (use it with ``embed_from: pooled`` to score with the descriptor itself);
* ``faceapi`` in ``verikit.detectors`` -- face-api.js's SSD-MobileNetV1 (``faceapi:ssd``, the
  default) or Tiny-YOLOv2 (``faceapi:tiny_yolo``) face detector, or any other verikit detector
  (``faceapi:haar``), for the boxes, and a 68-point landmark network that places the iBUG points
  in each box, so verikit aligns faces on the full landmark template.

Weights are not shipped: ``python -m verikit_faceapi fetch`` downloads the pinned npm package
and converts its four networks (:mod:`verikit_faceapi.weights`). Factories import torch only when called.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

ARCHITECTURES = ("dlib_resnet",)


def create_backbone(name: str | None = None, *, in_chans: int = 3, pretrained: bool = False,
                    weights: str | None = None):
    """Entry-point factory for ``faceapi[:dlib_resnet]``.

    ``weights`` is a safetensors file written by ``python -m verikit_faceapi fetch``;
    ``pretrained=True`` without it reads the default folder's file. Neither: random weights (a
    saved verikit model loads its own). It declares its ``input_spec``: 150x150, face-api.js's
    mean, std 1 (x / 255 - mean / 255). It was trained on RGB faces; ``in_chans=1`` sums the
    first layer's RGB filters and averages the mean, as timm does for grey models.
    """
    from verikit.plugin_api import ModelError

    from .nets import DlibResNet
    from .weights import load_network

    if (name or ARCHITECTURES[0]) not in ARCHITECTURES:
        raise ModelError(f"faceapi has no architecture {name!r} (available: {', '.join(ARCHITECTURES)})")
    if in_chans not in (1, 3):
        raise ModelError(f"faceapi:dlib_resnet takes 1 or 3 input channels, not {in_chans!r}")
    net = load_network("descriptor", weights) if (weights or pretrained) else DlibResNet()
    if in_chans == 1:
        net.to_grey()
    net.input_spec = descriptor_input_spec(in_chans)
    return net


def descriptor_input_spec(channels: int = 3):
    """How dlib_resnet's input is prepared: 150x150, x / 255 - face-api.js's mean / 255."""
    from verikit.plugin_api import InputSpec

    from .nets import DESCRIPTOR_SIZE, MEAN_RGB

    mean = tuple(m / 255.0 for m in MEAN_RGB)
    return InputSpec(channels=channels, size=(DESCRIPTOR_SIZE, DESCRIPTOR_SIZE),
                     mean=mean if channels == 3 else (sum(mean) / 3,), std=(1.0,) * channels)


# face-api.js's own face detectors, by the name ``faceapi:NAME`` gives them: (weights key, default
# input size, default NMS IoU, default cap on boxes per image) -- face-api.js's defaults.
BOX_NETWORKS = {"ssd": ("ssd", 512, 0.5, 100), "tiny_yolo": ("tiny_yolo", 416, 0.4, None)}
# The default box source: the detector with the best discrete TPR at 1,000 false positives on
# FDDB folds 02-10 (benchmarks/results/detect_fddb.json; README's detector table): SSD 0.916,
# OpenCV Haar 0.736, Tiny-YOLO (416 px) 0.600. On photos already cropped to a face (ORL) Haar
# boxes give the better chips (0.0% vs 3.3% EER): faceapi:haar there.
DEFAULT_BOXES = "ssd"
# What face-api.js's own detectors look at by default: the photo as given (see create_detector's enhance).
DEFAULT_ENHANCE = "none"


def create_detector(boxes: str | None = DEFAULT_BOXES, *, score_threshold: float | None = None,
                    input_size: int | None = None, nms_iou: float | None = None, max_results: int | None = None,
                    box_weights: str | None = None, border: float | None = None, enhance: str | None = None,
                    box_options: dict[str, Any] | None = None,
                    landmarks: bool = True, weights: str | None = None, margin: float | None = None,
                    equalize: bool = False):
    """Entry-point factory for ``faceapi[:BOXES]``; every option is JSON-serialisable.

    ``boxes`` (the spec's argument) says where the face boxes come from:

    * ``ssd`` (the default) or ``tiny_yolo``: face-api.js's SSD-MobileNetV1 or Tiny-YOLOv2 face
      detector, with ``score_threshold`` (boxes scoring above it; default 0.5), ``input_size``
      (the square the network sees: SSD 512, fixed by its anchors; Tiny-YOLO a multiple of 32,
      default 416), ``nms_iou`` (a box overlapping a better one by more is dropped; SSD 0.5,
      Tiny-YOLO 0.4), ``max_results`` (boxes per image; SSD 100, Tiny-YOLO no cap) and
      ``box_weights`` (the network's safetensors file) -- face-api.js's defaults throughout --
      and ``border`` (default 0.5: an image where nothing is found is searched again inside a grey
      border of this fraction of its longer side, so a face filling the frame is found; 0 gives
      face-api.js's boxes exactly) and ``enhance`` (``none``, the default, ``equalize`` or
      ``clahe``: the network looks at a copy of the photo with its luminance histogram-equalised or
      CLAHE-equalised, for dark photos; the boxes are the photo's, and so are the crops;
      :mod:`verikit_faceapi.contrast`);
    * any other verikit detector spec (``haar``, ``haar:frontalface_alt2``, ...) with
      ``box_options`` (that detector's options);
    * ``none``: the whole image is the face (photos already cropped to one face).

    The boxes are the box source's, unchanged; with ``landmarks`` (default) face-api.js's
    68-point network then places the iBUG landmarks in each box, so verikit aligns the face on
    them. ``margin`` grows each box by that fraction per side before the landmark network sees
    it (default: 0 for ssd / tiny_yolo, whose boxes face-api.js feeds it as they are; 0.2 for
    other detectors). ``equalize`` shows the landmark network a histogram-equalised copy of the
    image (for dark photos; the crops are cut from the image as given). ``weights``: the
    landmark network's file. ``landmarks=false`` returns the box source alone.
    """
    from verikit.plugin_api import PluginError, detectors

    from .detector import FaceApiLandmarkDetector
    from .weights import load_network

    _check_landmark_options(margin, equalize, landmarks)
    if box_options is not None and not isinstance(box_options, dict):
        raise PluginError(f"faceapi option box_options must be an object of detector options, got {box_options!r}")
    name = "none" if boxes is None else str(boxes)
    own = {"score_threshold": score_threshold, "input_size": input_size, "nms_iou": nms_iou,
           "max_results": max_results, "box_weights": box_weights, "border": border, "enhance": enhance}
    if name in BOX_NETWORKS:
        if box_options:
            raise PluginError(f"faceapi option box_options is for another box detector; {name} takes "
                              "score_threshold, input_size, nms_iou, max_results, box_weights, border and enhance "
                              "directly")
        box_detector = _box_network(name, **own)
    else:
        given = sorted(k for k, v in own.items() if v is not None)
        if given:
            raise PluginError(f"faceapi option(s) {', '.join(given)} apply to face-api.js's own detectors "
                              f"({', '.join(BOX_NETWORKS)}), not to boxes={name!r}; pass its options in box_options")
        if name == "none":
            if box_options:
                raise PluginError("faceapi option box_options needs a box detector (boxes)")
            box_detector = None
        elif name.split(":")[0] == "faceapi":
            raise PluginError("faceapi option boxes cannot be faceapi itself")
        else:
            box_detector = detectors.create(name, **(box_options or {}))
    if not landmarks:
        if box_detector is None:
            raise PluginError("faceapi with boxes=none and landmarks=false would detect nothing")
        return box_detector
    if margin is None:
        margin = 0.0 if name in BOX_NETWORKS else 0.2
    return FaceApiLandmarkDetector(load_network("landmarks", weights), box_detector, float(margin), equalize)


def _check_landmark_options(margin: Any, equalize: Any, landmarks: Any) -> None:
    import math

    from verikit.plugin_api import PluginError

    if margin is not None and not (isinstance(margin, (int, float)) and not isinstance(margin, bool)
                                   and math.isfinite(margin) and 0.0 <= margin <= 1.0):
        raise PluginError(f"faceapi option margin must be between 0 and 1, got {margin!r}")
    if not isinstance(equalize, bool):
        raise PluginError(f"faceapi option equalize must be true or false, got {equalize!r}")
    if not isinstance(landmarks, bool):
        raise PluginError(f"faceapi option landmarks must be true or false, got {landmarks!r}")


def _box_network(name: str, *, score_threshold: Any, input_size: Any, nms_iou: Any, max_results: Any,
                 box_weights: str | None, border: Any, enhance: Any):
    """face-api.js's ``name`` detector with its options checked (face-api.js's defaults for None)."""
    import math

    from verikit.plugin_api import PluginError

    from .contrast import ENHANCE_MODES
    from .face_detector import FaceApiBoxDetector
    from .weights import load_network

    key, default_size, default_iou, default_cap = BOX_NETWORKS[name]

    def number(value: Any, option: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise PluginError(f"faceapi:{name} option {option} must be a number in {interval}, got {value!r}")
        return float(value)

    threshold = 0.5 if score_threshold is None else number(score_threshold, "score_threshold", 0.0, 1.0, high_open=True)
    iou = default_iou if nms_iou is None else number(nms_iou, "nms_iou", 0.0, 1.0, low_open=True)
    size = default_size if input_size is None else input_size
    if name == "ssd" and size != 512:
        raise PluginError(f"faceapi:ssd option input_size must be 512 (its 5,118 anchors are made for it), got {size!r}")
    if not (isinstance(size, int) and not isinstance(size, bool) and 32 <= size <= 2048 and size % 32 == 0):
        raise PluginError(f"faceapi:{name} option input_size must be a multiple of 32 from 32 to 2048, got {size!r}")
    cap = default_cap if max_results is None else max_results
    if cap is not None and not (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1):
        raise PluginError(f"faceapi:{name} option max_results must be a positive integer, got {cap!r}")
    frame = 0.5 if border is None else number(border, "border", 0.0, 2.0)
    contrast = DEFAULT_ENHANCE if enhance is None else enhance
    if contrast not in ENHANCE_MODES:
        raise PluginError(f"faceapi:{name} option enhance must be one of {', '.join(ENHANCE_MODES)}, got {enhance!r}")
    return FaceApiBoxDetector(load_network(key, box_weights), name, input_size=size, score_threshold=threshold,
                              nms_iou=iou, max_results=cap, border=frame, enhance=contrast)


def detector_unavailable() -> str | None:
    """Why the ``faceapi`` detectors cannot be built here (weights not fetched), or None."""
    from .weights import NETWORKS, default_dir

    missing = [NETWORKS[k][2] for k in ("landmarks", "ssd", "tiny_yolo") if not (default_dir() / NETWORKS[k][2]).is_file()]
    if not missing:
        return None
    return f"weights {', '.join(missing)} not fetched to '{default_dir()}' (run: python -m verikit_faceapi fetch)"


create_detector.unavailable = detector_unavailable  # type: ignore[attr-defined]
# Small builds the contract tests check: each box source with landmarks, and a network alone.
create_detector.example = ("faceapi:ssd", {})  # type: ignore[attr-defined]
create_detector.examples = [("faceapi:ssd", {}), ("faceapi:tiny_yolo", {}),  # type: ignore[attr-defined]
                            ("faceapi:tiny_yolo", {"landmarks": False, "score_threshold": 0.3}),
                            ("faceapi:haar", {})]
