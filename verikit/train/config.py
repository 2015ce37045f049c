"""Training configuration as data: read a YAML/JSON config file, layer it, validate it, write it.

The layers, lowest first: :class:`TrainConfig`'s defaults, the config saved
with an interrupted run (when resuming), the ``--config`` file, then the options given on the
command line. Every layer is a plain dict keyed by ``TrainConfig`` field names, so a resolved
``train_config.json`` is itself a valid ``--config`` file. This module owns the settings
themselves (:class:`TrainConfig` and the names each choice allows), the file format, and the
checking of keys, types and values. It imports no torch: the loop imports it, never the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional

from pydantic import BeforeValidator, Field

from ..atomic import write_atomic
from ..errors import DataError
from ..schemas import read_bytes, schema_of, validate
from ..similarity import parse_measure
from ..structures import EMBED_FROM, EQUALIZE_MODES, NECKS, POOLINGS, TTA_MODES, InputSpec
from .losses import LOSSES, MINERS

AUGMENTATIONS = ("none", "light", "strong", "affine")
MIRRORING_AUGMENTATIONS = ("light", "strong")   # these flip images at random (see train.data.augmentation)

CONFIG_FILE = "train_config.json"   # the resolved config, written next to the model
# Keys whose dict values merge key by key across layers (a CLI --backbone-option adds to the file's).
_MERGED_DICTS = ("backbone_options",)


def parse_image_size(value: Any) -> tuple[int, int]:
    """``112``, ``"112"``, ``"112x96"`` or ``[112, 96]`` -> (height, width)."""
    if isinstance(value, str):
        try:
            value = [int(v) for v in value.lower().split("x")]
        except ValueError:
            raise DataError(f"image size must be N or HxW, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = [value[0], value[0]]
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in value)):
        raise DataError(f"image size must be N or HxW with sides >= 8, got {value!r}")
    return int(value[0]), int(value[1])


def _image_size(value: Any) -> tuple[int, int]:
    try:
        return parse_image_size(value)
    except DataError as exc:
        raise ValueError(str(exc).replace("image size ", "", 1)) from None


def _measure(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parse_measure(value)
        except DataError as exc:
            raise ValueError(str(exc)) from None
    return value


# Field types: the TrainConfig annotations below ARE the schema a config file is validated by.
Count = Annotated[int, Field(ge=0)]
AtLeast1 = Annotated[int, Field(ge=1)]
AtLeast2 = Annotated[int, Field(ge=2)]
NonNegative = Annotated[float, Field(ge=0.0)]


@dataclass
class TrainConfig:
    """Every training choice; saved in the model's config.json under ``training``.

    The annotations are also the declared schema of a ``--config`` file (:data:`TRAIN_CONFIG_SCHEMA`,
    built from them; see :mod:`verikit.schemas`), and :func:`check_config` runs the same schema on a
    config built in Python.
    """

    backbone: Annotated[str, Field(min_length=1)] = "timm:resnet18"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    embedding_size: Annotated[int, Field(ge=2, le=1 << 16)] = 128
    pooling: Literal[POOLINGS] = "avg"  # type: ignore[valid-type]
    neck: Literal[NECKS] = "linear"  # type: ignore[valid-type]
    image_size: Annotated[tuple[int, int], BeforeValidator(_image_size)] = (112, 112)
    channels: Literal[1, 3] = 3
    epochs: AtLeast1 = 20
    batch_size: AtLeast2 = 32
    m_per_class: AtLeast2 = 4
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    weight_decay: NonNegative = 5e-4
    warmup_epochs: Count = 1
    loss: Literal[LOSSES] = "triplet"  # type: ignore[valid-type]
    margin: Optional[float] = None   # None: the loss's own default (0.2 for triplet, 0.35 for cosface, ...)
    miner: Literal[MINERS] = "batch_hard"  # type: ignore[valid-type]  # ignored by proxy losses
    # measure spec (verikit.similarity); recorded as the model's similarity
    distance: Annotated[str, BeforeValidator(_measure)] = "cosine"
    keep: Literal["last", "best"] = "last"   # "last" epoch, or the "best" validation EER (noisy on few identities)
    augment: Literal[AUGMENTATIONS] = "light"  # type: ignore[valid-type]
    # photometric normalisation recorded in the model's InputSpec: none, histogram
    equalize: Literal[EQUALIZE_MODES] = "none"  # type: ignore[valid-type]
    embed_from: Literal[EMBED_FROM] = "neck"  # type: ignore[valid-type]  # the layer templates come from
    # test-time augmentation recorded in the model: none, hflip, or auto (hflip when the augmentation
    # mirrors images, i.e. light/strong; else none)
    tta: Literal[("auto", *TTA_MODES)] = "auto"  # type: ignore[valid-type]
    val_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    seed: Annotated[int, Field(ge=0, lt=1 << 32)] = 0
    device: Annotated[str, Field(min_length=1)] = "auto"
    workers: Count = 0
    optimizer: Literal["adamw", "sgd"] = "adamw"   # "sgd": Nesterov momentum
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9            # SGD only
    clip_grad_norm: NonNegative = 5.0      # max global gradient norm of the model; 0 turns clipping off
    amp: bool = True                 # float16 autocast + grad scaling, on CUDA only (a no-op on CPU)
    patience: Count = 0              # stop after this many epochs without a better validation EER; 0: never
    freeze_epochs: Count = 0         # train only the head (backbone frozen) for the first N epochs
    gradual_unfreeze: Count = 0      # after the freeze: one more backbone stage every N epochs, top first; 0: all
    backbone_lr_scale: NonNegative = 1.0   # the backbone's learning rate relative to --lr (0.1: gentle fine-tuning)
    freeze_batchnorm: bool = False   # batch-norm layers use and keep their running statistics

    def input_spec(self) -> InputSpec:
        return InputSpec(channels=self.channels, size=tuple(self.image_size), equalize=self.equalize)

    def model_tta(self) -> str:
        """The model's test-time augmentation: mirrors only for a network trained on mirrored images."""
        if self.tta != "auto":
            return self.tta
        return "hflip" if self.augment in MIRRORING_AUGMENTATIONS else "none"


TRAIN_CONFIG_SCHEMA = schema_of(TrainConfig)

# TrainConfig fields that take one of a few names (the same names its schema allows).
CHOICES: dict[str, tuple[str, ...]] = {"keep": ("last", "best"), "optimizer": ("adamw", "sgd"),
                                       "augment": AUGMENTATIONS, "equalize": EQUALIZE_MODES,
                                       "tta": ("auto", *TTA_MODES), "embed_from": EMBED_FROM}


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings the loop cannot honour, before any image is loaded: a config built in
    Python is checked by the same schema as a config file."""
    config_from_dict(config_to_dict(cfg), what="training settings")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A ``.yaml``/``.yml``/``.json`` file holding one mapping of TrainConfig keys."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"config file not found: '{p}'")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise DataError(f"config file '{p}' must end in .yaml, .yml or .json")
    try:
        text = read_bytes(p, error=DataError, what="config file").decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"config file '{p}' is malformed: not UTF-8 text (byte {exc.start})") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        else:
            import yaml  # only a YAML config needs it
            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - json and yaml raise different parse errors; both mean "malformed"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"config file '{p}' is malformed: {first}") from exc
    if data is None:  # an empty YAML file
        return {}
    if not isinstance(data, dict):
        raise DataError(f"config file '{p}' must hold a mapping of settings, not {type(data).__name__}")
    return data


def merge_layers(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; ``backbone_options`` merges key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in _MERGED_DICTS and isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


def config_from_dict(data: Mapping[str, Any], source: str = "", what: str = "training config",
                     label: Callable[[str], str] | None = None) -> TrainConfig:
    """A validated TrainConfig from a dict (TrainConfig's annotations are the schema); an unknown
    key or a wrongly typed value is one DataError line naming ``source`` and the key (or, for
    command-line options, the option as ``label`` spells it)."""
    if not isinstance(data, Mapping):
        raise DataError(f"{what} {f'{source!r} ' if source else ''}must hold a mapping of settings, "
                        f"not {type(data).__name__}")
    doc = validate(TRAIN_CONFIG_SCHEMA, dict(data), source, error=DataError, what=what, label=label)
    return TrainConfig(**dict(doc))


def config_to_dict(cfg) -> dict[str, Any]:
    """JSON-ready dict of a TrainConfig (tuples become lists)."""
    data = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def write_config(cfg, path: str | Path) -> Path:
    """Write the resolved config atomically (a crash never leaves half a file to resume from)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(p, json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")
