"""ROC benchmark on 10M scores, verikit versus scikit-learn, measured in the same run.

Two comparisons, each against its own baseline:

* the full ROC (every operating point): :func:`verikit.evaluate.metrics.roc` versus
  ``sklearn.metrics.roc_curve(y, s, drop_intermediate=False)``; the three arrays (thresholds,
  FPR, TPR) must be IDENTICAL (``np.array_equal``). Target >= 2x.
* the summary a report needs (TAR at six FARs + EER + AUC + a thinned curve):
  :func:`verikit.evaluate.summary.roc_summary` (histogram-bucketed, no sort of the scores; exact
  values) versus what a user writes with scikit-learn -- ``roc_curve(y, s)`` on the concatenated
  scores, ``np.interp`` for TAR at each FAR, ``argmin |FNR - FPR|`` for EER, ``auc(fpr, tpr)``.
  Target >= 20x.
* identical values: verikit's TAR at FAR equals the exact step reading of sklearn's curve (TPR
  at the largest FPR <= FAR), its EER equals the nearest-operating-point rule applied to
  sklearn's full curve (``drop_intermediate=False``), its AUC equals ``roc_auc_score``. The
  ``np.interp`` values are printed too: they interpolate between operating points, so they
  differ from any achievable operating point.
* peak memory: tracemalloc peak of each call versus the bytes of the two score arrays (target
  <= 3x).
* streaming: :class:`verikit.evaluate.streaming.HistogramRoc` fed in 1M-score chunks, with the
  bounds it states checked against the exact values.

Run: ``.venv/bin/python benchmarks/bench_roc.py`` (10M scores, a few minutes on a shared 2-core
machine; ``--quick`` for 1M scores and one repeat, to check it works). Results are printed and
written to ``benchmarks/results/roc.json`` (``roc_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def make_scores(n: int, genuine_fraction: float, dtype, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cosine-like scores: genuine ~ N(0.55, 0.15), impostor ~ N(0.05, 0.12), clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    n_g = int(n * genuine_fraction)
    g = np.clip(rng.normal(0.55, 0.15, n_g), -1, 1).astype(dtype)
    i = np.clip(rng.normal(0.05, 0.12, n - n_g), -1, 1).astype(dtype)
    return g, i


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def peak_bytes(fn) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def verikit_summary(g, i):
    from verikit.evaluate.summary import roc_summary

    r = roc_summary(g, i, FARS)
    return {"tar": list(r.tars), "eer": r.eer, "auc": r.auc}


def verikit_full_roc(g, i):
    from verikit.evaluate.metrics import eer, roc, tar_at_far

    curve = roc(g, i)
    return {"points": len(curve), "tar": tar_at_far(g, i, FARS).tolist(), "eer": eer(g, i)[0]}


def verikit_roc(g, i):
    from verikit.evaluate.metrics import roc

    return roc(g, i)


def sklearn_roc(g, i):
    """The full-curve baseline: every operating point, as verikit's ``roc`` returns them."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(g.size, np.int8), np.zeros(i.size, np.int8)]
    return roc_curve(y, np.concatenate([g, i]), drop_intermediate=False)


def sklearn_user(g, i):
    """The baseline as a user writes it (interpolated TAR, argmin EER, trapezoid AUC)."""
    from sklearn.metrics import auc, roc_curve

    y = np.r_[np.ones(g.size, np.int8), np.zeros(i.size, np.int8)]
    s = np.concatenate([g, i])
    fpr, tpr, thr = roc_curve(y, s)
    tar = np.interp(FARS, fpr, tpr)
    k = np.argmin(np.abs((1 - tpr) - fpr))
    return {"tar_interp": tar.tolist(), "eer": float((fpr[k] + 1 - tpr[k]) / 2), "auc": float(auc(fpr, tpr)),
            "curve": (fpr, tpr, thr)}


def exact_from_sklearn(g, i):
    """Exact operating-point values read off sklearn's full curve (not timed)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.r_[np.ones(g.size, np.int8), np.zeros(i.size, np.int8)]
    s = np.concatenate([g, i])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    tar = [float(tpr[np.searchsorted(fpr, f, side="right") - 1]) for f in FARS]
    n_g, n_i = g.size, i.size
    acc_i = np.rint(fpr * n_i).astype(np.int64)
    rej_g = n_g - np.rint(tpr * n_g).astype(np.int64)
    a, b = acc_i[1:] * n_g, rej_g[1:] * n_i          # skip the (0, 0) point at +inf
    gap = np.abs(a - b)
    cand = np.flatnonzero(gap == gap.min())
    total = (a + b)[cand]
    best = cand[np.flatnonzero(total == total.min())[0]] + 1  # sklearn is descending: first = highest t
    eer = float((acc_i[best] / n_i + rej_g[best] / n_g) / 2)
    return {"tar": tar, "eer": eer, "auc": float(roc_auc_score(y, s))}


def streaming(g, i, chunk: int = 1_000_000):
    from verikit.evaluate.streaming import HistogramRoc

    h = HistogramRoc()
    for s in range(0, max(g.size, i.size), chunk):
        h.update(g[s:s + chunk], i[s:s + chunk])
    return h


def run(n: int, dtype, repeats: int) -> dict:
    import sklearn.metrics  # noqa: F401  (import outside the timed region)
    import verikit.evaluate.summary  # noqa: F401

    g, i = make_scores(n, 0.1, dtype)
    data_bytes = g.nbytes + i.nbytes
    name = np.dtype(dtype).name
    print(f"\n{name}: {g.size:,} genuine + {i.size:,} impostor scores ({data_bytes / 1e6:.0f} MB)")
    # Interleaved, best of `repeats`: both sides see the same machine load.
    t_vk = t_sk = t_roc = t_skroc = float("inf")
    for _ in range(repeats):
        t, vk = timed(lambda: verikit_summary(g, i), 1)
        t_vk = min(t_vk, t)
        t, sk = timed(lambda: sklearn_user(g, i), 1)
        t_sk = min(t_sk, t)
        t, curve = timed(lambda: verikit_roc(g, i), 1)
        t_roc = min(t_roc, t)
        t, (fpr, tpr, thr) = timed(lambda: sklearn_roc(g, i), 1)
        t_skroc = min(t_skroc, t)
    roc_identical = (np.array_equal(curve.fmr, fpr) and np.array_equal(curve.tmr, tpr)
                     and np.array_equal(curve.thresholds, thr))
    n_points = len(curve)
    del curve, fpr, tpr, thr
    t_full, full = timed(lambda: verikit_full_roc(g, i), 1)
    exact = exact_from_sklearn(g, i)
    t_st, hist = timed(lambda: streaming(g, i), 1)
    mem_vk = peak_bytes(lambda: verikit_summary(g, i))
    mem_sk = peak_bytes(lambda: sklearn_user(g, i))
    identical = vk["tar"] == exact["tar"] and vk["eer"] == exact["eer"] and abs(vk["auc"] - exact["auc"]) < 1e-12
    same_as_full = vk["tar"] == full["tar"] and vk["eer"] == full["eer"]
    bounds = []
    for r, e in zip(hist.tar_at_far(FARS), vk["tar"]):
        bounds.append({"tar": r.value, "low": r.low, "high": r.high, "exact": e, "holds": r.low <= e <= r.high})
    e_h = hist.eer()
    eer_bound = {"eer": e_h.value, "low": e_h.low, "high": e_h.high, "exact": vk["eer"],
                 "holds": e_h.low <= vk["eer"] <= e_h.high}
    out = {
        "dtype": name, "n_genuine": int(g.size), "n_impostor": int(i.size), "score_bytes": data_bytes,
        "seconds": {"verikit_roc_summary": t_vk, "sklearn_roc_curve_user": t_sk,
                    "verikit_roc_full_curve": t_roc, "sklearn_roc_curve_drop_intermediate_false": t_skroc,
                    "verikit_full_roc_eer_tar": t_full, "verikit_streaming_histogram": t_st},
        "speed_ratio_vs_sklearn": t_sk / t_vk, "full_roc_speed_ratio_vs_sklearn": t_skroc / t_roc,
        "full_roc_points": n_points, "full_roc_identical_to_sklearn": roc_identical,
        "peak_memory_ratio": {"verikit_roc_summary": mem_vk / data_bytes, "sklearn_roc_curve_user": mem_sk / data_bytes},
        "identical_to_sklearn_exact": identical, "identical_to_verikit_full_roc": same_as_full,
        "values": {"fars": list(FARS), "verikit_tar": vk["tar"], "sklearn_exact_tar": exact["tar"],
                   "sklearn_interp_tar": sk["tar_interp"], "verikit_eer": vk["eer"], "sklearn_exact_eer": exact["eer"],
                   "sklearn_argmin_eer": sk["eer"], "verikit_auc": vk["auc"], "sklearn_auc": exact["auc"]},
        "streaming": {"bins": 1 << 20, "tar_bounds": bounds, "eer_bound": eer_bound,
                      "max_tar_bound_width": max(b["high"] - b["low"] for b in bounds)},
    }
    print(f"  full ROC ({n_points:,} points): verikit roc {t_roc:.2f}s | sklearn roc_curve(drop_intermediate="
          f"False) {t_skroc:.2f}s -> {t_skroc / t_roc:.2f}x (target >= 2); identical arrays: {roc_identical}")
    print(f"  summary: verikit roc_summary {t_vk:.3f}s | sklearn roc_curve+interp+auc {t_sk:.2f}s -> "
          f"{t_sk / t_vk:.1f}x (target >= 20) | verikit roc+eer+tar_at_far {t_full:.2f}s | streaming {t_st:.2f}s")
    print(f"  peak memory / score bytes: verikit {mem_vk / data_bytes:.2f}x (target <= 3), sklearn "
          f"{mem_sk / data_bytes:.2f}x")
    print(f"  identical to sklearn's exact curve: {identical}; to verikit's full roc: {same_as_full}")
    print(f"  TAR@FAR verikit {[round(x, 5) for x in vk['tar']]}")
    print(f"  TAR@FAR np.interp {[round(x, 5) for x in sk['tar_interp']]}")
    print(f"  streaming bounds hold: {all(b['holds'] for b in bounds) and eer_bound['holds']}; widest TAR bound "
          f"{out['streaming']['max_tar_bound_width']:.2e}, EER in [{e_h.low:.6f}, {e_h.high:.6f}]")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="total scores (10%% genuine)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best time of each is kept")
    ap.add_argument("--quick", action="store_true", help="1M scores, one repeat: check that it works")
    args = ap.parse_args()
    n, repeats = (1_000_000, 1) if args.quick else (args.n, args.repeats)
    import os
    results = {"n": n, "fars": list(FARS), "repeats": repeats, "cpu_count": os.cpu_count(),
               "load_average_at_start": os.getloadavg()[0],
               "runs": [run(n, np.float32, repeats), run(n, np.float64, repeats)]}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / ("roc_quick.json" if args.quick else "roc.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
