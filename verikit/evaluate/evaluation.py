"""Verification evaluation of a scored protocol: the numbers a report prints, as a JSON-ready dict.

This module owns turning genuine/impostor scores (with their subjects) into the
``"verification"`` section of a benchmark result: AUC, EER with its threshold, TAR at each FAR
with a Wilson interval, the measured FAR there, a ``supported`` flag (rule of 30, see
:func:`~verikit.evaluate.metrics.min_supported_fmr`), percentile intervals from a bootstrap over
subjects, a thinned ROC for plotting, score histograms, and (LFW View 2) the 10-fold accuracy.
It also scores pairs from embeddings. It knows nothing about models or files.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from verikit.errors import DataError

from .bootstrap import WeightedScores, subject_bootstrap
from .metrics import min_supported_fmr, wilson_interval
from .summary import roc_summary

__all__ = ["DEFAULT_FARS", "pair_scores", "fold_accuracy", "evaluate_verification"]

DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def pair_scores(embeddings: np.ndarray, a: np.ndarray, b: np.ndarray, *, block: int = 1 << 18) -> np.ndarray:
    """Cosine similarity of rows ``a[k]`` and ``b[k]`` of L2-normalised ``embeddings`` (float32).

    >>> e = np.array([[1, 0], [0.6, 0.8]], np.float32)
    >>> pair_scores(e, np.array([0, 0]), np.array([1, 0])).astype(float).round(3).tolist()
    [0.6, 1.0]
    """
    e = np.asarray(embeddings, np.float32)
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), block):  # blocks: never two (n_pairs, dim) temporaries at once
        out[s:s + block] = np.einsum("ij,ij->i", e[a[s:s + block]], e[b[s:s + block]])
    return out


def _histogram(genuine: np.ndarray, impostor: np.ndarray, bins: int = 60) -> dict[str, list]:
    lo = float(min(genuine.min(), impostor.min()))
    hi = float(max(genuine.max(), impostor.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    return {"edges": edges.tolist(), "genuine": np.histogram(genuine, edges)[0].tolist(),
            "impostor": np.histogram(impostor, edges)[0].tolist()}


def _best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy (accept ``>= t``) on ``scores``.

    Every distinct score ``v`` (and ``+inf``) is a candidate accepted set; among the most
    accurate ones the middle one is taken, and the threshold is put halfway between ``v`` and
    the next lower distinct score (so it does not sit on a training score)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order].astype(np.float64), labels[order]
    values, first = np.unique(s, return_index=True)
    n_gen = int(y.sum())
    gen_below = np.r_[0, np.cumsum(y)][first]            # genuine rejected when t = values[k]
    imp_below = first - gen_below                           # impostors rejected
    correct = np.r_[(n_gen - gen_below) + imp_below, len(s) - n_gen]  # last: t = +inf rejects all
    best_all = np.flatnonzero(correct == correct.max())
    best = int(best_all[best_all.size // 2])
    if best == values.size:
        return math.inf
    return float(values[best]) if best == 0 else float((values[best - 1] + values[best]) / 2)


def fold_accuracy(scores: np.ndarray, genuine: np.ndarray, fold: np.ndarray) -> dict[str, Any]:
    """LFW-style k-fold accuracy: each fold's threshold maximises accuracy on the other folds.

    Returns per-fold thresholds and accuracies, their mean and the standard error of the mean
    (sample standard deviation / sqrt(k)).

    >>> r = fold_accuracy(np.array([.9, .2, .8, .3]), np.array([1, 0, 1, 0], bool), np.array([0, 0, 1, 1]))
    >>> r["accuracy"], r["mean"], r["std_error"]
    ([1.0, 1.0], 1.0, 0.0)
    """
    folds = np.unique(fold)
    if folds.size < 2:
        raise DataError("fold accuracy needs at least two folds")
    thresholds, accuracy = [], []
    for k in folds:
        train, test = fold != k, fold == k
        t = _best_threshold(scores[train], genuine[train])
        accept = scores[test].astype(np.float64) >= t
        thresholds.append(t)
        accuracy.append(float(np.mean(accept == genuine[test])))
    acc = np.array(accuracy)
    return {"folds": int(folds.size), "threshold": thresholds, "accuracy": accuracy, "mean": float(acc.mean()),
            "std_error": float(acc.std(ddof=1) / math.sqrt(acc.size)), "threshold_rule": "max accuracy on the other folds (midpoint between scores)"}


def evaluate_verification(genuine: np.ndarray, impostor: np.ndarray, genuine_subject: np.ndarray,
                          impostor_subjects: tuple[np.ndarray, np.ndarray], *, fars: Sequence[float] = DEFAULT_FARS,
                          n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Every verification number of a report, with intervals (see the module docstring).

    ``n_boot=0`` skips the subject bootstrap (its intervals are then ``None``).
    """
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    if genuine.size == 0 or impostor.size == 0:
        raise DataError(f"need genuine and impostor pairs, got {genuine.size} genuine and {impostor.size} impostor")
    summary = roc_summary(genuine, impostor, fars)
    thresholds, tars = summary.thresholds, summary.tars
    eer_value, eer_threshold = summary.eer, summary.eer_threshold
    boot = None
    if n_boot:
        weighted = WeightedScores(genuine, genuine_subject, impostor, impostor_subjects)
        boot = subject_bootstrap(weighted, fars, n_boot=n_boot, seed=seed, confidence=confidence)
    n_g, n_i = genuine.size, impostor.size
    floor = min_supported_fmr(n_i)
    g64, i64 = genuine.astype(np.float64), impostor.astype(np.float64)
    rows = []
    for j, (far, t, tar) in enumerate(zip(fars, thresholds, tars)):
        accepted_g = int(np.count_nonzero(g64 >= t))
        accepted_i = int(np.count_nonzero(i64 >= t))
        rows.append({"far": float(far), "threshold": float(t), "tar": float(tar),
                     "tar_interval": list(wilson_interval(accepted_g, n_g, confidence)),
                     "tar_bootstrap_ci": list(boot.tar_ci[j]) if boot else None,
                     "measured_far": accepted_i / n_i,
                     "far_interval": list(wilson_interval(accepted_i, n_i, confidence)),
                     "genuine_accepted": accepted_g, "impostor_accepted": accepted_i,
                     "supported": bool(far >= floor)})
    return {
        "n_genuine": int(n_g), "n_impostor": int(n_i), "n_subjects": int(np.unique(np.concatenate(
            [np.asarray(genuine_subject), *impostor_subjects])).size),
        "auc": summary.auc,
        "eer": {"value": eer_value, "threshold": eer_threshold,
                "bootstrap_ci": list(boot.eer_ci) if boot else None},
        "min_supported_far": floor, "supported_rule": "rule of 30 (>= 30 impostor errors expected)",
        "interval_method": "wilson", "confidence": confidence,
        "tar_at_far": rows,
        "bootstrap": boot.to_dict() if boot else None,
        "roc": {"fmr": summary.curve_fmr.tolist(), "tmr": summary.curve_tmr.tolist(),
                "threshold": [None if math.isinf(t) else float(t) for t in summary.curve_thresholds]},
        "histogram": _histogram(genuine, impostor),
    }
