"""Losses and miners by name: the one module that imports pytorch_metric_learning.

Keeping the library behind names means configs and the CLI speak strings (``triplet``,
``batch_hard``), the saved model records them, and a pytorch-metric-learning upgrade touches one file.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import DataError

LOSSES = ("triplet", "contrastive", "multi_similarity", "normalized_softmax", "cosface", "arcface")
# Losses that hold one learnable proxy (weight vector) per training identity: they need the number
# of identities and the embedding size, and their parameters must be given to the optimizer.
PROXY_LOSSES = ("normalized_softmax", "cosface", "arcface")
MINERS = ("batch_hard", "semihard", "hard", "all", "multi_similarity", "none")


def build_loss(name: str = "triplet", *, margin: float | None = None, num_classes: int | None = None,
               embedding_size: int | None = None) -> Any:
    from pytorch_metric_learning import distances, losses

    if name in PROXY_LOSSES:
        if not num_classes or not embedding_size:
            raise DataError(f"loss {name!r} needs num_classes and embedding_size (it learns one proxy per identity)")
        if name == "normalized_softmax":  # cosine softmax over identity proxies (Zhai & Wu, 2018)
            return losses.NormalizedSoftmaxLoss(num_classes, embedding_size, temperature=0.05)
        if name == "cosface":  # additive cosine margin; ``margin`` is in cosine units
            return losses.CosFaceLoss(num_classes, embedding_size, margin=0.35 if margin is None else margin, scale=30)
        # additive angular margin; ``margin`` in radians as in the ArcFace paper (the library wants degrees)
        return losses.ArcFaceLoss(num_classes, embedding_size, margin=math.degrees(0.5 if margin is None else margin),
                                  scale=30)

    # Cosine similarity on unit vectors matches how the gallery scores.
    cos = distances.CosineSimilarity()
    if name == "triplet":
        return losses.TripletMarginLoss(margin=0.2 if margin is None else margin, distance=cos)
    if name == "contrastive":
        return losses.ContrastiveLoss(pos_margin=1.0, neg_margin=0.5 if margin is None else margin, distance=cos)
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5, distance=cos)
    raise DataError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def build_miner(name: str = "batch_hard", *, margin: float = 0.2) -> Any:
    from pytorch_metric_learning import distances, miners

    cos = distances.CosineSimilarity()
    if name == "none":
        return None
    if name == "batch_hard":
        return miners.BatchHardMiner(distance=cos)
    if name in ("semihard", "hard", "all"):
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=name, distance=cos)
    if name == "multi_similarity":
        return miners.MultiSimilarityMiner(epsilon=0.1, distance=cos)
    raise DataError(f"unknown miner {name!r}; choose one of {', '.join(MINERS)}")


def build_sampler(labels: list[int], m: int, batch_size: int, length: int) -> Any:
    """Batches of ``m`` images from each of ``batch_size / m`` identities, so every batch has positives."""
    from pytorch_metric_learning import samplers

    n_classes = len(set(labels))
    if batch_size % m:
        raise DataError(f"batch size {batch_size} must be a multiple of --m-per-class {m}")
    if batch_size // m > n_classes:
        raise DataError(f"batch size {batch_size} needs {batch_size // m} identities of {m} images, "
                        f"but only {n_classes} identities are in the training set; lower --batch-size")
    return samplers.MPerClassSampler(labels, m=m, batch_size=batch_size, length_before_new_iter=max(length, batch_size))
