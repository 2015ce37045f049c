"""The Embedder: backbone plugin -> EmbeddingHead -> unit vector, and its on-disk format.

A saved model is a directory holding ``config.json`` (backbone spec and options, head, embedding
size, InputSpec, similarity, training summary) and ``model.safetensors``. Its fingerprint is the
SHA-256 of both files' bytes; galleries and calibration files record it and refuse other models.

Test-time augmentation (``tta``) is part of the model, not of a call: an ``hflip`` model embeds
every image as the normalised sum of its own and its mirror image's embeddings whenever it is in
eval mode, so enrollment, probes, calibration and benchmarks can never mix the two kinds of
templates, and the fingerprint changes with it.

``embed_from`` picks which layer is the template: ``neck`` (the trained embedding, the default) or
``pooled``, the backbone's pooled features below the neck (L2-normalised; their size is the
backbone's feature count). Training always applies the loss to the neck; a ``pooled`` model only
reads one layer lower at inference, where features are less specialised to the training
identities (see docs/training.md for when that helped).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..atomic import write_atomic
from ..errors import ModelError, VerikitError, one_line
from ..registry import backbones
from ..schemas import validate_json
from ..structures import EMBED_FROM, TTA_MODES, InputSpec
from .heads import EmbeddingHead
from .schema import FORMAT_VERSION, ModelConfigFile, input_spec_kwargs

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ModelConfig:
    """Everything needed to rebuild an Embedder's architecture (weights live next to it)."""

    backbone: str = "timm:resnet18"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = 128
    pooling: str = "avg"
    input_spec: InputSpec = field(default_factory=InputSpec)
    similarity: str = "cosine"
    training: dict[str, Any] = field(default_factory=dict)
    neck: str = "linear"             # "linear" or "conv1x1" (verikit.models.heads); absent = linear in old files
    tta: str = "none"                # "none" or "hflip" (mirror-averaged embeddings); absent = none in old files
    embed_from: str = "neck"         # "neck" or "pooled" (backbone features under the neck); absent = neck

    def __post_init__(self) -> None:
        if self.tta not in TTA_MODES:
            raise ModelError(f"tta must be one of {', '.join(TTA_MODES)}, got {self.tta!r}")
        if self.embed_from not in EMBED_FROM:
            raise ModelError(f"embed_from must be one of {', '.join(EMBED_FROM)}, got {self.embed_from!r}")

    def to_json_bytes(self) -> bytes:
        data = {"format_version": FORMAT_VERSION, "backbone": self.backbone,
                "backbone_options": self.backbone_options, "embedding_size": self.embedding_size,
                "pooling": self.pooling, "input_spec": self.input_spec.to_dict(),
                "similarity": self.similarity, "training": self.training}
        if self.neck != "linear":  # files of linear-neck models stay byte-identical to older verikit's
            data["neck"] = self.neck
        if self.tta != "none":
            data["tta"] = self.tta
        if self.embed_from != "neck":
            data["embed_from"] = self.embed_from
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes, source: str) -> "ModelConfig":
        """A config from ``config.json`` bytes, validated by its declared schema
        (:class:`~verikit.models.schema.ModelConfigFile`); ``source`` names the file in errors."""
        doc = validate_json(ModelConfigFile, raw, source, error=ModelError, what="model config")
        return cls(backbone=doc.backbone, backbone_options=dict(doc.backbone_options),
                   embedding_size=doc.embedding_size, pooling=doc.pooling,
                   input_spec=InputSpec(**input_spec_kwargs(doc.input_spec)), similarity=doc.similarity,
                   training=dict(doc.training), neck=doc.neck, tta=doc.tta, embed_from=doc.embed_from)


def fingerprint_of(config_bytes: bytes, weights_bytes: bytes) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(config_bytes).digest())
    h.update(hashlib.sha256(weights_bytes).digest())
    return h.hexdigest()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when present, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Embedder(nn.Module):
    """Images in, L2-normalised embeddings out. Build with :meth:`build`, or :meth:`load` a saved one."""

    channels_last_inference = True  # eager CPU inference may switch the layout (see .memory_format)

    def __init__(self, config: ModelConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = EmbeddingHead(backbone.num_features, config.embedding_size, config.pooling, neck=config.neck)
        self._fingerprint: str | None = None
        self._runner: Any = None  # a verified ONNX export's runner (verikit.models.backend), or None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def build(cls, backbone: str = "timm:resnet18", *, embedding_size: int = 128, pooling: str = "avg",
              input_spec: InputSpec | None = None, backbone_options: dict[str, Any] | None = None,
              similarity: str = "cosine", neck: str = "linear", tta: str = "none",
              embed_from: str = "neck") -> "Embedder":
        spec = input_spec or InputSpec()
        options = dict(backbone_options or {})
        net = backbones.create(backbone, in_chans=spec.channels, **options)
        # Saved models carry their own weights: never ask the hub or a local file again on load.
        options.pop("weights", None)
        options.pop("pretrained", None)
        cfg = ModelConfig(backbone=backbone, backbone_options=options, embedding_size=embedding_size,
                          pooling=pooling, input_spec=spec, similarity=similarity, neck=neck, tta=tta,
                          embed_from=embed_from)
        return cls(cfg, net)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "Embedder":
        """The architectures ``config`` describes, with fresh weights (a saved model's are loaded next)."""
        net = backbones.create(config.backbone, in_chans=config.input_spec.channels, **config.backbone_options)
        return cls(config, net)

    @property
    def input_spec(self) -> InputSpec:
        return self.config.input_spec

    @property
    def embedding_size(self) -> int:
        """The size of the templates this model produces (the gallery's dimension)."""
        if self.config.embed_from == "pooled":
            return int(self.backbone.num_features)
        return self.config.embedding_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:  # the loss always sees the neck, single views
            return self.head(self.backbone(images))
        if self.config.tta == "hflip":
            # One batch of images and mirrors (eval-mode batch norm: each row is independent);
            # training sees single views, the augmentation already mirrors them at random.
            n = images.shape[0]
            both = self._template(torch.cat([images, images.flip(-1)]))
            return F.normalize(both[:n] + both[n:], dim=1)
        return self._template(images)

    def _template(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.config.embed_from == "pooled":
            return F.normalize(self.head.pooled(features).flatten(1), dim=1)
        return self.head(features)

    # -- persistence ---------------------------------------------------------------------------
    def _serialise(self) -> tuple[bytes, bytes]:
        from safetensors.torch import save
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        return self.config.to_json_bytes(), save(state)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over config.json and model.safetensors as they are (or would be) saved."""
        if self._fingerprint is not None:
            return self._fingerprint
        value = fingerprint_of(*self._serialise())
        if not self.training:  # weights still move while training: cache only frozen ones
            self._fingerprint = value
        return value

    def save(self, directory: str | Path) -> str:
        """Write ``config.json`` + ``model.safetensors`` atomically; return the fingerprint."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        config_bytes, weights_bytes = self._serialise()
        for name, payload in ((WEIGHTS_FILE, weights_bytes), (CONFIG_FILE, config_bytes)):
            write_atomic(out / name, payload)
        self._fingerprint = fingerprint_of(config_bytes, weights_bytes)
        return self._fingerprint

    @property
    def backend(self) -> str:
        """``onnx`` while a verified ONNX export runs this model's inference, else ``eager``."""
        from .backend import active_runner
        return "eager" if active_runner(self) is None else "onnx"

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = "cpu",
             backend: str | None = None) -> "Embedder":
        """Load a saved model directory; weights are read with safetensors (never pickle).

        ``backend`` (``auto``, ``eager`` or ``onnx``; None: ``$VERIKIT_BACKEND`` or ``auto``) picks
        what runs inference: see :mod:`verikit.models.backend`. ``auto`` uses the folder's ONNX
        export when ``verikit model optimize`` recorded it faster and it matches these weights.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        d = Path(directory)
        cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
        if not d.is_dir():
            raise ModelError(f"model directory not found: '{d}' (train one with `verikit train`)")
        if not cfg_path.is_file() or not w_path.is_file():
            raise ModelError(f"'{d}' is not a verikit model: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
        config_bytes, weights_bytes = cfg_path.read_bytes(), w_path.read_bytes()
        config = ModelConfig.from_json_bytes(config_bytes, str(cfg_path))
        try:
            model = cls.from_config(config)
        except VerikitError as exc:  # e.g. an unknown backbone: say which file asked for it
            raise type(exc)(f"model config '{cfg_path}': {exc}") from exc
        except (ValueError, TypeError) as exc:  # a plugin's own check of its options
            raise ModelError(f"model config '{cfg_path}': backbone {config.backbone!r} cannot be built "
                             f"with these backbone_options: {one_line(exc)}") from exc
        try:
            state = load_safetensors(weights_bytes)
            model.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError) as exc:
            raise ModelError(f"weights in '{w_path}' do not fit {config.backbone}: "
                             f"{str(exc).splitlines()[0]}") from exc
        model._fingerprint = fingerprint_of(config_bytes, weights_bytes)
        model.eval()
        model = model.to(resolve_device(device))
        from .backend import attach
        attach(model, d, backend)
        return model

    def train(self, mode: bool = True) -> "Embedder":
        if mode:  # weights are about to change: the cached fingerprint (and any export) would lie
            self._fingerprint = None
            self._runner = None
            from .memory_format import release
            release(self)  # training runs in the contiguous layout (inference may have changed it)
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:
        # Copies and pickles (copy.deepcopy, torch.save) run eagerly: an onnxruntime session is
        # neither copyable nor picklable, and a copy's weights may be changed independently.
        state = dict(super().__getstate__())
        state["_runner"] = None
        return state

    def load_state_dict(self, *args: Any, **kwargs: Any):  # weights changed: fingerprint is stale
        self._fingerprint = None
        self._runner = None
        return super().load_state_dict(*args, **kwargs)
