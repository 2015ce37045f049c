"""Writing a report directory from runs: ``report.html``, ``report.json`` and ``figures/*.png|svg``.

``report.json`` holds every run's result (with ``source``), the paired comparisons, the
operating point and ``schema_version``; see docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

from verikit.evaluate.benchmark import SCHEMA_VERSION

from .compare import compare_runs
from .results import Run

__all__ = ["write_report"]


def _figures(runs: Sequence[Run], far: float, out: Path) -> dict[str, bytes]:
    from . import figures as F

    named = [(r.name, r.result) for r in runs]
    verif = [(n, r) for n, r in named if r.get("verification")]
    ident = [(n, r) for n, r in named if (r.get("identification") or {}).get("cmc")]
    figs: dict[str, bytes] = {}
    if verif:
        figs["ROC"] = F.save(F.roc_figure(verif), out, "roc")
        figs["DET"] = F.save(F.det_figure(verif), out, "det")
        figs["Score distributions"] = F.save(F.histogram_figure(verif, far), out, "scores")
    if ident:
        figs["CMC"] = F.save(F.cmc_figure(ident), out, "cmc")
    return figs


def write_report(runs: Sequence[Run], out_dir: str | os.PathLike, *, far: float = 1e-3, n_boot: int = 1000,
                 seed: int = 0, title: str = "verikit benchmark report") -> dict[str, Path]:
    """Render ``runs`` side by side into ``out_dir``; return the paths written."""
    from .html import render_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in runs]
    if len(set(names)) != len(names):  # make names unique so figures and tables stay readable
        runs = [Run({**r.result, "name": f"{r.name} ({k + 1})"}, r.source, r.scores) for k, r in enumerate(runs)]
    comparisons = compare_runs(runs, far, n_boot=n_boot, seed=seed)
    figs = _figures(runs, far, out / "figures")
    doc = {"schema_version": SCHEMA_VERSION, "kind": "verikit.report",
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "far": far,
           "runs": [{**r.result, "source": str(r.source) if r.source else None} for r in runs],
           "comparisons": comparisons, "figures": sorted(p.name for p in (out / "figures").glob("*"))}
    paths = {"json": out / "report.json", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(doc, indent=2) + "\n")
    paths["html"].write_text(render_page([r.result for r in runs], comparisons, figs, far, title))
    return paths
