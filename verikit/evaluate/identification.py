"""The identification section of a benchmark result: closed-set CMC / rank-1 / mAP over mated
probes and open-set DIR at FPIR, with failures to acquire counted.

How a failure to acquire (no face found, ISO/IEC 19795-1) counts here, decided once:

* a **probe** with no face is a probe the system could not answer: a mated one is a miss at
  every rank (in CMC, rank-1, mAP and DIR), a non-mated one a correct rejection (it raises no
  false alarm, and it counts in the FPIR denominator);
* a **gallery** image with no face is a failure to enrol: it gives no template. Its identity
  stays enrolled as far as the protocol is concerned, so the mated probes of an identity left
  without any template are misses too (not silently turned into non-mated probes).

Rates are over every mated (non-mated) probe the protocol names, scored or not, so they never
read better than what a deployed system would do. Probes that were dropped (unreadable files, or
``--on-no-face drop``) are not counted at all; the result says how many.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from verikit.errors import DataError

from .metrics import (UNSCORED, _gallery_index, _identity_scores, _lowest_scored, _thresholds_at_fmrs, cmc,
                      mean_average_precision, wilson_interval)

__all__ = ["evaluate_identification"]


def evaluate_identification(similarity: np.ndarray, probe_ids: Sequence[str], gallery_ids: Sequence[str], *,
                            enrolled: set[str], unscored_probes: Sequence[str] = (), max_rank: int = 20,
                            fpirs: Sequence[float] = (1e-1, 1e-2)) -> dict[str, Any]:
    """Identification rates.

    ``similarity`` is ``(n_scored_probes, n_templates)``; ``probe_ids`` / ``gallery_ids`` label its
    rows / columns. ``enrolled`` is every identity the gallery was meant to hold (including any
    whose images all failed to enrol); ``unscored_probes`` are the identities of the probes that
    failed to acquire.
    """
    sim = np.asarray(similarity, np.float64).reshape(len(probe_ids), len(gallery_ids))
    with_template = set(gallery_ids)
    if not with_template:
        raise DataError("no gallery image could be enrolled")
    p_ids = list(probe_ids)
    mated = np.array([i in enrolled for i in p_ids], bool)
    evaluable = np.array([i in with_template for i in p_ids], bool)  # mated and its identity has a template
    unscored_mated = sum(1 for i in unscored_probes if i in enrolled)
    n_mated = int(mated.sum()) + unscored_mated
    n_non_mated = int((~mated).sum()) + len(unscored_probes) - unscored_mated
    out: dict[str, Any] = {"n_gallery_templates": len(gallery_ids), "n_gallery_identities": len(enrolled),
                           "n_identities_without_template": len(enrolled - with_template),
                           "n_mated": n_mated, "n_non_mated": n_non_mated,
                           "unscored_probes": {"mated": unscored_mated,
                                               "non_mated": len(unscored_probes) - unscored_mated},
                           "misses_without_score": n_mated - int(evaluable.sum())}
    if n_mated == 0:
        return out
    n_eval = int(evaluable.sum())
    share = n_eval / n_mated  # evaluable probes; every other mated probe is a miss at every rank
    rank_max = min(max_rank, len(with_template))
    ev_ids = [i for i, e in zip(p_ids, evaluable) if e]
    curve = cmc(sim[evaluable], ev_ids, list(gallery_ids), max_rank=rank_max) * share if n_eval else \
        np.zeros(rank_max)
    hits = int(round(curve[0] * n_mated))
    out["cmc"] = curve.tolist()
    out["rank1"] = float(curve[0])
    out["rank1_interval"] = list(wilson_interval(hits, n_mated))
    out["map"] = mean_average_precision(sim[evaluable], ev_ids, list(gallery_ids)) * share if n_eval else 0.0
    if n_non_mated:
        out["dir_at_fpir"] = _open_set(sim, p_ids, list(gallery_ids), evaluable, ~mated,
                                       len(unscored_probes) - unscored_mated, n_mated, fpirs)
    return out


def _open_set(sim: np.ndarray, p_ids: list[str], g_ids: list[str], evaluable: np.ndarray, non_mated: np.ndarray,
              unscored_non_mated: int, n_mated: int, fpirs: Sequence[float]) -> list[dict[str, Any]]:
    """DIR at each FPIR (rank 1); unscored non-mated probes never alarm, unscored mated ones never hit."""
    index, codes = _gallery_index(g_ids)
    ids = _identity_scores(sim, codes, len(index))  # identity score = its best template
    rows = np.flatnonzero(evaluable)
    true = ids[rows, [index[p_ids[r]] for r in rows]] if rows.size else np.empty(0)
    correct = (np.count_nonzero(ids[rows] >= true[:, None], axis=1) == 1) if rows.size else np.empty(0, bool)
    tops = np.r_[ids[non_mated].max(axis=1) if non_mated.any() else np.empty(0), np.full(unscored_non_mated, UNSCORED)]
    floor = _lowest_scored(np.sort(tops), np.sort(true))
    out = []
    for f in fpirs:
        t = max(float(_thresholds_at_fmrs(tops, [f])[0]), floor)
        hits = int(np.count_nonzero(correct & (true >= t)))
        out.append({"fpir": f, "threshold": t, "dir": hits / n_mated,
                    "measured_fpir": float(np.count_nonzero(tops >= t) / tops.size),
                    "supported": bool(f * tops.size >= 30)})
    return out
