"""Training-side distances: a measure spec (see :mod:`verikit.similarity`) -> a pytorch-metric-learning
distance object that losses and miners use.

The same spec string is recorded in the trained model, so the gallery scores with exactly the
geometry the loss optimised. Every measure here sees the embeddings as UNIT L2 vectors, because
that is what the gallery compares:

* ``cosine`` -> ``CosineSimilarity``; ``dot`` -> ``DotProductSimilarity`` (no extra normalisation:
  the embedder already emits unit vectors, so on them it equals the cosine).
* ``l2`` / ``squared_l2`` -> ``LpDistance(p=2, power=1|2, normalize_embeddings=True)``.
* ``l1`` -> L1 distance between L2-normalised vectors. pytorch-metric-learning's
  ``LpDistance(p=1, normalize_embeddings=True)`` would normalise to unit *L1* norm, a different
  geometry from the one the gallery scores, so :class:`UnitL1Distance` normalises with L2 first.
* ``rbf[:sigma]`` -> :class:`RBFSimilarity`, exp(-|a-b|^2 / sigma^2), a similarity
  (``is_inverted=True``: larger = closer, so losses and miners flip their comparisons).
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning import distances as pml_distances

from ..similarity import Measure, parse_measure


class UnitL1Distance(pml_distances.LpDistance):
    """L1 distance between L2-normalised embeddings (what the gallery computes for ``l1``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(p=1, normalize_embeddings=True, **kwargs)

    def normalize(self, embeddings: torch.Tensor, dim: int = 1, **kwargs: Any) -> torch.Tensor:
        return torch.nn.functional.normalize(embeddings, p=2, dim=dim, **kwargs)


class RBFSimilarity(pml_distances.BaseDistance):
    """Gaussian (RBF) kernel similarity exp(-|a-b|^2 / sigma^2) of L2-normalised embeddings.

    The squared distance comes from |a|^2 + |b|^2 - 2ab (clamped at 0) rather than ``cdist``:
    it has a finite gradient where a == b (the diagonal of a batch against itself).
    """

    def __init__(self, sigma: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("normalize_embeddings", True)
        super().__init__(is_inverted=True, **kwargs)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None) -> torch.Tensor:
        if ref_emb is None:
            ref_emb = query_emb
        sq = (query_emb.pow(2).sum(1, keepdim=True) + ref_emb.pow(2).sum(1)[None, :]
              - 2.0 * query_emb @ ref_emb.T).clamp_min(0.0)
        return torch.exp(-sq / self.sigma ** 2)

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(query_emb - ref_emb).pow(2).sum(1) / self.sigma ** 2)


def build_distance(spec: str | Measure = "cosine") -> pml_distances.BaseDistance:
    """The pytorch-metric-learning distance for a measure spec (unknown spec: DataError)."""
    m = parse_measure(spec)
    if m.name == "cosine":
        return pml_distances.CosineSimilarity()
    if m.name == "dot":
        return pml_distances.DotProductSimilarity(normalize_embeddings=False)
    if m.name == "l2":
        return pml_distances.LpDistance(p=2, power=1, normalize_embeddings=True)
    if m.name == "squared_l2":
        return pml_distances.LpDistance(p=2, power=2, normalize_embeddings=True)
    if m.name == "l1":
        return UnitL1Distance()
    return RBFSimilarity(sigma=m.sigma)
