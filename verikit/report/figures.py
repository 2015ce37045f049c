"""Report figures drawn from result dicts (never from a model): ROC with a log FMR axis, DET on
normal-deviate (probit) axes, genuine/impostor score histograms with the threshold, and CMC.

Every function takes a list of ``(name, result)`` and returns a matplotlib ``Figure`` (Agg
backend, no display needed); :func:`save` writes it as PNG and SVG.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["roc_figure", "det_figure", "histogram_figure", "cmc_figure", "save", "png_bytes"]

Runs = Sequence[tuple[str, dict[str, Any]]]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _operating_row(verification: dict[str, Any], far: float) -> dict[str, Any] | None:
    rows = [r for r in verification["tar_at_far"] if math.isclose(r["far"], far, rel_tol=1e-9)]
    return rows[0] if rows else None


def roc_figure(runs: Runs) -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    lowest = 1.0
    for name, res in runs:
        v = res["verification"]
        fmr, tmr = np.array(v["roc"]["fmr"]), np.array(v["roc"]["tmr"])
        keep = fmr > 0
        lowest = min(lowest, fmr[keep].min()) if keep.any() else lowest
        ax.step(fmr[keep], tmr[keep], where="post", label=f"{name} (EER {100 * v['eer']['value']:.2f}%)")
        floor = v.get("min_supported_far")
        if floor and floor < 1:
            ax.axvline(floor, color="0.6", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlim(max(lowest / 2, 1e-7), 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false match rate (FMR), log scale")
    ax.set_ylabel("true match rate (TAR = 1 - FNMR)")
    ax.set_title("ROC  (dotted: lowest FMR the impostor count supports)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def det_figure(runs: Runs) -> Any:
    from verikit.evaluate.metrics import probit

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.0), layout="constrained")
    ticks = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    eps = 1e-6
    for name, res in runs:
        v = res["verification"]
        fmr = np.array(v["roc"]["fmr"])
        fnmr = 1 - np.array(v["roc"]["tmr"])
        keep = (fmr > 0) & (fnmr > 0)
        ax.plot(probit(fmr[keep], eps), probit(fnmr[keep], eps), drawstyle="steps-post", label=name)
        e = v["eer"]["value"]
        if e > 0:
            ax.plot([probit(e, eps)], [probit(e, eps)], "o", ms=4, color=ax.lines[-1].get_color())
    lim = probit(np.array([ticks[0], ticks[-1]]), eps)
    ax.plot(lim, lim, color="0.7", lw=0.8, ls="--")
    labels = [f"{100 * t:g}%" for t in ticks]
    ax.set_xticks(probit(ticks, eps), labels, fontsize=7, rotation=45)
    ax.set_yticks(probit(ticks, eps), labels, fontsize=7)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_xlabel("false match rate (normal-deviate scale)")
    ax.set_ylabel("false non-match rate (normal-deviate scale)")
    ax.set_title("DET  (dot: EER)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def histogram_figure(runs: Runs, far: float) -> Any:
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 1, figsize=(6.4, 2.6 * len(runs)), layout="constrained", squeeze=False)
    for ax, (name, res) in zip(axes[:, 0], runs):
        h = res["verification"]["histogram"]
        edges = np.array(h["edges"])
        for key, colour in (("impostor", "tab:red"), ("genuine", "tab:green")):
            counts = np.array(h[key], float)
            density = counts / max(counts.sum(), 1) / np.diff(edges)
            ax.stairs(density, edges, fill=True, alpha=0.35, color=colour, label=f"{key} ({int(counts.sum())})")
        row = _operating_row(res["verification"], far)
        if row is not None:
            ax.axvline(row["threshold"], color="k", lw=1.2,
                       label=f"threshold at FAR {far:g}: {row['threshold']:.4f}")
        ax.axvline(res["verification"]["eer"]["threshold"], color="0.4", lw=1, ls="--", label="EER threshold")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("score (similarity; match when score >= threshold)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def cmc_figure(runs: Runs) -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    for name, res in runs:
        curve = res["identification"]["cmc"]
        ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.01)
    ax.set_title("CMC (closed set, mated probes)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def save(fig: Any, directory: Path, stem: str) -> bytes:
    """Write ``stem.png`` and ``stem.svg`` into ``directory``; return the PNG bytes and close the figure."""
    directory.mkdir(parents=True, exist_ok=True)
    data = png_bytes(fig)
    (directory / f"{stem}.png").write_bytes(data)
    fig.savefig(directory / f"{stem}.svg", format="svg")
    _plt().close(fig)
    return data
