"""Embedding heads: feature map -> pooled vector -> projection -> batch-norm -> unit vector.

Two necks project the backbone's features to the embedding size: ``linear`` (the default, on the
pooled vector) and ``conv1x1`` (a 1x1 convolution + batch-norm + ReLU on the feature map, before
pooling, so GeM/max pooling select among embedding channels rather than backbone channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..structures import NECKS, POOLINGS  # re-exported: the names live with the other config choices


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent (Radenovic et al., 2018)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)


class EmbeddingHead(nn.Module):
    """Pool a ``(B, F, h, w)`` feature map into an L2-normalised ``(B, D)`` embedding.

    The batch-norm before normalisation (the "BNNeck" of re-identification work) keeps the
    embedding centred so cosine similarity uses the whole sphere.
    """

    def __init__(self, in_features: int, embedding_size: int = 128, pooling: str = "avg",
                 dropout: float = 0.0, neck: str = "linear") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if neck not in NECKS:
            raise ValueError(f"neck must be one of {NECKS}, got {neck!r}")
        if embedding_size < 2:
            raise ValueError("embedding_size must be at least 2")
        self.pooling = pooling
        self.pool = GeM() if pooling == "gem" else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.neck = neck
        if neck == "conv1x1":  # ReLU keeps the map non-negative, which GeM's power mean needs
            self.proj = nn.Sequential(nn.Conv2d(in_features, embedding_size, 1, bias=False),
                                      nn.BatchNorm2d(embedding_size), nn.ReLU(inplace=True))
        else:  # "linear": the original layer names, so saved models load unchanged
            self.proj = nn.Linear(in_features, embedding_size, bias=False)
        self.bn = nn.BatchNorm1d(embedding_size)

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 2:  # backbones that already pool
            return features
        if self.pooling == "gem":
            return self.pool(features)
        if self.pooling == "max":
            return features.amax(dim=(-2, -1))
        return features.mean(dim=(-2, -1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.neck == "conv1x1":
            if features.ndim == 2:  # an already-pooled backbone: a 1x1 map
                features = features[:, :, None, None]
            x = self.pooled(self.proj(self.dropout(features)))
        else:
            x = self.proj(self.dropout(self.pooled(features)))
        return F.normalize(self.bn(x), dim=1)
