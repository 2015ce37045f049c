"""Small validated dataclasses that travel between verikit's parts.

They are the public vocabulary of results: nothing returns loose dicts or tuples. Each one
checks its invariants in ``__post_init__`` and converts to JSON-ready dicts with ``to_dict``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a model input; saved inside every model's ``config.json``.

    ``size`` is (height, width). Images are resized to exactly that size (no crop), so the
    whole face/object the user gave is seen, and then normalised with ``mean``/``std``.
    """

    channels: int = 3
    size: tuple[int, int] = (112, 112)
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    interpolation: str = "bilinear"

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

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": list(self.size), "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InputSpec":
        return cls(channels=int(data["channels"]), size=tuple(data["size"]), mean=tuple(data["mean"]),
                   std=tuple(data["std"]), interpolation=data.get("interpolation", "bilinear"))


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
