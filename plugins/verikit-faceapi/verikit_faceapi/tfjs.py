"""Reading TensorFlow.js weights: a ``weights_manifest.json`` and its binary shards.

face-api.js ships its networks in this format, some tensors 8-bit quantised (``q * scale + min``).
This module only reads them into float32 tensors in TensorFlow's layouts (HWIO filters,
``(in, out)`` dense weights); :mod:`verikit_faceapi.nets` maps them onto PyTorch modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from verikit.plugin_api import ModelError


def read_tfjs_weights(manifest: Path) -> dict[str, torch.Tensor]:
    """Every tensor a tfjs weights manifest names, dequantised, in TensorFlow layout."""
    try:
        groups = json.loads(manifest.read_text())
        out: dict[str, torch.Tensor] = {}
        for group in groups:
            blob = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
            offset = 0
            for w in group["weights"]:
                n = int(np.prod(w["shape"]))
                q = w.get("quantization")
                dtype = np.dtype(q["dtype"] if q else w["dtype"])
                values = np.frombuffer(blob, dtype, n, offset).astype(np.float32)
                offset += n * dtype.itemsize
                if q:
                    values = values * np.float32(q["scale"]) + np.float32(q["min"])
                out[w["name"]] = torch.from_numpy(values.reshape(w["shape"]).copy())
            if offset != len(blob):
                raise ModelError(f"{manifest}: the shards hold {len(blob)} bytes, the manifest describes {offset}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read tfjs weights '{manifest}': {exc}") from exc
    return out
