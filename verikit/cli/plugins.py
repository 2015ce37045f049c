"""``verikit plugins``: what backbones, detectors, segmenters and index backends are installed."""

from __future__ import annotations

from .common import FormatOpt, OutputFormat, emit


def plugins(fmt: FormatOpt = OutputFormat.table) -> None:
    """List installed plugins by kind, with the distribution that provides each."""
    from ..registry import REGISTRIES

    rows = []
    for kind, reg in REGISTRIES.items():
        for p in reg.infos():
            rows.append({"kind": kind, "name": p.name, "target": p.target, "distribution": p.distribution,
                         "version": p.version})
    if fmt is OutputFormat.json:
        return emit(rows, fmt)
    from rich.table import Table
    t = Table("kind", "name", "distribution", "version", "target")
    for r in rows:
        t.add_row(r["kind"], r["name"], r["distribution"], r["version"], r["target"])
    emit(None, fmt, t)
