"""Losses and miners by name. With :mod:`verikit.train.distances` (measures) and
:mod:`verikit.train.distributed` (its gathering wrappers for DDP), the only importers of
pytorch_metric_learning; the sampler lives here too.

Keeping the library behind names means configs and the CLI speak strings (``triplet``,
``batch_hard``, ``rbf:0.5``), the saved model records them, and a pytorch-metric-learning upgrade
touches three files.

Pair/triplet losses and miners take a ``distance`` spec (see :mod:`verikit.similarity`); margins
are in that measure's units. Proxy losses are defined on the cosine (their margins and scales
are cosine quantities), so they accept only ``cosine`` or ``dot`` (equal on unit embeddings).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import DataError

LOSSES = ("triplet", "contrastive", "multi_similarity", "ntxent", "normalized_softmax", "cosface", "arcface",
          "subcenter_arcface", "proxy_anchor")
# Losses that hold one learnable proxy (weight vector) per training identity: they need the number
# of identities and the embedding size, and their parameters must be given to the optimizer.
PROXY_LOSSES = ("normalized_softmax", "cosface", "arcface", "subcenter_arcface", "proxy_anchor")
MINERS = ("batch_hard", "semihard", "hard", "all", "multi_similarity", "pair_margin", "none")

NTXENT_TEMPERATURE = 0.07  # SimCLR's / SupCon's temperature for unit embeddings


# Losses that compare each embedding with identity proxies under the cosine only.
PROXY_DISTANCES = ("cosine", "dot")


def contrastive_margins(distance: str, margin: float | None) -> tuple[float, float]:
    """(pos_margin, neg_margin) for ContrastiveLoss in the measure's own units.

    Similarities (cosine, dot, rbf; 1 = identical) pull positives to 1 and push negatives below
    ``margin`` (0.5); distances pull positives to 0 and push negatives beyond ``margin`` (1.0, the
    library's default, about the distance of orthogonal unit vectors in L2).
    """
    from .distances import build_distance

    if build_distance(distance).is_inverted:
        return 1.0, 0.5 if margin is None else margin
    return 0.0, 1.0 if margin is None else margin


def pair_margins(distance: str, margin: float) -> tuple[float, float]:
    """(pos_margin, neg_margin) of the pair-margin miner in the measure's own units.

    It keeps the positives more than ``margin`` away from identical (similarity below
    ``1 - margin``, or distance beyond ``margin``) and the negatives inside the contrastive loss's
    negative margin (similarity above 0.5, or distance below 1.0): the pairs that loss penalises.
    """
    from .distances import build_distance

    _, neg = contrastive_margins(distance, None)
    if build_distance(distance).is_inverted:
        return 1.0 - margin, neg
    return margin, neg


def build_loss(name: str = "triplet", *, margin: float | None = None, num_classes: int | None = None,
               embedding_size: int | None = None, distance: str = "cosine") -> Any:
    from pytorch_metric_learning import losses

    from ..similarity import parse_measure
    from .distances import build_distance

    if name in PROXY_LOSSES:
        if parse_measure(distance).name not in PROXY_DISTANCES:
            raise DataError(f"loss {name!r} is defined on the cosine; use --distance cosine (or dot), "
                            f"or a pair loss (triplet, contrastive, multi_similarity) with {distance!r}")
        if not num_classes or not embedding_size:
            raise DataError(f"loss {name!r} needs num_classes and embedding_size (it learns one proxy per identity)")
        if name == "normalized_softmax":  # cosine softmax over identity proxies (Zhai & Wu, 2018)
            return losses.NormalizedSoftmaxLoss(num_classes, embedding_size, temperature=0.05)
        if name == "cosface":  # additive cosine margin; ``margin`` is in cosine units
            return losses.CosFaceLoss(num_classes, embedding_size, margin=0.35 if margin is None else margin, scale=30)
        if name == "proxy_anchor":  # one proxy per identity as the anchor (Kim et al., 2020); cosine margin
            return losses.ProxyAnchorLoss(num_classes, embedding_size, margin=0.1 if margin is None else margin,
                                          alpha=32)
        # additive angular margin; ``margin`` in radians as in the ArcFace paper (the library wants degrees)
        degrees = math.degrees(0.5 if margin is None else margin)
        if name == "subcenter_arcface":  # 3 sub-centres per identity absorb noisy images (Deng et al., 2020)
            return losses.SubCenterArcFaceLoss(num_classes=num_classes, embedding_size=embedding_size,
                                               margin=degrees, scale=30, sub_centers=3)
        return losses.ArcFaceLoss(num_classes, embedding_size, margin=degrees, scale=30)

    # The model records ``distance`` and its gallery scores with it: training and scoring agree.
    dist = build_distance(distance)
    if name == "triplet":
        return losses.TripletMarginLoss(margin=0.2 if margin is None else margin, distance=dist)
    if name == "contrastive":
        pos, neg = contrastive_margins(distance, margin)
        return losses.ContrastiveLoss(pos_margin=pos, neg_margin=neg, distance=dist)
    if name == "multi_similarity":
        return losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5, distance=dist)
    if name == "ntxent":  # InfoNCE over each positive pair against the anchor's negatives; no margin
        if margin is not None:
            raise DataError(f"loss 'ntxent' has no margin (its temperature is {NTXENT_TEMPERATURE}); drop --margin")
        return losses.NTXentLoss(temperature=NTXENT_TEMPERATURE, distance=dist)
    raise DataError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")


def build_miner(name: str = "batch_hard", *, margin: float = 0.2, distance: str = "cosine") -> Any:
    from pytorch_metric_learning import miners

    from .distances import build_distance

    dist = build_distance(distance)  # the miner must rank pairs the way the loss and the gallery do
    if name == "none":
        return None
    if name == "batch_hard":
        return miners.BatchHardMiner(distance=dist)
    if name in ("semihard", "hard", "all"):
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=name, distance=dist)
    if name == "multi_similarity":
        return miners.MultiSimilarityMiner(epsilon=0.1, distance=dist)
    if name == "pair_margin":
        pos, neg = pair_margins(distance, margin)
        return miners.PairMarginMiner(pos_margin=pos, neg_margin=neg, distance=dist)
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
