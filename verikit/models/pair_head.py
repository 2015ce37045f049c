"""The learned pair head: a small MLP on two embeddings that says "same identity?" as a logit,
and its on-disk format next to the model it was trained on.

Features are ``[|a - b|, a * b]``: symmetric in a and b (so score(a, b) == score(b, a)) and
element-wise, so the MLP can weigh dimensions that the cosine treats alike. The public score is
``sigmoid(logit)`` in (0, 1): still a similarity, a match is ``score >= threshold``.

Saved as ``MODEL/pair_head.safetensors`` (weights) + ``MODEL/pair_head.json`` (sizes, the model
fingerprint it was trained on, the SHA-256 of the weights, training summary, and the threshold
calibrated on held-out identities). Loading for another model is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_atomic
from ..errors import DataError, FingerprintMismatchError, ModelError
from ..schemas import read_json
from .schema import FORMAT_VERSION, PairHeadFile

PAIR_HEAD_WEIGHTS = "pair_head.safetensors"
PAIR_HEAD_CONFIG = "pair_head.json"


class PairHead(nn.Module):
    """[|a-b|, a*b] -> Linear -> ReLU -> Linear -> one logit per pair."""

    def __init__(self, embedding_size: int, hidden: int = 64) -> None:
        super().__init__()
        self.embedding_size, self.hidden = int(embedding_size), int(hidden)
        self.mlp = nn.Sequential(nn.Linear(2 * self.embedding_size, self.hidden), nn.ReLU(),
                                 nn.Linear(self.hidden, 1))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([(a - b).abs(), a * b], dim=1)).squeeze(1)

    @torch.no_grad()
    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """sigmoid(logit) of row i of ``a`` with row i of ``b`` (numpy in, numpy out)."""
        for side in (np.atleast_2d(a), np.atleast_2d(b)):
            if side.shape[-1] != self.embedding_size:
                raise DataError(f"this pair head compares embeddings of size {self.embedding_size}, "
                                f"got size {side.shape[-1]}: it was trained on another model's embeddings")
        was = self.training
        self.eval()
        ta = torch.as_tensor(np.atleast_2d(a), dtype=torch.float32)
        tb = torch.as_tensor(np.atleast_2d(b), dtype=torch.float32)
        out = torch.sigmoid(self(ta, tb)).numpy().astype(np.float64)
        self.train(was)
        return out

    def best_score(self, probe: np.ndarray, templates: np.ndarray) -> float:
        """1:1 score of a probe against an identity: the best of its templates (as the gallery does)."""
        t = np.atleast_2d(templates)
        return float(self.scores(np.repeat(np.atleast_2d(probe), len(t), axis=0), t).max())


@dataclass
class SavedPairHead:
    """A pair head with what it was trained on and its calibrated threshold (None if not calibrated)."""

    head: PairHead
    model_fingerprint: str
    threshold: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, model_dir: str | Path) -> Path:
        from safetensors.torch import save

        d = Path(model_dir)
        weights = save({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()})
        config = {"format_version": FORMAT_VERSION, "embedding_size": self.head.embedding_size,
                  "hidden": self.head.hidden, "model_fingerprint": self.model_fingerprint,
                  "weights_sha256": hashlib.sha256(weights).hexdigest(), "threshold": self.threshold,
                  "info": self.info}
        # Weights first, config last: a config only ever describes weights already in place.
        for name, payload in ((PAIR_HEAD_WEIGHTS, weights),
                              (PAIR_HEAD_CONFIG, (json.dumps(config, indent=2) + "\n").encode())):
            write_atomic(d / name, payload)
        return d / PAIR_HEAD_CONFIG

    @classmethod
    def load(cls, model_dir: str | Path, fingerprint: str | None = None) -> "SavedPairHead":
        from safetensors import SafetensorError
        from safetensors.torch import load

        d = Path(model_dir)
        cfg_path, w_path = d / PAIR_HEAD_CONFIG, d / PAIR_HEAD_WEIGHTS
        if not cfg_path.is_file() or not w_path.is_file():
            raise ModelError(f"no pair head in '{d}' (train one with `verikit pair-head train`)")
        doc = read_json(PairHeadFile, cfg_path, error=ModelError, what="pair head")
        weights = w_path.read_bytes()
        if hashlib.sha256(weights).hexdigest() != doc.weights_sha256:
            raise ModelError(f"'{w_path}' does not match '{cfg_path}' (weights changed); retrain the pair head")
        head = PairHead(doc.embedding_size, doc.hidden)
        try:
            head.load_state_dict(load(weights), strict=True)
        except (RuntimeError, SafetensorError) as exc:
            raise ModelError(f"pair head weights '{w_path}' do not fit '{cfg_path}': "
                             f"{str(exc).splitlines()[0]}") from exc
        if fingerprint is not None and doc.model_fingerprint != fingerprint:
            raise FingerprintMismatchError(
                f"pair head in '{d}' was trained on model {doc.model_fingerprint[:12]}, not this model "
                f"({fingerprint[:12]}); run `verikit pair-head train` with this model")
        head.eval()
        return cls(head, doc.model_fingerprint, doc.threshold, dict(doc.info))
