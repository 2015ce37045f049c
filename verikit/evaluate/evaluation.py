"""Verification evaluation of a scored protocol: the numbers a report prints, as a JSON-ready dict.

This module owns turning genuine/impostor scores (with their subjects) into the
``"verification"`` section of a benchmark result: AUC, EER with its threshold, TAR at each FAR
with a Wilson interval, the measured FAR there, a ``supported`` flag (rule of 30, see
:func:`~verikit.evaluate.metrics.min_supported_fmr`), percentile intervals from a bootstrap over
subjects, a thinned ROC for plotting, score histograms, and (LFW View 2) the 10-fold accuracy;
and, at fixed thresholds (``--threshold``, a calibration's), the measured FMR and FNMR.
It also scores pairs from embeddings. It knows nothing about models or files.

What the intervals may claim is decided here, once: the subject bootstrap needs subjects that
are known and at least :data:`~verikit.evaluate.bootstrap.MIN_SUBJECTS` of them; otherwise
every interval is pair-level and ``interval_note`` says why, so no report prints a subject
interval the data cannot support. Comparisons that could not be scored (a failure to acquire,
``-inf``) stay in every count and are never accepted.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from verikit.errors import DataError

from .bootstrap import MIN_SUBJECTS, WeightedScores, pair_bootstrap, subject_bootstrap
from .metrics import UNSCORED, min_supported_fmr, wilson_interval
from .summary import roc_summary

__all__ = ["DEFAULT_FARS", "pair_scores", "fold_accuracy", "bootstrap_unit", "evaluate_verification"]

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
    both = np.concatenate([genuine.astype(np.float64), impostor.astype(np.float64)])
    lo, hi = float(both.min()), float(both.max())
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
    if values[0] == UNSCORED:
        correct[0] = -1  # accepting the unscored (failures to acquire) is not an operating point
    best_all = np.flatnonzero(correct == correct.max())
    best = int(best_all[best_all.size // 2])
    if best == values.size:
        return math.inf
    if best == 0 or values[best - 1] == UNSCORED:
        return float(values[best])
    return float((values[best - 1] + values[best]) / 2)


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


def bootstrap_unit(n_subjects: int, subjects_note: str | None = None) -> tuple[str, str | None]:
    """``("subject", None)`` when a subject bootstrap is sound here, else ``("pair", reason)``."""
    if subjects_note:
        return "pair", subjects_note
    if n_subjects < MIN_SUBJECTS:
        return "pair", (f"{n_subjects} subject{'s' if n_subjects != 1 else ''}: too few for a subject bootstrap "
                        f"(it needs at least {MIN_SUBJECTS})")
    return "subject", None


def _interval_note(unit: str, reason: str | None, degenerate: int) -> str:
    if unit == "subject":
        note = ("TAR and EER intervals: a percentile bootstrap over subjects (comparisons that share a person "
                "are resampled together); the Wilson intervals treat comparisons as independent.")
    else:
        note = (f"{reason}. Every interval here is pair-level (Wilson for the rates, a bootstrap over comparisons "
                "for the EER): it treats comparisons as independent, so it is too narrow when comparisons share "
                "people.")
    if degenerate:
        note += (f" {degenerate} bootstrap interval(s) of zero width (every replicate gave the same value) are "
                 "not shown: read the Wilson interval there.")
    return note


class _Shown:
    """Bootstrap intervals as a report may show them: none of zero width (a percentile bootstrap
    pinned at 0 or 1, or one subject resampled, claims a certainty no finite sample has), counted so
    the note can say so."""

    def __init__(self) -> None:
        self.hidden = 0

    def __call__(self, ci: Any, shown: bool = True) -> list[float] | None:
        if ci is None:
            return None
        lo, hi = float(ci[0]), float(ci[1])
        if not shown:  # a row no report prints (an unsupported FAR): kept as computed
            return [lo, hi]
        if math.isnan(lo) or math.isnan(hi) or lo == hi:
            self.hidden += 1
            return None
        return [lo, hi]


def _operating_point(point: Mapping[str, Any], g64: np.ndarray, i64: np.ndarray, boot: Any, j: int,
                     confidence: float, shown: "_Shown") -> dict[str, Any]:
    """Measured FMR / FNMR at one fixed threshold, with Wilson and bootstrap intervals."""
    t = float(point["threshold"])
    rates = boot is not None and boot.unit == "subject"  # pair level: Wilson is the rates' interval
    n_g, n_i = g64.size, i64.size
    accepted_i = int(np.count_nonzero(i64 >= t))
    rejected_g = int(np.count_nonzero(g64 < t))
    fmr_interval = list(wilson_interval(accepted_i, n_i, confidence))
    out = {**point, "threshold": t, "fmr": accepted_i / n_i, "fnmr": rejected_g / n_g,
           "fmr_interval": fmr_interval, "fnmr_interval": list(wilson_interval(rejected_g, n_g, confidence)),
           "fmr_bootstrap_ci": shown(boot.fmr_ci[j]) if rates else None,
           "fnmr_bootstrap_ci": shown(boot.fnmr_ci[j]) if rates else None,
           "impostor_accepted": accepted_i, "genuine_rejected": rejected_g, "n_genuine": n_g, "n_impostor": n_i,
           # Rule of 30 at a fixed threshold: a rate measured from fewer errors is an order of magnitude at best.
           "fmr_supported": accepted_i >= 30, "fnmr_supported": rejected_g >= 30}
    target = point.get("target_fmr")
    if target is not None:
        lo, hi = out["fmr_bootstrap_ci"] or fmr_interval
        out["target_fmr_in_interval"] = bool(lo <= float(target) <= hi)
    return out


def evaluate_verification(genuine: np.ndarray, impostor: np.ndarray, genuine_subject: np.ndarray,
                          impostor_subjects: tuple[np.ndarray, np.ndarray], *, fars: Sequence[float] = DEFAULT_FARS,
                          n_boot: int = 1000, seed: int = 0, confidence: float = 0.95,
                          subjects_note: str | None = None,
                          operating_points: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Every verification number of a report, with intervals (see the module docstring).

    ``n_boot=0`` skips the bootstrap (its intervals are then ``None``). The bootstrap is over
    subjects when there are at least :data:`~verikit.evaluate.bootstrap.MIN_SUBJECTS` of them and
    ``subjects_note`` (why the subjects are not known) is ``None``; otherwise it is over pairs,
    and the result says so (``bootstrap.unit``, ``interval_note``). Scores may hold
    :data:`~verikit.evaluate.metrics.UNSCORED` (failures to acquire): counted, never accepted.
    ``operating_points`` are fixed thresholds (dicts with ``threshold`` and any provenance, e.g.
    ``source`` and ``target_fmr``), each reported with its measured FMR and FNMR.
    """
    genuine, impostor = np.asarray(genuine), np.asarray(impostor)
    if genuine.size == 0 or impostor.size == 0:
        raise DataError(f"need genuine and impostor pairs, got {genuine.size} genuine and {impostor.size} impostor")
    for point in operating_points:
        if not math.isfinite(float(point["threshold"])):
            raise DataError(f"threshold {point['threshold']!r} is not a finite number")
    summary = roc_summary(genuine, impostor, fars)
    thresholds, tars = summary.thresholds, summary.tars
    eer_value, eer_threshold = summary.eer, summary.eer_threshold
    n_subjects = int(np.unique(np.concatenate([np.asarray(genuine_subject), *impostor_subjects])).size)
    unit, reason = bootstrap_unit(n_subjects, subjects_note)
    at = [float(p["threshold"]) for p in operating_points]
    boot = None
    if n_boot:
        weighted = WeightedScores(genuine, genuine_subject, impostor, impostor_subjects)
        run = subject_bootstrap if unit == "subject" else pair_bootstrap
        boot = run(weighted, fars, n_boot=n_boot, seed=seed, confidence=confidence, at=at)
    n_g, n_i = genuine.size, impostor.size
    floor = min_supported_fmr(n_i)
    g64, i64 = genuine.astype(np.float64), impostor.astype(np.float64)
    shown = _Shown()
    rates = boot is not None and unit == "subject"  # at the pair level the rates' interval is Wilson's
    rows = []
    for j, (far, t, tar) in enumerate(zip(fars, thresholds, tars)):
        accepted_g = int(np.count_nonzero(g64 >= t))
        accepted_i = int(np.count_nonzero(i64 >= t))
        rows.append({"far": float(far), "threshold": float(t), "tar": float(tar),
                     "tar_interval": list(wilson_interval(accepted_g, n_g, confidence)),
                     "tar_bootstrap_ci": shown(boot.tar_ci[j], far >= floor) if rates else None,
                     "measured_far": accepted_i / n_i,
                     "far_interval": list(wilson_interval(accepted_i, n_i, confidence)),
                     "genuine_accepted": accepted_g, "impostor_accepted": accepted_i,
                     "supported": bool(far >= floor)})
    scored_g, scored_i = np.isfinite(g64), np.isfinite(i64)
    points = [_operating_point(p, g64, i64, boot, j, confidence, shown) for j, p in enumerate(operating_points)]
    eer_ci = shown(boot.eer_ci) if boot else None
    return {
        "n_genuine": int(n_g), "n_impostor": int(n_i), "n_subjects": n_subjects,
        "unscored": {"genuine": int(n_g - scored_g.sum()), "impostor": int(n_i - scored_i.sum())},
        "auc": summary.auc,
        "eer": {"value": eer_value, "threshold": eer_threshold,
                "bootstrap_ci": eer_ci},
        "min_supported_far": floor, "supported_rule": "rule of 30 (>= 30 impostor errors expected)",
        "interval_method": "wilson", "confidence": confidence,
        "subjects_note": reason, "interval_note": _interval_note(unit, reason, shown.hidden),
        "tar_at_far": rows,
        "at_threshold": points,
        "bootstrap": {**boot.to_dict(), "fallback_reason": reason} if boot else None,
        "roc": {"fmr": summary.curve_fmr.tolist(), "tmr": summary.curve_tmr.tolist(),
                "threshold": [None if math.isinf(t) else float(t) for t in summary.curve_thresholds]},
        "histogram": _histogram(genuine[scored_g], impostor[scored_i]),
    }
