"""The declared schemas of a model directory's JSON files: ``config.json`` and ``pair_head.json``.

Checked on load by :mod:`verikit.schemas`' rules (strict types, no unknown keys, finite numbers,
one-line errors naming the file and the field). Limits are sanity bounds, not tuning: an
embedding or image size beyond them would only allocate gigabytes before failing.

A saved model carries its own weights, so its ``backbone_options`` may not ask for others:
``pretrained`` (a model hub download) and ``weights`` (a local checkpoint) are refused on load;
:meth:`verikit.models.embedder.Embedder.build` drops them before saving. Loading a model thus
never reaches the network.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, field_validator

from ..schemas import FileSchema, Sha256
from ..similarity import parse_measure
from ..structures import EMBED_FROM, EQUALIZE_MODES, NECKS, POOLINGS, TTA_MODES

FORMAT_VERSION = 1
MAX_EMBEDDING = 1 << 16
MAX_SIDE = 4096
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
# Options that fetch weights from elsewhere: never needed by (nor allowed in) a saved model.
WEIGHT_SOURCES = ("pretrained", "weights")

Side = Annotated[int, Field(ge=8, le=MAX_SIDE)]
Finite = Annotated[float, Field(ge=-1e6, le=1e6)]
Positive = Annotated[float, Field(gt=0.0, le=1e6)]


class InputSpecSchema(FileSchema):
    """``config.json`` -> ``input_spec``: how an image becomes the network's input."""

    channels: Literal[1, 3]
    size: Annotated[list[Side], Field(min_length=2, max_length=2)]
    mean: Annotated[list[Finite], Field(min_length=1, max_length=3)]
    std: Annotated[list[Positive], Field(min_length=1, max_length=3)]
    interpolation: Literal[INTERPOLATIONS] = "bilinear"  # type: ignore[valid-type]
    equalize: Literal[EQUALIZE_MODES] = "none"  # type: ignore[valid-type]

    @field_validator("mean", "std")
    @classmethod
    def _per_channel(cls, value: list[float]) -> list[float]:
        if len(value) == 2:
            raise ValueError("must hold 1 value or 3 (one per RGB channel), not 2")
        return value


class ModelConfigFile(FileSchema):
    """A model's ``config.json``: everything that rebuilds its architecture (weights live beside it)."""

    format_version: Literal[FORMAT_VERSION]
    backbone: Annotated[str, Field(min_length=1, max_length=200)]
    # JSON options for the backbone factory (an ensemble's hold its members' configs, training
    # summaries included, so NaN is not refused here: the factory checks its own options).
    backbone_options: dict[str, Any] = {}
    embedding_size: Annotated[int, Field(ge=2, le=MAX_EMBEDDING)]
    pooling: Literal[POOLINGS] = "avg"  # type: ignore[valid-type]
    input_spec: InputSpecSchema
    similarity: str = "cosine"
    training: dict[str, Any] = {}  # the training summary: informational, never read back into settings
    neck: Literal[NECKS] = "linear"  # type: ignore[valid-type]
    tta: Literal[TTA_MODES] = "none"  # type: ignore[valid-type]
    embed_from: Literal[EMBED_FROM] = "neck"  # type: ignore[valid-type]

    @field_validator("backbone")
    @classmethod
    def _spec(cls, value: str) -> str:
        name = value.strip().partition(":")[0]
        if not name or any(not (c.isalnum() or c in "_-.") for c in name):
            raise ValueError("must be a backbone spec 'name[:architecture]', e.g. 'timm:resnet18'")
        return value

    @field_validator("backbone_options")
    @classmethod
    def _no_weight_source(cls, value: dict[str, Any]) -> dict[str, Any]:
        asked = [k for k in WEIGHT_SOURCES if k in value]
        if asked:
            raise ValueError(f"must not hold {' or '.join(map(repr, asked))}: a saved model loads its own "
                             "model.safetensors and never fetches weights; remove the key")
        return value

    @field_validator("similarity")
    @classmethod
    def _measure(cls, value: str) -> str:
        try:
            parse_measure(value)
        except Exception as exc:  # DataError naming the allowed measures
            raise ValueError(str(exc)) from None
        return value


class PairHeadFile(FileSchema):
    """``pair_head.json``: the learned pair head's sizes, what it was trained on, its threshold."""

    format_version: Literal[FORMAT_VERSION]
    embedding_size: Annotated[int, Field(ge=2, le=MAX_EMBEDDING)]
    hidden: Annotated[int, Field(ge=1, le=MAX_EMBEDDING)]
    model_fingerprint: Annotated[str, Field(min_length=1, max_length=200)]
    weights_sha256: Sha256
    threshold: Optional[Annotated[float, Field(ge=0.0, le=1.0)]] = None  # sigmoid scores lie in (0, 1)
    info: dict[str, Any] = {}  # the training summary


def input_spec_kwargs(spec: InputSpecSchema) -> dict[str, Any]:
    """Validated ``input_spec`` as :class:`~verikit.structures.InputSpec` keyword arguments."""
    d = spec.model_dump()
    d["size"], d["mean"], d["std"] = tuple(d["size"]), tuple(d["mean"]), tuple(d["std"])
    return d
