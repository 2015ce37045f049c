"""verikit-torchvision: torchvision's object detectors as a verikit detector plugin.

This package owns the ``torchvision`` entry in ``verikit.detectors``. Spec
``torchvision[:ARCH]`` names one of :data:`ARCHITECTURES` (Faster R-CNN, SSD / SSDlite, RetinaNet,
FCOS). :func:`create` validates its options and imports torch only when called, so discovering
the plugin costs nothing. The factory also carries ``create.train`` (:func:`train`), which is how
``verikit detect train`` fine-tunes a detector on a box dataset. The distribution's segmenters
(FCN, DeepLabV3, LR-ASPP; entry ``torchvision`` in ``verikit.segmenters``) live in
:mod:`verikit_torchvision.segmentation`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

ARCHITECTURES = (
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_resnet50_fpn",
    "ssdlite320_mobilenet_v3_large",
    "ssd300_vgg16",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
)
DEFAULT_ARCH = "fasterrcnn_mobilenet_v3_large_fpn"
COCO_CLASSES = 91   # torchvision's COCO label space; class 1 is "person"
SIDECAR = "detector.json"


def resolve_arch(arch: str | None) -> str:
    import difflib

    from verikit.plugin_api import PluginError

    name = arch or DEFAULT_ARCH
    if name not in ARCHITECTURES:
        close = difflib.get_close_matches(name, ARCHITECTURES, n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PluginError(f"unknown torchvision detector {name!r}{hint} (available: {', '.join(ARCHITECTURES)})")
    return name


def read_sidecar(weights: str | None) -> dict[str, Any]:
    """The ``detector.json`` that ``verikit detect train`` writes next to its weights, if any,
    validated by its declared schema (one-line PluginError naming the file and the field)."""
    from typing import Annotated, Literal

    from pydantic import Field

    from verikit.plugin_api import FileSchema, PluginError, read_json

    if not weights or weights == "default":
        return {}
    path = Path(weights).with_name(SIDECAR)
    if not path.is_file():
        return {}

    class DetectorSidecar(FileSchema):
        format: Literal["verikit-torchvision/1"]
        arch: Literal[ARCHITECTURES]  # type: ignore[valid-type]
        num_classes: Annotated[int, Field(ge=2, le=100_000)]
        classes: list[str] = []
        weights: str = ""
        training: dict[str, Any] = {}  # summary: informational

    return read_json(DetectorSidecar, path, error=PluginError, what="detector description").model_dump()


def create(arch: str | None = None, *, weights: str | None = None, num_classes: int | None = None,
           label: int = 1, score_threshold: float = 0.5, device: str = "cpu"):
    """Entry-point factory for ``torchvision[:ARCH]``; every option is JSON-serialisable.

    ``weights``: a local state dict (``.safetensors``, or a torch file read with
    ``weights_only=True``), ``"default"`` for torchvision's own COCO weights (downloads them), or
    None for random weights. ``num_classes`` counts the background: 91 for COCO, 2 for
    background + face (default: the ``detector.json`` next to ``weights``, else 91). ``label`` is
    the class index reported as a detection; ``score_threshold`` drops weaker boxes.
    """
    from verikit.plugin_api import PluginError

    name = resolve_arch(arch)
    meta = read_sidecar(weights)
    if meta.get("arch") not in (None, name):
        raise PluginError(f"weights '{weights}' were trained for torchvision:{meta['arch']}, not torchvision:{name}")
    classes = int(num_classes if num_classes is not None else meta.get("num_classes", COCO_CLASSES))
    if classes < 2:
        raise PluginError(f"torchvision option num_classes must be >= 2 (background + objects), got {num_classes!r}")
    if weights == "default" and classes != COCO_CLASSES:
        raise PluginError(f"torchvision weights='default' are COCO weights: num_classes must be {COCO_CLASSES}")
    if not 1 <= int(label) < classes:
        raise PluginError(f"torchvision option label must be in [1, {classes - 1}], got {label!r}")
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise PluginError(f"torchvision option score_threshold must be in [0, 1], got {score_threshold!r}")
    from .model import TorchvisionDetector

    return TorchvisionDetector(name, weights=weights, num_classes=classes, label=int(label),
                               score_threshold=float(score_threshold), device=str(device))


def train(arch: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune ``torchvision[:ARCH]`` on annotated boxes; see :func:`verikit_torchvision.training.fine_tune`."""
    from .training import fine_tune

    return fine_tune(resolve_arch(arch), **kwargs)


create.train = train  # type: ignore[attr-defined]  # what `verikit detect train` looks for
create.example = ("torchvision:ssdlite320_mobilenet_v3_large", {})  # type: ignore[attr-defined]  # small build
__all__ = ["ARCHITECTURES", "create", "train"]
