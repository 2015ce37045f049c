"""Paired comparisons between runs: each run against the first (the baseline), TAR at one FAR,
with a bootstrap over subjects that draws the same subjects for both runs.

Two runs are comparable only when they scored the same comparisons (equal protocol digests)
and both kept their scores; otherwise the comparison is listed with the reason it was skipped.
With subjects too few or unknown for a subject bootstrap (the rule of
:func:`verikit.evaluate.evaluation.bootstrap_unit`), the paired draw is over comparisons instead,
and the entry's ``unit`` says so.
"""

from __future__ import annotations

from typing import Any, Sequence

from verikit.evaluate.bootstrap import WeightedScores, paired_bootstrap
from verikit.evaluate.evaluation import bootstrap_unit

from .results import Run

__all__ = ["compare_runs"]


def _weighted(run: Run) -> WeightedScores:
    s = run.scores
    return WeightedScores(s.genuine, s.genuine_subject, s.impostor, (s.impostor_subject_a, s.impostor_subject_b))


def compare_runs(runs: Sequence[Run], far: float, *, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One entry per run after the first: the paired test against the first, or why it was skipped."""
    out: list[dict[str, Any]] = []
    if len(runs) < 2:
        return out
    base = runs[0]
    for run in runs[1:]:
        entry: dict[str, Any] = {"a": run.name, "b": base.name, "far": far}
        if base.scores is None or run.scores is None:
            entry["skipped"] = "scores.npz missing for one of the runs"
        elif base.scores.protocol_sha256 != run.scores.protocol_sha256:
            entry["skipped"] = "the runs scored different comparisons (protocol digests differ)"
        elif base.result["verification"] is None or run.result["verification"] is None:
            entry["skipped"] = "no verification results"
        else:
            v = base.result["verification"]
            unit, reason = bootstrap_unit(int(v["n_subjects"]), v.get("subjects_note"))
            if unit == "pair" and (run.scores.genuine.size, run.scores.impostor.size) != \
                    (base.scores.genuine.size, base.scores.impostor.size):
                entry["skipped"] = (f"{reason}, and a pair-level paired test needs the same comparisons in both "
                                    "runs (they dropped different pairs)")
                out.append(entry)
                continue
            test = paired_bootstrap(_weighted(run), _weighted(base), far, n_boot=n_boot, seed=seed, unit=unit)
            entry.update(test.to_dict())
            entry["unit_reason"] = reason
            entry["skipped"] = None
        out.append(entry)
    return out
