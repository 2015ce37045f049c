"""``verikit report``: combine saved benchmark results into one side-by-side report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import FormatOpt, OutputFormat, emit, info


def report(
    results: Annotated[list[Path], typer.Argument(help="result.json files (or folders holding one) written by "
                                                       "`verikit benchmark --report`.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", show_default=False,
                                      help="Folder for report.html, report.json and figures/.")],
    far: Annotated[float, typer.Option("--far", min=1e-9, max=1.0,
                                       help="Operating point of the paired comparison and histogram threshold.")] = 1e-3,
    n_boot: Annotated[int, typer.Option("--bootstrap", min=1, help="Paired subject-bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "verikit benchmark report",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Put several runs side by side, each compared with the first by a paired bootstrap over
    subjects of the difference in TAR at --far (runs must have scored the same pairs).

    No model is needed: figures and tables come from the saved results.

    Example: verikit report runs/a/result.json runs/b/result.json --out report/
    """
    from ..report.build import write_report
    from ..report.results import load_run

    runs = [load_run(p) for p in results]
    paths = write_report(runs, out, far=far, n_boot=n_boot, seed=seed, title=title)
    info(f"report: {paths['html']}")
    import json

    comparisons = json.loads(paths["json"].read_text())["comparisons"]
    lines = [f"{paths['html']}"]
    for c in comparisons:
        if c.get("skipped"):
            lines.append(f"{c['a']} vs {c['b']}: not compared ({c['skipped']})")
        else:
            lines.append(f"{c['a']} vs {c['b']} at FAR {c['far']:g}: TAR {c['tar_a']:.4f} vs {c['tar_b']:.4f}, "
                         f"difference {c['difference']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}], p = {c['p_value']:.3g}")
    emit({"html": str(paths["html"]), "json": str(paths["json"]), "comparisons": comparisons}, fmt, "\n".join(lines))
