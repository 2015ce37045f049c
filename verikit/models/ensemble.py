"""Several saved models as one: the ``ensemble`` backbone and :func:`build_ensemble`.

Each member embeds the image with everything its own config says (input normalisation, test-time
mirroring, the layer its templates come from), its unit-length template is divided by sqrt(k),
and the k templates are concatenated. The result has unit length, and its cosine similarity to
another is the mean of the members' cosine similarities -- the plain score-averaging ensemble.
The ensemble is a normal verikit model directory (``backbone: ensemble``, the members' configs
in ``backbone_options``, all their weights in ``model.safetensors``), so enroll, verify, search,
calibrate and every benchmark use it unchanged, and its fingerprint covers every member.

Members must read the same input (one :class:`~verikit.structures.InputSpec`) and score with
cosine similarity; they are frozen (an ensemble is assembled from trained models, not trained).
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ModelError


class EnsembleBackbone(nn.Module):
    """Members' templates, concatenated and scaled by 1/sqrt(k), as a (B, sum of sizes, 1, 1) map."""

    def __init__(self, members: Sequence[Any]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.num_features = int(sum(m.embedding_size for m in members))
        self.input_spec = members[0].input_spec
        for m in self.members:
            m.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "EnsembleBackbone":
        super().train(mode)
        for m in self.members:  # always the members' inference path (their TTA, no dropout or BN updates)
            m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scale = 1.0 / math.sqrt(len(self.members))
        return torch.cat([m(images) * scale for m in self.members], dim=1)[:, :, None, None]


def ensemble_backbone(name: str | None = None, *, members: Sequence[dict] | None = None, in_chans: int = 3,
                      **options: Any) -> EnsembleBackbone:
    """Entry-point factory for ``ensemble``: ``members`` are the members' ``config.json`` contents.

    Builds each member's architecture (weights come from the ensemble's own weights file).
    """
    from .embedder import Embedder, ModelConfig

    if name:
        raise ModelError(f"the ensemble backbone takes no architecture name, got 'ensemble:{name}'")
    if options:
        raise ModelError(f"unknown ensemble option(s): {', '.join(sorted(options))}")
    if not members or len(members) < 2:
        raise ModelError("an ensemble needs the configs of at least two member models")
    configs = [ModelConfig.from_json_bytes(json.dumps(cfg).encode(), f"ensemble member {i}")
               for i, cfg in enumerate(members)]
    if configs[0].input_spec.channels != in_chans:  # checked before any network is built
        raise ModelError(f"the ensemble's members read {configs[0].input_spec.channels}-channel images, not {in_chans}")
    built = [Embedder.from_config(c) for c in configs]
    check_members(built)
    return EnsembleBackbone(built)


def check_members(members: Sequence[Any]) -> None:
    """Refuse members an ensemble cannot average: other inputs, or scores other than cosine."""
    first = members[0].input_spec
    for i, m in enumerate(members):
        if m.input_spec != first:
            raise ModelError(f"ensemble member {i} reads other inputs ({m.input_spec}) than member 0 ({first}); "
                             "members must share image size, channels and normalisation")
        if m.config.similarity != "cosine":
            raise ModelError(f"ensemble member {i} scores with {m.config.similarity!r}; only cosine members "
                             "can be averaged")


def build_ensemble(members: Sequence[Any]):
    """One :class:`~verikit.models.embedder.Embedder` scoring with the mean of ``members``' cosines."""
    from .embedder import Embedder

    if len(members) < 2:
        raise ModelError("an ensemble needs at least two member models")
    check_members(members)
    configs = [json.loads(m.config.to_json_bytes()) for m in members]
    model = Embedder.build("ensemble", embedding_size=sum(m.embedding_size for m in members),
                           input_spec=members[0].input_spec, backbone_options={"members": configs},
                           similarity="cosine", embed_from="pooled")
    for target, member in zip(model.backbone.members, members):
        target.load_state_dict(member.state_dict())
    model.config.training = {"ensemble_of": [m.fingerprint for m in members]}
    return model.eval()
