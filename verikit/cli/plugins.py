"""``verikit plugins``: what backbones, detectors, segmenters and index backends are installed.

Each plugin is imported to report its status ("ok", or the one-line reason it fails to import),
so one broken plugin shows up as a row instead of crashing the listing.
"""

from __future__ import annotations

from .common import FormatOpt, OutputFormat, emit


def plugins(fmt: FormatOpt = OutputFormat.table) -> None:
    """List installed plugins: kind, name, distribution, version and import status.

    VERIKIT_LOAD_PLUGINS=dist1,dist2 restricts loading to those distributions (the core's
    built-ins are always on).

    Example: verikit plugins --format json
    """
    from ..registry import REGISTRIES

    rows = [info.to_dict(status=reg.status(info.name)) for kind, reg in REGISTRIES.items() for info in reg.infos()]
    if fmt is OutputFormat.json:
        return emit(rows, fmt)
    from rich.table import Table
    from rich.text import Text

    t = Table("kind", "name", "distribution", "version", "status", "target")
    for r in rows:
        status = Text(r["status"], style="green" if r["status"] == "ok" else "red")
        t.add_row(r["kind"], r["name"], r["distribution"], r["version"], status, r["target"])
    emit(rows, fmt, t)
