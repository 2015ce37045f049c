"""Build a torchvision detector, load/save its weights, and run it as a verikit Detector."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


def build_model(arch: str, num_classes: int, *, pretrained: bool = False) -> torch.nn.Module:
    """A torchvision detection model; nothing is downloaded unless ``pretrained`` (weights='default')."""
    from torchvision.models import detection, get_model_weights

    builder = getattr(detection, arch)
    if pretrained:
        return builder(weights=get_model_weights(builder).DEFAULT)
    return builder(weights=None, weights_backbone=None, num_classes=num_classes)


def load_weights(model: torch.nn.Module, path: str | Path, *, strict: bool = True) -> list[str]:
    """Load a state dict; with ``strict=False`` keys of another shape (a new class count) are skipped.

    Returns the skipped keys.
    """
    from verikit.plugin_api import load_state_dict_file

    return load_state_dict_file(model, path, what="torchvision", hint="check the architecture and num_classes",
                                strict=strict)


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))


def to_tensor(image: Any) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [0, 1] (the models normalise inside)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class TorchvisionDetector:
    """A torchvision detection model in eval mode behind verikit's ``Detector`` protocol.

    Images are run one at a time: torchvision pads a batch to a common size, which would make an
    image's boxes depend on its batch neighbours (the contract asks batch == one by one).
    """

    def __init__(self, arch: str, *, weights: str | None, num_classes: int, label: int,
                 score_threshold: float, device: str) -> None:
        self.arch, self.weights, self.num_classes = arch, weights, num_classes
        self.label, self.score_threshold, self.device = label, score_threshold, torch.device(device)
        model = build_model(arch, num_classes, pretrained=weights == "default")
        if weights and weights != "default":
            load_weights(model, weights)
        self.model = model.to(self.device).eval()

    def __repr__(self) -> str:
        return (f"TorchvisionDetector({self.arch!r}, weights={self.weights!r}, num_classes={self.num_classes}, "
                f"label={self.label}, score_threshold={self.score_threshold})")

    @torch.inference_mode()
    def detect(self, images: Sequence[Any]) -> list[Any]:
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: Any) -> Any:
        from verikit.plugin_api import Detections

        w, h = image.size
        out = self.model([to_tensor(image).to(self.device)])[0]
        keep = (out["labels"] == self.label) & (out["scores"] >= self.score_threshold)
        boxes = out["boxes"][keep].float().cpu().numpy()
        scores = out["scores"][keep].float().cpu().numpy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        order = np.argsort(-scores[valid], kind="stable")
        return Detections(boxes[valid][order], scores[valid][order], image_size=(w, h))
