"""The one module plugins import from: everything else in verikit is internal and may change.

A plugin package (detector, segmenter, backbone, index backend) uses these names and nothing
else from verikit; ``tests/test_plugin_api.py`` checks the first-party plugins keep to that.
Its own tests may also use :mod:`verikit.testing` (the contract checks) and the public
:mod:`verikit` API. Heavy names (torch-based) are imported on first use, so a plugin's
``__init__`` can import this module while ``verikit --help`` stays fast.

What it offers, by kind:

* errors: :class:`~verikit.errors.VerikitError` and its subclasses, ``one_line``;
* data types: :class:`~verikit.structures.Detections`, ``Masks``, ``InputSpec``;
* protocols: ``Detector``, ``Segmenter``, ``Backbone``, ``IndexBackend``, ``TrainableDetector``,
  ``TrainableSegmenter`` (:mod:`verikit.interfaces`);
* registries, to build other components by spec: ``backbones``, ``detectors``, ``segmenters``,
  ``index_backends``;
* files: ``write_atomic``, ``load_image``, ``load_state_dict_file``;
* faces: ``IBUG68_NAMES`` (68-point landmark names verikit aligns on), ``expand_box``;
* segmenters: ``TorchMaskSegmenter``, ``fit_segmenter``, ``load_weights``, ``save_weights``,
  ``read_sidecar``, ``write_sidecar``;
* models: ``Embedder`` (a plugin that writes a ready verikit model);
* file schemas: ``FileSchema``, ``read_json``, ``validate`` (:mod:`verikit.schemas`: a plugin
  declares the schema of a file it reads and gets verikit's one-line errors).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .atomic import write_atomic
from .errors import (CalibrationError, DataError, GalleryError, ImageError, ModelError, PluginError, VerikitError,
                     one_line)
from .interfaces import (Backbone, Detector, IndexBackend, Segmenter, TrainableDetector, TrainableSegmenter,
                         input_spec_of)
from .registry import backbones, detectors, index_backends, parse_spec, segmenters
from .structures import Detections, InputSpec, Masks

_LAZY = {
    "load_image": "verikit.io",
    "shared_pool": "verikit.threads",
    "load_state_dict_file": "verikit.models.state_dicts",
    "IBUG68_NAMES": "verikit.pipeline.alignment",
    "expand_box": "verikit.pipeline.detection",
    "TorchMaskSegmenter": "verikit.segment.base",
    "fit_segmenter": "verikit.segment.training",
    "load_weights": "verikit.segment.weights",
    "save_weights": "verikit.segment.weights",
    "read_sidecar": "verikit.segment.weights",
    "write_sidecar": "verikit.segment.weights",
    "Embedder": "verikit.models.embedder",
    "FileSchema": "verikit.schemas",
    "read_json": "verikit.schemas",
    "validate": "verikit.schemas",
}

__all__ = ["Backbone", "CalibrationError", "DataError", "Detections", "Detector", "GalleryError", "ImageError",
           "IndexBackend", "InputSpec", "Masks", "ModelError", "PluginError", "Segmenter", "TrainableDetector",
           "TrainableSegmenter", "VerikitError", "backbones", "detectors", "index_backends", "input_spec_of",
           "one_line", "parse_spec", "segmenters", "write_atomic", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'verikit.plugin_api' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
