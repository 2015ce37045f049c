"""Small validated dataclasses that travel between verikit's parts.

They are the public vocabulary of results: nothing returns loose dicts or tuples. Each one
checks its invariants in ``__post_init__`` and converts to JSON-ready dicts with ``to_dict``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


EQUALIZE_MODES = ("none", "histogram")   # InputSpec.equalize: photometric normalisation before the network
TTA_MODES = ("none", "hflip")   # ModelConfig.tta: test-time augmentation applied in eval mode
EMBED_FROM = ("neck", "pooled")  # ModelConfig.embed_from: the layer eval-mode embeddings are read from
POOLINGS = ("avg", "gem", "max")  # ModelConfig.pooling: how a feature map becomes a vector (models.heads)
NECKS = ("linear", "conv1x1")     # ModelConfig.neck: the projection to the embedding size (models.heads)


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a model input; saved inside every model's ``config.json``.

    ``size`` is (height, width). Images are resized to exactly that size (no crop), so the
    whole face/object the user gave is seen, and then normalised with ``mean``/``std``.

    ``equalize`` is a photometric normalisation applied to every image after grey conversion and
    resizing, before any augmentation and before ``mean``/``std``: ``"none"`` (the default) or
    ``"histogram"`` (global histogram equalisation of the uint8 image, per channel for RGB
    models, as ``torchvision.transforms.v2.functional.equalize`` does). It is part of the model, so
    training and inference (enroll, verify, search, benchmark) always apply the same one.
    ``"none"`` is left out of :meth:`to_dict`, so models without it keep the config.json bytes
    (and fingerprints) of older verikit.
    """

    channels: int = 3
    size: tuple[int, int] = (112, 112)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"
    equalize: str = "none"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"InputSpec.channels must be 1 or 3, got {self.channels}")
        size = tuple(int(s) for s in self.size)
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"InputSpec.size must be (height, width) of at least 8 px, got {self.size}")
        object.__setattr__(self, "size", size)
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        # A grey model keeps one normalisation value per channel it actually sees.
        if len(mean) != self.channels:
            mean = (sum(mean) / len(mean),) * self.channels
        if len(std) != self.channels:
            std = (sum(std) / len(std),) * self.channels
        if any(s <= 0 for s in std):
            raise ValueError("InputSpec.std values must be positive")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"InputSpec.interpolation must be bilinear, bicubic or nearest, got {self.interpolation!r}")
        if self.equalize not in EQUALIZE_MODES:
            raise ValueError(f"InputSpec.equalize must be one of {', '.join(EQUALIZE_MODES)}, got {self.equalize!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"channels": self.channels, "size": list(self.size), "mean": list(self.mean),
                               "std": list(self.std), "interpolation": self.interpolation}
        if self.equalize != "none":  # absent = none: older models' config.json stays byte-identical
            out["equalize"] = self.equalize
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        return cls(channels=int(data["channels"]), size=tuple(data["size"]), mean=tuple(data["mean"]),
                   std=tuple(data["std"]), interpolation=data.get("interpolation", "bilinear"),
                   equalize=data.get("equalize", "none"))


@dataclass(frozen=True)
class Hit:
    """One ranked identity of a 1:N search. ``score`` is a similarity: higher is more alike."""

    identity: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "score": round(float(self.score), 6)}


@dataclass(frozen=True)
class SearchResult:
    """The answer to "who is this?": ranked hits and the open-set decision.

    ``identity`` is the top hit when its score reaches ``threshold``, and ``None`` ("unknown")
    otherwise. With no threshold there is no open-set decision and ``identity`` is the top hit.
    """

    probe: str
    hits: tuple[Hit, ...]
    threshold: float | None
    identity: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "identity": self.identity,
                "threshold": None if self.threshold is None else round(float(self.threshold), 6),
                "hits": [h.to_dict() for h in self.hits]}


@dataclass(frozen=True)
class Decision:
    """The answer to "is this the claimed identity?" (1:1). A match is ``score >= threshold``."""

    probe: str
    claim: str
    score: float
    threshold: float
    estimated_fmr: float | None = None
    match: bool = field(init=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.score) or not math.isfinite(self.threshold):
            raise ValueError("Decision score and threshold must be finite")
        object.__setattr__(self, "match", bool(self.score >= self.threshold))

    def to_dict(self) -> dict[str, Any]:
        out = {"probe": self.probe, "claim": self.claim, "score": round(float(self.score), 6),
               "threshold": round(float(self.threshold), 6), "match": self.match}
        if self.estimated_fmr is not None:
            out["estimated_fmr"] = self.estimated_fmr
        return out


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported so callers need not import dataclasses for it."""
    return dataclasses.replace(obj, **changes)


def _float_array(value: Any, name: str, shape_tail: tuple[int, ...]) -> Any:
    """``value`` as a read-only float32 array of shape (N, *shape_tail); ValueError otherwise."""
    import numpy as np

    arr = np.array(value, dtype=np.float32, copy=True)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        want = ", ".join(["N", *map(str, shape_tail)])
        raise ValueError(f"Detections.{name} must have shape ({want}), got {tuple(arr.shape)}")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Detections:
    """The objects a detector found in ONE image.

    ``boxes`` is (N, 4) float32 ``x1, y1, x2, y2`` in pixel coordinates of that image (x2 > x1,
    y2 > y1, inside ``[0, width] x [0, height]`` when ``image_size`` is known); ``scores`` is
    (N,) float32, higher is more confident. ``landmarks`` is optional (N, K, 2) float32 with NaN
    for a point that was not found; ``landmark_names`` names the K points (a face detector that
    finds eyes uses ``("left_eye", "right_eye")``, left/right as seen in the image).
    ``image_size`` is (width, height). Arrays are copied and made read-only.
    """

    boxes: Any
    scores: Any
    landmarks: Any = None
    landmark_names: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        import numpy as np

        boxes = _float_array(self.boxes, "boxes", (4,))
        scores = _float_array(self.scores, "scores", ())
        if len(scores) != len(boxes):
            raise ValueError(f"Detections has {len(boxes)} boxes but {len(scores)} scores")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise ValueError("Detections boxes and scores must be finite")
        if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
            raise ValueError("Detections boxes must be x1, y1, x2, y2 with x2 > x1 and y2 > y1")
        if self.image_size is not None:
            w, h = (int(v) for v in self.image_size)
            if w <= 0 or h <= 0:
                raise ValueError(f"Detections.image_size must be positive (width, height), got {self.image_size}")
            tol = 1e-3
            if (boxes[:, :2] < -tol).any() or (boxes[:, 2] > w + tol).any() or (boxes[:, 3] > h + tol).any():
                raise ValueError(f"Detections boxes must lie inside the {w}x{h} image")
            object.__setattr__(self, "image_size", (w, h))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        names = tuple(str(n) for n in self.landmark_names)
        if self.landmarks is not None:
            lm = np.array(self.landmarks, dtype=np.float32, copy=True)
            if lm.ndim != 3 or lm.shape[0] != len(boxes) or lm.shape[2] != 2:
                raise ValueError(f"Detections.landmarks must have shape (N, K, 2) with N={len(boxes)}, "
                                 f"got {tuple(lm.shape)}")
            if len(names) != lm.shape[1]:
                raise ValueError(f"Detections.landmark_names must name the {lm.shape[1]} landmark(s), got {names}")
            lm.flags.writeable = False
            object.__setattr__(self, "landmarks", lm)
        elif names:
            raise ValueError("Detections.landmark_names given without landmarks")
        object.__setattr__(self, "landmark_names", names)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def areas(self) -> Any:
        b = self.boxes
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def select(self, indices: Any) -> "Detections":
        """The detections at ``indices`` (ints or a boolean mask), in that order."""
        import numpy as np

        idx = np.asarray(indices)
        lm = None if self.landmarks is None else self.landmarks[idx]
        return Detections(self.boxes[idx], self.scores[idx], lm, self.landmark_names if lm is not None else (),
                          self.image_size)

    def landmark(self, i: int, name: str) -> tuple[float, float] | None:
        """Landmark ``name`` of detection ``i``, or None when absent or not found."""
        if self.landmarks is None or name not in self.landmark_names:
            return None
        x, y = (float(v) for v in self.landmarks[i, self.landmark_names.index(name)])
        return None if math.isnan(x) or math.isnan(y) else (x, y)

    @classmethod
    def empty(cls, image_size: tuple[int, int] | None = None) -> "Detections":
        return cls([], [], image_size=image_size)

    def to_dict(self) -> dict[str, Any]:
        faces = []
        for i in range(len(self)):
            item: dict[str, Any] = {"box": [round(float(v), 2) for v in self.boxes[i]],
                                    "score": round(float(self.scores[i]), 6)}
            for name in self.landmark_names:
                point = self.landmark(i, name)
                item[name] = None if point is None else [round(point[0], 2), round(point[1], 2)]
            faces.append(item)
        return {"image_size": None if self.image_size is None else list(self.image_size), "detections": faces}


@dataclass(frozen=True, eq=False)
class Masks:
    """Per-detection soft masks of ONE image from a segmenter: (N, H, W) float32 in [0, 1],
    aligned with that image's :class:`Detections` (mask i belongs to box i) and in image pixels."""

    masks: Any

    def __post_init__(self) -> None:
        import numpy as np

        m = np.array(self.masks, dtype=np.float32, copy=True)
        if m.ndim != 3:
            raise ValueError(f"Masks.masks must have shape (N, H, W), got {tuple(m.shape)}")
        if m.size and (not np.isfinite(m).all() or m.min() < 0 or m.max() > 1):
            raise ValueError("Masks values must be finite and in [0, 1]")
        m.flags.writeable = False
        object.__setattr__(self, "masks", m)

    def __len__(self) -> int:
        return int(self.masks.shape[0])
