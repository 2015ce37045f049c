"""Bootstrap over subjects for TAR at FAR and EER, and the paired test between two runs.

Comparisons that share a subject are not independent, so resampling pairs understates the
uncertainty. Here a replicate draws the *subjects* (identities) with replacement; a subject
drawn ``c`` times contributes its genuine pairs ``c`` times and an impostor pair between
subjects ``s`` and ``u`` counts ``c_s * c_u`` times (the two-way "subsets" bootstrap of Bolle
et al.). Nothing is copied: each class is sorted once and a replicate is integer weights, a
reverse cumulative sum and a few ``searchsorted`` calls, O(n) per replicate.

With unit weights the weighted rules here reproduce :func:`~verikit.evaluate.metrics.tar_at_far`
and :func:`~verikit.evaluate.metrics.eer` exactly (same threshold rule, same tie handling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from verikit.errors import DataError

from .metrics import UNSCORED, _lowest_scored, _max_accepted, _scores

__all__ = ["MIN_SUBJECTS", "WeightedScores", "BootstrapResult", "PairedTest", "subject_bootstrap", "pair_bootstrap",
           "paired_bootstrap"]

#: Fewest subjects a subject bootstrap is run on. Below it the resampled sets are too few and too
#: alike (one subject: every replicate is the data itself, a zero-width interval) and the interval
#: falls back to the pair level, labelled as such. The value comes from the coverage simulation in
#: benchmarks/bench_interval_coverage.py (results/interval_coverage.json).
MIN_SUBJECTS = 10


class WeightedScores:
    """Genuine/impostor scores with their subjects, sorted once for repeated weighted metrics.

    ``genuine_subject[k]`` is the subject of genuine score ``k``; ``impostor_subjects`` is a pair
    ``(subject_a, subject_b)`` of arrays for the impostor scores. Subjects are integer codes.

    >>> w = WeightedScores([0.9, 0.8, 0.5, 0.2], [0], [0.1, 0.2, 0.3, 0.4], ([0], [1]))
    Traceback (most recent call last):
    ...
    verikit.errors.DataError: genuine_subject has 1 entries for 4 genuine scores
    """

    def __init__(self, genuine: Any, genuine_subject: Any, impostor: Any, impostor_subjects: Any) -> None:
        g = _scores(genuine, "genuine", unscored=True)
        i = _scores(impostor, "impostor", unscored=True)
        sg = np.asarray(genuine_subject, np.int64)
        sa, sb = (np.asarray(x, np.int64) for x in impostor_subjects)
        if sg.shape != g.shape:
            raise DataError(f"genuine_subject has {sg.size} entries for {g.size} genuine scores")
        if sa.shape != i.shape or sb.shape != i.shape:
            raise DataError(f"impostor_subjects must have {i.size} entries each")
        if min(sg.min(), sa.min(), sb.min()) < 0:
            raise DataError("subject codes must be non-negative integers")
        og, oi = np.argsort(g, kind="stable"), np.argsort(i, kind="stable")
        self.g, self.i = g[og], i[oi]
        self.order_g, self.order_i = og, oi  # input position of each sorted score (pair-level paired draws)
        self.sg, self.sa, self.sb = sg[og], sa[oi], sb[oi]
        self.n_subjects = int(max(sg.max(), sa.max(), sb.max())) + 1
        # Unscored comparisons (failures to acquire) are never accepted: no threshold below this.
        self.floor = _lowest_scored(self.g, self.i)
        merged = np.unique(np.concatenate([self.g, self.i]))
        merged = merged[merged != UNSCORED]
        self.values = merged
        self._idx_g = np.searchsorted(self.g, merged, side="left")
        self._idx_i = np.searchsorted(self.i, merged, side="left")

    def weights(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer weights of each sorted genuine / impostor score for subject draw ``counts``."""
        return counts[self.sg], counts[self.sa] * counts[self.sb]

    @staticmethod
    def _revcum(w: np.ndarray) -> np.ndarray:
        out = np.zeros(w.size + 1, np.int64)
        out[:-1] = np.cumsum(w[::-1])[::-1]
        return out  # out[p] = total weight of sorted entries p..end

    def thresholds_at_far(self, fars: Sequence[float], wi: np.ndarray) -> np.ndarray:
        """Lowest threshold whose weighted FMR is ``<= far``, per far (``threshold_at_fmr``'s rule)."""
        rev = self._revcum(wi)
        total = int(rev[0])
        kind = self.i.dtype.type
        out = np.empty(len(fars))
        for j, far in enumerate(fars):
            allowed = _max_accepted(total, far)
            p = int(np.searchsorted(-rev, -allowed, side="left"))  # first p with rev[p] <= allowed
            if p == 0:  # everything may be accepted: the lowest impostor score that carries weight
                out[j] = float(self.i[int(np.argmax(wi > 0))])
            else:  # rev[p - 1] > allowed >= rev[p], so entry p - 1 carries weight
                out[j] = float(np.nextafter(kind(self.i[p - 1]), kind(np.inf)))
        return np.maximum(out, self.floor)

    def tar_at(self, thresholds: np.ndarray, wg: np.ndarray) -> np.ndarray:
        rev = self._revcum(wg)
        return rev[np.searchsorted(self.g, thresholds, side="left")] / rev[0]

    def rates_at(self, thresholds: Sequence[float], wg: np.ndarray, wi: np.ndarray) -> np.ndarray:
        """Weighted ``(FMR, FNMR)`` at each fixed threshold: shape ``(len(thresholds), 2)``."""
        t = np.asarray(thresholds, np.float64)
        rg, ri = self._revcum(wg), self._revcum(wi)
        fmr = ri[np.searchsorted(self.i, t, side="left")] / ri[0]
        fnmr = 1.0 - rg[np.searchsorted(self.g, t, side="left")] / rg[0]
        return np.stack([fmr, fnmr], axis=1)

    def eer(self, wg: np.ndarray, wi: np.ndarray) -> tuple[float, float]:
        """Weighted EER at the nearest observed operating point (``metrics.eer``'s rule)."""
        rg, ri = self._revcum(wg), self._revcum(wi)
        n_g, n_i = int(rg[0]), int(ri[0])
        acc_g, acc_i = rg[self._idx_g], ri[self._idx_i]
        a = acc_i * n_g
        b = (n_g - acc_g) * n_i
        gap = np.abs(a - b)
        cand = np.flatnonzero(gap == gap.min())
        total = (a + b)[cand]
        best = cand[np.flatnonzero(total == total.min())[-1]]
        return float((acc_i[best] / n_i + (n_g - acc_g[best]) / n_g) / 2), float(self.values[best])

    def replicate(self, counts: np.ndarray, fars: Sequence[float]) -> tuple[np.ndarray, float] | None:
        """``(tar at each far, eer)`` for one subject draw; ``None`` if a class got no weight."""
        rep = self.weighted(*self.weights(counts), fars)
        return None if rep is None else (rep[0], rep[1])

    def weighted(self, wg: np.ndarray, wi: np.ndarray, fars: Sequence[float], at: Sequence[float] = ()
                 ) -> tuple[np.ndarray, float, np.ndarray] | None:
        """``(tar at each far, eer, (fmr, fnmr) at each fixed threshold in at)`` for explicit
        genuine / impostor weights; ``None`` if a class got no weight."""
        if not wg.any() or not wi.any():
            return None
        tar = self.tar_at(self.thresholds_at_far(fars, wi), wg)
        return tar, self.eer(wg, wi)[0], self.rates_at(at, wg, wi)


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile intervals from ``n_valid`` of ``n_boot`` subject replicates."""

    fars: tuple[float, ...]
    tar_ci: tuple[tuple[float, float], ...]
    eer_ci: tuple[float, float]
    n_boot: int
    n_valid: int
    seed: int
    confidence: float
    tar_samples: np.ndarray  # (n_valid, len(fars))
    eer_samples: np.ndarray  # (n_valid,)
    unit: str = "subject"    # what a replicate resamples: "subject" or "pair" (comparisons as independent)
    at: tuple[float, ...] = ()                        # fixed thresholds
    fmr_ci: tuple[tuple[float, float], ...] = ()      # one per fixed threshold
    fnmr_ci: tuple[tuple[float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "n_boot": self.n_boot, "n_valid": self.n_valid, "seed": self.seed,
                "confidence": self.confidence, "method": "percentile"}


def _percentile_ci(x: np.ndarray, confidence: float) -> tuple[float, float]:
    if x.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.quantile(x, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return float(lo), float(hi)


def _draws(n_subjects: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n_subjects, n_subjects), minlength=n_subjects)
                     for _ in range(n_boot)])


def subject_bootstrap(scores: WeightedScores, fars: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                      confidence: float = 0.95, at: Sequence[float] = ()) -> BootstrapResult:
    """Percentile bootstrap intervals over subjects for TAR at each FAR and for EER (and for FMR and
    FNMR at each fixed threshold in ``at``).

    >>> w = WeightedScores([0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3], [0.1, 0.65, 0.3], ([0, 1, 2], [1, 2, 3]))
    >>> r = subject_bootstrap(w, [0.5], n_boot=50, seed=1)
    >>> r.n_valid <= 50 and 0 <= r.tar_ci[0][0] <= r.tar_ci[0][1] <= 1
    True
    """
    if n_boot < 1:
        raise DataError(f"n_boot must be >= 1, got {n_boot}")
    return _collect((scores.weighted(*scores.weights(counts), fars, at)
                     for counts in _draws(scores.n_subjects, n_boot, seed)),
                    fars, at, n_boot, seed, confidence, "subject")


def _collect(replicates: Any, fars: Sequence[float], at: Sequence[float], n_boot: int, seed: int,
             confidence: float, unit: str) -> BootstrapResult:
    tars, eers, rates = [], [], []
    for rep in replicates:
        if rep is not None:
            tars.append(rep[0])
            eers.append(rep[1])
            rates.append(rep[2])
    t = np.array(tars).reshape(-1, len(fars))
    e = np.array(eers)
    r = np.array(rates, dtype=np.float64).reshape(len(rates), len(at), 2)
    return BootstrapResult(tuple(float(f) for f in fars),
                           tuple(_percentile_ci(t[:, j], confidence) for j in range(len(fars))),
                           _percentile_ci(e, confidence), n_boot, int(e.size), seed, confidence, t, e, unit,
                           tuple(float(x) for x in at),
                           tuple(_percentile_ci(r[:, j, 0], confidence) for j in range(len(at))),
                           tuple(_percentile_ci(r[:, j, 1], confidence) for j in range(len(at))))


def pair_bootstrap(scores: WeightedScores, fars: Sequence[float], *, n_boot: int = 1000, seed: int = 0,
                   confidence: float = 0.95, at: Sequence[float] = ()) -> BootstrapResult:
    """Percentile intervals from resampling the comparisons themselves (each class on its own).

    This treats comparisons as independent, which comparisons that share a person are not, so
    its intervals are too narrow wherever subjects differ; it is the fallback when the subjects
    are unknown or too few for :func:`subject_bootstrap` (see :data:`MIN_SUBJECTS`).

    >>> w = WeightedScores([0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], [0.1, 0.65, 0.3], ([0, 0, 0], [0, 0, 0]))
    >>> r = pair_bootstrap(w, [0.5], n_boot=50, seed=1)
    >>> r.unit, r.n_valid, r.tar_ci[0][0] < r.tar_ci[0][1]
    ('pair', 50, True)
    """
    if n_boot < 1:
        raise DataError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n_g, n_i = scores.g.size, scores.i.size

    def replicates() -> Any:
        for _ in range(n_boot):
            wg = np.bincount(rng.integers(0, n_g, n_g), minlength=n_g)
            wi = np.bincount(rng.integers(0, n_i, n_i), minlength=n_i)
            yield scores.weighted(wg, wi, fars, at)

    return _collect(replicates(), fars, at, n_boot, seed, confidence, "pair")


@dataclass(frozen=True)
class PairedTest:
    """Difference ``TAR_a - TAR_b`` at one FAR with a paired subject-bootstrap interval and a
    two-sided bootstrap p-value (twice the smaller tail of the replicate differences around 0)."""

    far: float
    tar_a: float
    tar_b: float
    difference: float
    ci: tuple[float, float]
    p_value: float
    n_boot: int
    n_valid: int
    seed: int
    unit: str = "subject"

    def to_dict(self) -> dict[str, Any]:
        return {"far": self.far, "tar_a": self.tar_a, "tar_b": self.tar_b, "difference": self.difference,
                "ci": list(self.ci), "p_value": self.p_value, "n_boot": self.n_boot, "n_valid": self.n_valid,
                "seed": self.seed, "unit": self.unit}


def _pair_draws(a: WeightedScores, b: WeightedScores, n_boot: int, seed: int) -> Any:
    """The same comparisons drawn for both runs: ``(wg_a, wi_a, wg_b, wi_b)`` per replicate."""
    rng = np.random.default_rng(seed)
    n_g, n_i = a.g.size, a.i.size
    for _ in range(n_boot):
        wg = np.bincount(rng.integers(0, n_g, n_g), minlength=n_g)
        wi = np.bincount(rng.integers(0, n_i, n_i), minlength=n_i)
        yield wg[a.order_g], wi[a.order_i], wg[b.order_g], wi[b.order_i]


def paired_bootstrap(a: WeightedScores, b: WeightedScores, far: float, *, n_boot: int = 1000, seed: int = 0,
                     confidence: float = 0.95, unit: str = "subject") -> PairedTest:
    """Paired bootstrap of ``TAR_a - TAR_b`` at ``far``: the same draw for both runs.

    Both score sets must come from the same protocol (same subjects, coded the same way). With
    ``unit="subject"`` a replicate draws subjects; with ``unit="pair"`` it draws comparisons (the
    fallback when subjects are too few or unknown), which needs both runs to hold the same
    comparisons in the same order.

    >>> a = WeightedScores([0.9, 0.8, 0.7, 0.6], [0, 1, 2, 3], [0.1, 0.65, 0.3], ([0, 1, 2], [1, 2, 3]))
    >>> paired_bootstrap(a, a, 0.5, n_boot=20).difference, paired_bootstrap(a, a, 0.5, n_boot=20, unit="pair").unit
    (0.0, 'pair')
    """
    if a.n_subjects != b.n_subjects:
        raise DataError(f"runs have different subjects ({a.n_subjects} vs {b.n_subjects}): not the same protocol")
    if unit not in ("subject", "pair"):
        raise DataError(f"bootstrap unit must be 'subject' or 'pair', got {unit!r}")
    if unit == "pair" and (a.g.size, a.i.size) != (b.g.size, b.i.size):
        raise DataError("a pair-level paired test needs both runs to hold the same comparisons")
    ones = np.ones(a.n_subjects, np.int64)
    tar_a = a.replicate(ones, [far])[0][0]
    tar_b = b.replicate(ones, [far])[0][0]
    diffs = []
    if unit == "subject":
        draws = ((*a.weights(c), *b.weights(c)) for c in _draws(a.n_subjects, n_boot, seed))
    else:
        draws = _pair_draws(a, b, n_boot, seed)
    for wga, wia, wgb, wib in draws:
        ra, rb = a.weighted(wga, wia, [far]), b.weighted(wgb, wib, [far])
        if ra is not None and rb is not None:
            diffs.append(ra[0][0] - rb[0][0])
    d = np.array(diffs)
    p = min(1.0, 2 * min(np.mean(d <= 0), np.mean(d >= 0))) if d.size else float("nan")
    return PairedTest(float(far), float(tar_a), float(tar_b), float(tar_a - tar_b), _percentile_ci(d, confidence),
                      float(p), n_boot, int(d.size), seed, unit)
