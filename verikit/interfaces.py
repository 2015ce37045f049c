"""The Protocols plugins implement: Detector, Segmenter, Backbone, IndexBackend, and the
optional training hooks TrainableDetector and TrainableSegmenter.

This module owns the plugin contract, nothing else: each kind is batch-first with one required
method (or, for the stateful index, the few it cannot do without). A factory registered in the
matching entry-point group (``verikit.detectors``, ``verikit.segmenters``, ``verikit.backbones``,
``verikit.index_backends``) takes the spec argument (``haar:frontalface_default`` passes
``"frontalface_default"``) plus keyword-only, JSON-serialisable options, and returns an object
that satisfies the Protocol here. :mod:`verikit.testing` checks the behaviour the types cannot say.

A factory may also carry attributes that tell verikit more about it (all optional):

* ``train``: the factory is trainable (:class:`TrainableDetector`, :class:`TrainableSegmenter`);
* ``example``: ``(spec, options)`` of a small build, used by the contract tests and as the
  default of commands that need a component of this kind (``verikit detect train``);
* ``examples``: a list of such builds, each checked by the contract tests, for a factory whose
  argument picks different networks (``faceapi:ssd``, ``faceapi:tiny_yolo``); ``example`` stays
  the one a command uses;
* ``preference``: an int; among installed components the highest is the default where a command
  needs one and the user named none (``verikit detect``); ties go to the name that sorts first;
* ``unavailable()``: ``None`` when the component can be built here, else the one-line reason it
  cannot (weights not fetched, say); ``verikit plugins`` shows it and contract tests skip.

Plugins import verikit only through :mod:`verikit.plugin_api`.

Importing this module imports nothing heavy: no torch, no numpy, no PIL at runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # annotations only: keep plugin discovery and `verikit --help` light
    import numpy as np
    from PIL import Image

    from .structures import Detections, InputSpec, Masks

__all__ = ["Backbone", "Detector", "IndexBackend", "Segmenter", "TrainableDetector", "TrainableSegmenter"]


@runtime_checkable
class Detector(Protocol):
    """Finds objects (faces) in images.

    ``detect`` takes a batch of RGB PIL images and returns one :class:`~verikit.structures.Detections`
    per image, in the same order, with boxes in that image's pixel coordinates (x1, y1, x2, y2)
    and ``image_size`` set. An image with nothing in it gets an empty ``Detections``, never an
    exception. An empty batch returns ``[]``.
    """

    def detect(self, images: Sequence["Image.Image"]) -> list["Detections"]: ...


@runtime_checkable
class Segmenter(Protocol):
    """Separates the object from its background.

    ``segment`` takes a batch of RGB PIL images and their detections and returns one
    :class:`~verikit.structures.Masks` per image: mask ``i`` belongs to box ``i`` and has the
    image's height and width, values in [0, 1] (1 = object).
    """

    def segment(self, images: Sequence["Image.Image"], detections: Sequence["Detections"]) -> list["Masks"]: ...


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor: a ``torch.nn.Module`` mapping (B, C, H, W) images to a (B, F, h, w) map.

    ``num_features`` is F. ``input_spec`` (an :class:`~verikit.structures.InputSpec`) is optional:
    a backbone that knows how its inputs must be prepared exposes it; otherwise the model's
    ``config.json`` InputSpec applies. The factory accepts ``in_chans`` (1 or 3).
    """

    num_features: int

    def forward(self, images: Any) -> Any: ...


@runtime_checkable
class IndexBackend(Protocol):
    """Inner-product search over (int64 id, float32 unit vector) pairs; derived data of a gallery.

    The factory takes ``dim`` (keyword). Scores are similarities (higher is more alike);
    ``search`` returns ``(scores, ids)`` each of shape (Q, k) with id -1 for a missing neighbour.
    ``remove`` returns False when the index type cannot remove (the gallery then rebuilds it).
    ``save`` writes atomically; ``load`` replaces the contents with a saved index. The gallery
    also reads ``ntotal`` (vectors held) and ``needs_training``, and calls ``train(vectors)``
    before the first ``add`` when it is True (an exact index is never in need of training).
    """

    dim: int

    @property
    def ntotal(self) -> int: ...

    @property
    def needs_training(self) -> bool: ...

    def train(self, vectors: "np.ndarray") -> None: ...

    def add(self, ids: "np.ndarray", vectors: "np.ndarray") -> None: ...

    def search(self, queries: "np.ndarray", k: int) -> tuple["np.ndarray", "np.ndarray"]: ...

    def remove(self, ids: "np.ndarray") -> bool: ...

    def save(self, path: str | Path) -> None: ...

    def load(self, path: str | Path) -> None: ...


@runtime_checkable
class TrainableDetector(Protocol):
    """A detector factory that ``verikit detect train`` can fine-tune: it carries ``train``.

    ``train(argument, *, items, out, epochs, weights, batch_size, lr, device, seed, progress)``
    fits the detector on ``items`` (:class:`verikit.evaluate.detection.annotations.AnnotatedImage`),
    writes ``out/detector.safetensors``, calls ``progress(1)`` per optimiser step and returns a
    JSON-ready summary (``images``, ``boxes``, ``loss_per_epoch``).
    """

    def __call__(self, argument: str | None = None, **options: Any) -> Detector: ...

    def train(self, argument: str | None, **kwargs: Any) -> dict[str, Any]: ...


@runtime_checkable
class TrainableSegmenter(Protocol):
    """A segmenter factory that ``verikit segment train`` can fit: it carries ``train``.

    ``train(argument, *, pairs, out, options, epochs, batch_size, lr, size, val_fraction, seed,
    device, weights, progress)`` writes ``out/segmenter.safetensors`` (and its sidecar) and
    returns a JSON-ready summary (see :func:`verikit.segment.training.fit_segmenter`).
    """

    def __call__(self, argument: str | None = None, **options: Any) -> Segmenter: ...

    def train(self, argument: str | None, **kwargs: Any) -> dict[str, Any]: ...


def input_spec_of(backbone: Any) -> "InputSpec | None":
    """The backbone's own InputSpec when it declares one, else None."""
    return getattr(backbone, "input_spec", None)
