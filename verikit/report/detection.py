"""The detection report: several detectors' results on one annotation set, side by side.

From the JSON documents ``verikit benchmark detection --format json`` prints (one per detector,
see docs/evaluation.md), :func:`write_detection_report` writes ``report.html`` (self-contained:
inline CSS, the figure as base64 PNG, every value escaped), ``report.json`` (the results, as given)
and ``figures/roc.png|svg``: the discrete ROC -- true positive rate against the total count of
false positives -- of every detector on one plot, FDDB's way of showing detectors.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

from verikit.evaluate.benchmark import SCHEMA_VERSION

from .html import _CSS, _e, _figure, _table

__all__ = ["detection_roc_figure", "write_detection_report"]


def _label(result: dict[str, Any]) -> str:
    return str(result.get("spec") or result.get("detector") or "?")


def _rate(result: dict[str, Any]) -> str:
    at = result.get("recall_at_fp")
    if not at:
        return "n/a"
    text = f"{at['recall']:.4f}"
    return text if at["reached"] else f"{text} (curve ends at {at['curve_ends_at_fp']:,} FP)"


def detection_roc_figure(results: Sequence[dict[str, Any]]) -> Any:
    """True positive rate against false positives, one line per result; a dotted line at the
    operating point (recall at N false positives)."""
    from .figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.8, 4.6), layout="constrained")
    at_fp, right = 0, 1
    for r in results:
        roc, at = r["roc"], r.get("recall_at_fp") or {}
        at_fp = max(at_fp, int(at.get("false_positives", 0)))
        fp = [0, *roc["false_positives"]]
        tpr = [0.0, *(t / roc["faces"] for t in roc["true_positives"])] if roc["faces"] else [0.0] * len(fp)
        right = max(right, fp[-1])
        ax.step(fp, tpr, where="post", label=f"{_label(r)} (TPR@{at.get('false_positives', '?')} FP "
                                               f"{at.get('recall', float('nan')):.3f}, AP {r['ap']:.3f})")
    if at_fp:
        ax.axvline(at_fp, color="0.6", lw=0.8, ls=":")
    ax.set_xlim(0, 1.03 * (min(right, 2 * at_fp) if at_fp else right))
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positives (total over the set)")
    ax.set_ylabel("true positive rate")
    ax.set_title("discrete ROC (dotted: the operating point)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def _summary(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        at = r.get("recall_at_fp") or {}
        speed = r["images"] / r["seconds"] if r.get("seconds") else math.nan
        rows.append([f"<code>{_e(_label(r))}</code>", _e(r["images"]), _e(r["ground_truth"]),
                     _e(f"TPR at {at.get('false_positives', '?')} FP: {_rate(r)}"), f"{r['ap']:.4f}",
                     _e(f"{r['true_positives']:,} / {r['false_positives']:,}"), f"{r['recall']:.4f}",
                     f"{speed:.2f}", _e(len(r.get("failures") or []))])
    return _table(["detector (spec and options)", "images", "faces", "recall at the operating point", "AP",
                   "TP / FP at its lowest score", "recall there", "images/s", "skipped"], rows)


def write_detection_report(results: Sequence[dict[str, Any]], out_dir: str | os.PathLike,
                           title: str = "verikit detection report") -> dict[str, Path]:
    """Render ``results`` (``benchmark detection`` JSON documents) into ``out_dir``; return the paths."""
    from .figures import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = save(detection_roc_figure(results), out / "figures", "roc")
    sets = sorted({str(r.get("annotations")) for r in results})
    scorings = sorted({str(r.get("scoring")) for r in results})
    body = [f"<h1>{_e(title)}</h1>",
            f"<p class='note'>Annotations: {_e(', '.join(sets))}. Scoring: {_e('; '.join(scorings))}. The ROC "
            "counts true positives against the total number of false positives as each detector's score "
            "threshold falls; it ends at the detector's own lowest score.</p>",
            "<h2>Summary</h2>", _summary(results), "<h2>ROC</h2>", _figure("discrete ROC", png)]
    if len(sets) > 1:
        body.insert(1, "<p class='note'><b>These results come from different annotation sets: they are not "
                       "comparable.</b></p>")
    prov = [[f"<code>{_e(_label(r))}</code>", _e(r.get("annotations", "")), _e(r.get("created_at", "")),
             f"{r.get('seconds', 0):.1f}"] for r in results]
    body.append("<h2>Provenance</h2>" + _table(["detector", "annotations", "created", "seconds detecting"], prov,
                                                left=3))
    doc = {"schema_version": SCHEMA_VERSION, "kind": "verikit.detection_report",
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": list(results),
           "figures": sorted(p.name for p in (out / "figures").glob("*"))}
    paths = {"json": out / "report.json", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["html"].write_text("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                             f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{_e(title)}"
                             f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
    return paths
