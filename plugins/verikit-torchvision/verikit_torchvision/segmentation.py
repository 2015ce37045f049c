"""torchvision's semantic segmentation models as the ``torchvision`` entry in ``verikit.segmenters``.

Spec ``torchvision:ARCH``, ARCH one of :data:`ARCHITECTURES`: FCN (fully convolutional, ResNet
50/101), DeepLabV3 (atrous convolution + ASPP; ResNet-50 or MobileNetV3) and LR-ASPP
(MobileNetV3). The network returns class logits (``{"out": (B, C, H, W)}``); the ``foreground``
class's softmax probability is the mask. Models are built with ``weights=None,
weights_backbone=None`` (nothing downloaded) unless ``weights="default"`` asks for torchvision's
21-class COCO-with-VOC-labels weights (downloads; foreground then defaults to class 15, "person").
:func:`create` carries ``create.train``, which is how ``verikit segment train`` trains one
(two classes: background, object).
"""

from __future__ import annotations

from typing import Any

ARCHITECTURES = ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large",
                 "lraspp_mobilenet_v3_large")
DEFAULT_ARCH = "lraspp_mobilenet_v3_large"
DEFAULT_SIZE = 256
VOC_CLASSES = 21    # torchvision's pretrained segmentation weights: the 20 Pascal VOC classes + background
VOC_PERSON = 15


def resolve_arch(arch: str | None) -> str:
    import difflib

    from verikit.plugin_api import PluginError

    name = arch or DEFAULT_ARCH
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(name, ARCHITECTURES, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PluginError(f"unknown torchvision segmenter {name!r}{hint} (available: {', '.join(ARCHITECTURES)})")
    return name


def build_network(arch: str, num_classes: int, *, pretrained: bool = False) -> Any:
    """A torchvision segmentation model without its auxiliary head; downloads only when ``pretrained``."""
    from torchvision.models import get_model_weights, segmentation

    builder = getattr(segmentation, arch)
    if pretrained:
        model = builder(weights=get_model_weights(builder).DEFAULT)
    else:
        extra = {} if arch.startswith("lraspp") else {"aux_loss": False}
        model = builder(weights=None, weights_backbone=None, num_classes=num_classes, **extra)
    if getattr(model, "aux_classifier", None) is not None:
        model.aux_classifier = None  # verikit uses "out" only; no need to run or store the aux head
    return model


def create(arch: str | None = None, *, weights: str | None = None, num_classes: int | None = None,
           foreground: int | None = None, input_size: int | None = None, threshold: float | None = None,
           context: float = 0.2, batch_size: int = 8, device: str = "cpu"):
    """Entry-point factory for ``torchvision:ARCH``; every option is JSON-serialisable.

    ``weights``: a local state dict (``segmenter.safetensors`` from ``verikit segment train``, whose
    ``segmenter.json`` supplies num_classes / foreground / input_size defaults), ``"default"`` for
    torchvision's pretrained 21-class weights (downloads), or None for random weights.
    ``num_classes``: including background (default 2, or 21 with ``weights="default"``).
    ``foreground``: the class whose probability is the mask (default 1; 15 "person" for 21 classes).
    ``input_size``: square side the network sees (default 256). ``threshold``: None for soft
    masks, else 0/1. ``context``: box growth before cropping (fraction of the box).
    """
    from verikit.plugin_api import PluginError, read_sidecar

    name = resolve_arch(arch)
    pretrained = weights == "default"
    meta = {} if pretrained else read_sidecar(weights)
    if meta and meta.get("spec") != f"torchvision:{name}":
        raise PluginError(f"weights '{weights}' were trained for {meta.get('spec')}, not torchvision:{name}")
    recorded = meta.get("options", {})
    classes = int(num_classes if num_classes is not None else
                  recorded.get("num_classes", VOC_CLASSES if pretrained else 2))
    if classes < 2:
        raise PluginError(f"torchvision option num_classes must be >= 2 (background + objects), got {num_classes!r}")
    if pretrained and classes != VOC_CLASSES:
        raise PluginError(f"torchvision weights='default' have {VOC_CLASSES} classes: num_classes must be {VOC_CLASSES}")
    fg = int(foreground if foreground is not None else
             recorded.get("foreground", VOC_PERSON if classes == VOC_CLASSES else 1))
    if not 0 <= fg < classes:
        raise PluginError(f"torchvision option foreground must be in [0, {classes - 1}], got {foreground!r}")
    size = int(input_size if input_size is not None else recorded.get("input_size", DEFAULT_SIZE))
    if size < 32:
        raise PluginError(f"torchvision option input_size must be at least 32, got {input_size!r}")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise PluginError(f"torchvision option threshold must be in [0, 1] or null, got {threshold!r}")
    if not float(context) >= 0.0:
        raise PluginError(f"torchvision option context must be >= 0, got {context!r}")
    from verikit.plugin_api import TorchMaskSegmenter, load_weights

    network = build_network(name, classes, pretrained=pretrained)
    if weights and not pretrained:
        load_weights(network, weights, ignore_prefixes=("aux_classifier.",))  # reference-script checkpoints
    return TorchMaskSegmenter(network, input_size=size, foreground=fg, threshold=threshold, context=float(context),
                              batch_size=int(batch_size), device=str(device), name=f"torchvision:{name}")


def train(arch: str | None = None, *, options: dict[str, Any] | None = None, size: int | None = None,
          **kwargs: Any) -> dict[str, Any]:
    """Train ``torchvision:ARCH`` with two classes (background, object) on image/mask pairs:
    :func:`verikit.segment.training.fit_segmenter` (BCE + Dice on the object's softmax logit,
    which for two classes is the two-class cross-entropy). No training options besides the common ones.
    """
    from verikit.plugin_api import PluginError, fit_segmenter

    name = resolve_arch(arch)
    if options:
        raise PluginError(f"torchvision segmenter training takes no options (got {', '.join(sorted(options))})")
    size = int(size or DEFAULT_SIZE)
    if size < 32:
        raise PluginError(f"torchvision segmenter input size must be at least 32, got {size}")
    return fit_segmenter(lambda: build_network(name, 2), spec=f"torchvision:{name}",
                         options={"num_classes": 2, "foreground": 1}, size=size, foreground=1, **kwargs)


create.train = train  # type: ignore[attr-defined]  # what `verikit segment train` looks for
create.example = ("torchvision:lraspp_mobilenet_v3_large", {"input_size": 64})  # type: ignore[attr-defined]
__all__ = ["ARCHITECTURES", "create", "train"]
