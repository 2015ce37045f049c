"""verikit: metric-learning verification toolkit.

The public Python API, imported lazily so that ``import verikit`` (and ``verikit --help``) stays
light; torch and faiss load on first use of a name that needs them::

    import verikit
    model = verikit.Embedder.load("runs/orl")
    with verikit.open_gallery(model, "people", create=True) as gallery:
        verikit.enroll(model, gallery, {"alice": ["a1.jpg", "a2.jpg"]})
        decision = verikit.verify(model, gallery, "probe.jpg", claim="alice", threshold=0.5)
        results, failures = verikit.search(model, gallery, ["probe.jpg"], top_k=3)

    # or: model, calibration and gallery loaded once and checked together (what the CLI and server use)
    with verikit.Service.open("people") as service:
        decision = service.verify("probe.jpg", "alice")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (CalibrationError, DataError, FingerprintMismatchError, GalleryError, IdentityNotFoundError,
                     ImageError, ModelError, PluginError, VerikitError, VerikitWarning)
from .structures import Decision, Hit, InputSpec, SearchResult

__version__ = "0.1.0"

_LAZY = {
    "Embedder": "verikit.models.embedder",
    "ModelConfig": "verikit.models.embedder",
    "embed_files": "verikit.models.inference",
    "embed_images": "verikit.models.inference",
    "Gallery": "verikit.index.gallery",
    "IdentityInfo": "verikit.index.gallery",
    "enroll": "verikit.service.api",
    "verify": "verikit.service.api",
    "search": "verikit.service.api",
    "Service": "verikit.service.app",
    "EnrollResult": "verikit.service.app",
    "PipelineRequest": "verikit.service.pipelines",
    "open_gallery": "verikit.pipeline.operations",
    "EnrollReport": "verikit.pipeline.operations",
    "PipelineSettings": "verikit.pipeline.settings",
    "FacePolicy": "verikit.pipeline.settings",
    "Calibration": "verikit.calibrate.threshold",
    "calibrate_embeddings": "verikit.pipeline.calibration",
    "TrainConfig": "verikit.train.config",
    "train": "verikit.train.loop",
    "load_image": "verikit.io",
    "scan_identity_folders": "verikit.io",
    "to_image": "verikit.image_input",
}
_RENAMED = {"open_gallery": "open_gallery_for"}

__all__ = ["__version__", "CalibrationError", "DataError", "Decision", "FingerprintMismatchError", "GalleryError",
           "Hit", "IdentityNotFoundError", "ImageError", "InputSpec", "ModelError", "PluginError", "SearchResult",
           "VerikitError", "VerikitWarning", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'verikit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
