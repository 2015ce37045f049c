"""verikit-faceapi: pretrained face networks (face-api.js's weights) as verikit plugins.

This package owns two entries:

* ``faceapi`` in ``verikit.backbones`` -- dlib's ResNet face descriptor (``faceapi:dlib_resnet``,
  the only architecture): 150x150 RGB chips in, a 128-d descriptor out, as an already-pooled
  backbone (use it with ``embed_from: pooled`` to score with the descriptor itself);
* ``faceapi`` in ``verikit.detectors`` -- face boxes (Haar by default) refined by a 68-point
  landmark network, so verikit aligns faces on the full landmark template.

Weights are not shipped: ``python -m verikit_faceapi fetch`` downloads the pinned npm package
and converts them (:mod:`verikit_faceapi.weights`). Factories import torch only when called.
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


def create_detector(boxes: str | None = "haar", *, box_options: dict[str, Any] | None = None,
                    weights: str | None = None, margin: float = 0.2, equalize: bool = False):
    """Entry-point factory for ``faceapi``; every option is JSON-serialisable.

    ``boxes`` is the verikit detector spec that finds the faces (``haar`` by default, with
    ``box_options``); ``None`` or ``"none"`` takes the whole image as the face (photos already
    cropped to one face). ``margin`` grows each box by that fraction per side before the
    landmark network sees it. ``equalize`` shows the landmark network a histogram-equalised
    copy of the image (for dark photos; the crops are cut from the image as given). ``weights``:
    the landmark network's safetensors file (default: the file ``python -m verikit_faceapi
    fetch`` writes).
    """
    import math

    from verikit.plugin_api import PluginError, detectors

    from .detector import FaceApiLandmarkDetector
    from .weights import load_network

    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and 0.0 <= margin <= 1.0):
        raise PluginError(f"faceapi option margin must be between 0 and 1, got {margin!r}")
    if not isinstance(equalize, bool):
        raise PluginError(f"faceapi option equalize must be true or false, got {equalize!r}")
    if box_options is not None and not isinstance(box_options, dict):
        raise PluginError(f"faceapi option box_options must be an object of detector options, got {box_options!r}")
    if boxes in (None, "none"):
        if box_options:
            raise PluginError("faceapi option box_options needs a box detector (boxes)")
        box_detector = None
    elif str(boxes).split(":")[0] == "faceapi":
        raise PluginError("faceapi option boxes cannot be faceapi itself")
    else:
        box_detector = detectors.create(str(boxes), **(box_options or {}))
    return FaceApiLandmarkDetector(load_network("landmarks", weights), box_detector, float(margin), equalize)


def detector_unavailable() -> str | None:
    """Why the ``faceapi`` detector cannot be built here (its landmark weights are not fetched), or None."""
    from .weights import NETWORKS, default_dir

    if (default_dir() / NETWORKS["landmarks"][2]).is_file():
        return None
    return f"landmark weights not fetched to '{default_dir()}' (run: python -m verikit_faceapi fetch)"


create_detector.unavailable = detector_unavailable  # type: ignore[attr-defined]
