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
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..atomic import write_atomic
from ..errors import DataError
from ..structures import EMBED_FROM, EQUALIZE_MODES, TTA_MODES, InputSpec

AUGMENTATIONS = ("none", "light", "strong", "affine")
MIRRORING_AUGMENTATIONS = ("light", "strong")   # these flip images at random (see train.data.augmentation)

CONFIG_FILE = "train_config.json"   # the resolved config, written next to the model
# Keys whose dict values merge key by key across layers (a CLI --backbone-option adds to the file's).
_MERGED_DICTS = ("backbone_options",)


@dataclass
class TrainConfig:
    """Every training choice; saved in the model's config.json under ``training``."""

    backbone: str = "timm:resnet18"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = 128
    pooling: str = "avg"
    neck: str = "linear"
    image_size: tuple[int, int] = (112, 112)
    channels: int = 3
    epochs: int = 20
    batch_size: int = 32
    m_per_class: int = 4
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 1
    loss: str = "triplet"
    margin: float | None = None      # None: the loss's own default (0.2 for triplet, 0.35 for cosface, ...)
    miner: str = "batch_hard"        # ignored by proxy losses (normalized_softmax, cosface, arcface)
    distance: str = "cosine"         # measure spec (verikit.similarity); recorded as the model's similarity
    keep: str = "last"               # "last" epoch, or the "best" validation EER (noisy on few identities)
    augment: str = "light"
    equalize: str = "none"           # photometric normalisation recorded in the model's InputSpec: none, histogram
    embed_from: str = "neck"         # the layer the saved model's templates come from: neck or pooled
    tta: str = "auto"                # test-time augmentation recorded in the model: none, hflip, or auto (hflip
                                     # when the augmentation mirrors images, i.e. light/strong; else none)
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    optimizer: str = "adamw"         # "adamw" or "sgd" (Nesterov momentum)
    momentum: float = 0.9            # SGD only
    clip_grad_norm: float = 5.0      # max global gradient norm of the model; 0 turns clipping off
    amp: bool = True                 # float16 autocast + grad scaling, on CUDA only (a no-op on CPU)
    patience: int = 0                # stop after this many epochs without a better validation EER; 0: never
    freeze_epochs: int = 0           # train only the head (backbone frozen) for the first N epochs
    gradual_unfreeze: int = 0        # after the freeze: one more backbone stage every N epochs, top first; 0: all
    backbone_lr_scale: float = 1.0   # the backbone's learning rate relative to --lr (0.1: gentle fine-tuning)
    freeze_batchnorm: bool = False   # batch-norm layers use and keep their running statistics

    def input_spec(self) -> InputSpec:
        return InputSpec(channels=self.channels, size=tuple(self.image_size), equalize=self.equalize)

    def model_tta(self) -> str:
        """The model's test-time augmentation: mirrors only for a network trained on mirrored images."""
        if self.tta != "auto":
            return self.tta
        return "hflip" if self.augment in MIRRORING_AUGMENTATIONS else "none"


# TrainConfig fields that take one of a few names; config files are checked against the same table.
CHOICES: dict[str, tuple[str, ...]] = {"keep": ("last", "best"), "optimizer": ("adamw", "sgd"),
                                       "augment": AUGMENTATIONS, "equalize": EQUALIZE_MODES,
                                       "tta": ("auto", *TTA_MODES), "embed_from": EMBED_FROM}


def check_config(cfg: TrainConfig) -> None:
    """Refuse settings the loop cannot honour, before any image is loaded."""
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise DataError(f"{key} must be one of {', '.join(allowed)}, got {getattr(cfg, key)!r}")
    for key in ("patience", "freeze_epochs", "gradual_unfreeze", "warmup_epochs"):
        if getattr(cfg, key) < 0:
            raise DataError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.backbone_lr_scale < 0 or cfg.clip_grad_norm < 0:
        raise DataError("backbone_lr_scale and clip_grad_norm must be >= 0")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A ``.yaml``/``.yml``/``.json`` file holding one mapping of TrainConfig keys."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"config file not found: '{p}'")
    suffix = p.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise DataError(f"config file '{p}' must end in .yaml, .yml or .json")
    text = p.read_text(encoding="utf-8")
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


def config_from_dict(data: Mapping[str, Any], source: str = "config"):
    """A validated TrainConfig from a dict; an unknown key or a wrongly typed value is a one-line DataError."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"unknown key {key!r} in {source}{hint}")
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        values[key] = _check_type(key, value, default, source)
    return TrainConfig(**values)


def config_to_dict(cfg) -> dict[str, Any]:
    """JSON-ready dict of a TrainConfig (tuples become lists)."""
    data = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def write_config(cfg, path: str | Path) -> Path:
    """Write the resolved config atomically (a crash never leaves half a file to resume from)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(p, json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")


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


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    """Coerce ``value`` to the kind of ``default`` (the field's type), or raise naming the key."""
    if key == "image_size":
        try:
            return parse_image_size(value)
        except DataError as exc:
            raise DataError(f"key 'image_size' in {source}: {exc}") from None
    if key in CHOICES:
        if value not in CHOICES[key]:
            raise DataError(f"key '{key}' in {source} must be one of {', '.join(CHOICES[key])}, got {value!r}")
        return value
    if value is None and default is None:  # optional settings (margin: None = the loss's own)
        return None
    kind = type(default)
    ok = False
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float or default is None:  # None defaults are optional numbers (e.g. margin)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif kind is dict:
        ok = isinstance(value, dict)
    else:
        ok = isinstance(value, kind)
    if not ok:
        want = "a number" if kind is float or default is None else kind.__name__
        raise DataError(f"key {key!r} in {source} must be {want}, got {value!r}")
    return value
