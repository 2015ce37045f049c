"""How many subjects does a subject bootstrap need? Coverage of 95% intervals, by simulation.

This is a measurement of statistical accuracy, not speed: it is what
:data:`verikit.evaluate.bootstrap.MIN_SUBJECTS` (below it, benchmarks fall back to pair-level
intervals and say so) is chosen from.

Model (the one ``tests/test_intervals.py`` uses): the genuine score of subject ``s`` is
``MU + u_s + e``, the impostor score of subjects ``s, t`` is ``v_s + v_t + e``, with ``u, v, e``
independent normals, so the population TAR at FAR 5% and the EER are known exactly. For each
number of subjects, many data sets are drawn; on each, three 95% intervals for TAR at FAR 5%:
the percentile subject bootstrap (verikit's), the pair bootstrap (comparisons resampled as if
independent) and the Wilson interval (likewise), and the subject bootstrap's interval for the
EER. The baseline is the nominal 95%: an interval that covers the truth far less often than that
claims more than the data supports.

Run: ``.venv/bin/python benchmarks/bench_interval_coverage.py`` (full: 400 data sets per size,
a few minutes) or ``--quick`` (60 data sets per size, to check it works). Results are printed
and written to ``benchmarks/results/interval_coverage.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

from verikit.evaluate.bootstrap import MIN_SUBJECTS, WeightedScores, pair_bootstrap, subject_bootstrap
from verikit.evaluate.metrics import tar_at_far, wilson_interval

RESULTS = Path(__file__).resolve().parent / "results"
SD_U, SD_V, SD_E, MU = 0.10, 0.06, 0.08, 0.35
SIG_G = (SD_U ** 2 + SD_E ** 2) ** 0.5
SIG_I = (2 * SD_V ** 2 + SD_E ** 2) ** 0.5
FAR = 0.05
PHI = NormalDist()
TRUE_TAR = 1 - PHI.cdf((SIG_I * PHI.inv_cdf(1 - FAR) - MU) / SIG_G)
TRUE_EER = 1 - PHI.cdf(MU / (SIG_I + SIG_G))
SIZES = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30)


def simulate(rng: np.random.Generator, n_subjects: int, per_subject: int = 6, per_pair: int = 3):
    u = rng.normal(0, SD_U, n_subjects)
    v = rng.normal(0, SD_V, n_subjects)
    sg = np.repeat(np.arange(n_subjects), per_subject)
    g = MU + u[sg] + rng.normal(0, SD_E, sg.size)
    a, b = np.triu_indices(n_subjects, 1)
    sa, sb = np.repeat(a, per_pair), np.repeat(b, per_pair)
    i = v[sa] + v[sb] + rng.normal(0, SD_E, sa.size)
    return g, sg, i, (sa, sb)


def coverage(n_subjects: int, reps: int, n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    hits = {"subject_tar": 0, "subject_eer": 0, "pair_tar": 0, "wilson_tar": 0}
    width = {"subject_tar": [], "pair_tar": [], "wilson_tar": []}
    for r in range(reps):
        g, sg, i, si = simulate(rng, n_subjects)
        w = WeightedScores(g, sg, i, si)
        sub = subject_bootstrap(w, [FAR], n_boot=n_boot, seed=r)
        pair = pair_bootstrap(w, [FAR], n_boot=n_boot, seed=r)
        tar = tar_at_far(g, i, [FAR])[0]
        wil = wilson_interval(int(round(tar * g.size)), g.size)
        for name, (lo, hi) in (("subject_tar", sub.tar_ci[0]), ("pair_tar", pair.tar_ci[0]), ("wilson_tar", wil)):
            hits[name] += lo <= TRUE_TAR <= hi
            width[name].append(hi - lo)
        hits["subject_eer"] += sub.eer_ci[0] <= TRUE_EER <= sub.eer_ci[1]
    return {"subjects": n_subjects, "data_sets": reps,
            **{f"coverage_{k}": v / reps for k, v in hits.items()},
            **{f"mean_width_{k}": float(np.mean(v)) for k, v in width.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 data sets per size instead of 400")
    ap.add_argument("--reps", type=int, default=None, help="data sets per number of subjects")
    ap.add_argument("--boot", type=int, default=200, help="bootstrap replicates per interval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "interval_coverage.json")
    args = ap.parse_args()
    reps = args.reps or (60 if args.quick else 400)
    start = time.perf_counter()
    rows = []
    print(f"nominal 95%; TAR at FAR {FAR} (true {TRUE_TAR:.4f}), EER (true {TRUE_EER:.4f}); {reps} data sets each")
    print(f"{'subjects':>8} {'subject boot TAR':>17} {'subject boot EER':>17} {'pair boot TAR':>14} {'Wilson TAR':>11}")
    for k, n in enumerate(SIZES):
        row = coverage(n, reps, args.boot, args.seed + k)
        rows.append(row)
        print(f"{n:>8} {row['coverage_subject_tar']:>17.3f} {row['coverage_subject_eer']:>17.3f} "
              f"{row['coverage_pair_tar']:>14.3f} {row['coverage_wilson_tar']:>11.3f}")
    doc = {"benchmark": "interval_coverage", "nominal": 0.95, "far": FAR, "true_tar": TRUE_TAR, "true_eer": TRUE_EER,
           "model": {"sd_subject_genuine": SD_U, "sd_subject_impostor": SD_V, "sd_noise": SD_E, "mu": MU,
                     "genuine_per_subject": 6, "impostor_per_subject_pair": 3},
           "n_boot": args.boot, "min_subjects_in_use": MIN_SUBJECTS, "rows": rows,
           "seconds": round(time.perf_counter() - start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {args.out} ({doc['seconds']} s)")


if __name__ == "__main__":
    main()
