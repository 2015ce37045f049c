"""A verikit model directory that scores with dlib's pretrained descriptor, no training needed.

The model's templates are the backbone's 128-d descriptor itself (``embed_from: pooled``),
mirror-averaged by default (``tta: hflip``); the embedding head verikit adds is saved but unused.
It reads 150x150 RGB chips, which ``--detector faceapi --crop-margin 0.25`` cuts exactly as
dlib's ``get_face_chip_details(size=150, padding=0.25)`` does.
"""

from __future__ import annotations

from pathlib import Path


def write_model(out: str | Path, *, weights: str | None = None, mirror: bool = True) -> str:
    """Build and save the model; returns its fingerprint."""
    from verikit.plugin_api import Embedder

    from . import descriptor_input_spec

    model = Embedder.build("faceapi:dlib_resnet", embedding_size=128, input_spec=descriptor_input_spec(),
                           backbone_options={"weights": weights} if weights else {"pretrained": True},
                           similarity="cosine", tta="hflip" if mirror else "none", embed_from="pooled")
    model.config.training = {"note": "pretrained dlib_face_recognition_resnet_model_v1 (face-api.js weights); "
                                     "not trained by verikit"}
    return model.eval().save(out)
