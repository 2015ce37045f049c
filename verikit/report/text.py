"""A run's caveats in plain words: what happened to its inputs (skipped files, failures to
acquire) and what a fixed threshold measured. The stdout table and the HTML page print the same
lines next to the rates, so no report shows rates without saying what they leave out."""

from __future__ import annotations

from typing import Any

__all__ = ["format_interval", "inputs_lines", "operating_point_line"]


def format_interval(ci: Any, scale: float = 1.0, digits: int = 4) -> str:
    """``[lo, hi]`` (times ``scale``) or ``n/a``."""
    return "n/a" if not ci else f"[{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"


def inputs_lines(result: dict[str, Any]) -> list[str]:
    """How many inputs there were, how many were skipped and why, and the failures to acquire."""
    lines = []
    sk, acq, emb = result.get("skipped") or {}, result.get("acquisition") or {}, result.get("embedding") or {}
    files = sk.get("files") or []
    reasons = sk.get("reasons") or {"unreadable": len(files)}
    line = f"inputs: {emb.get('files', 0):,} file(s), {emb.get('from_cache', 0):,} from the cache"
    for why, n in sorted(reasons.items()):
        if n:
            line += f"; {n:,} skipped ({why})"
    if sk.get("pairs"):
        line += f"; {sk['pairs']:,} pair(s) dropped with them"
    if sk.get("probes"):
        line += f"; {sk['probes']:,} probe(s) and {sk.get('gallery', 0):,} gallery image(s) dropped with them"
    lines.append(line)
    if acq.get("detector"):
        rate = (f"{100 * acq['fta_rate']:.2f}% {format_interval(acq.get('fta_interval'), 100, 2)}"
                if acq.get("fta_rate") is not None else "n/a")
        line = (f"failure to acquire (no face found): {acq['no_face']:,} of {acq['files']:,} image(s), "
                f"FTA rate {rate}")
        if acq["no_face"]:
            line += f"; scored as {acq['scored_as']}"
            pairs = acq.get("pairs")
            if pairs:
                line += f" ({pairs['genuine']:,} genuine / {pairs['impostor']:,} impostor pair(s))"
            if "probes" in acq:
                line += f" ({acq['gallery']:,} gallery image(s), {acq['probes']:,} probe(s))"
        lines.append(line)
    return lines


def operating_point_line(p: dict[str, Any]) -> str:
    """FMR and FNMR measured at one fixed threshold, with their intervals and caveats."""
    what = "--threshold" if p["source"] == "--threshold" else f"calibration {p.get('path')}"
    boot_fmr, boot_fnmr = p.get("fmr_bootstrap_ci"), p.get("fnmr_bootstrap_ci")
    line = (f"at threshold {p['threshold']:.5f} ({what}): FMR {p['fmr']:.4g} "
            f"({p['impostor_accepted']:,}/{p['n_impostor']:,}) Wilson {format_interval(p['fmr_interval'])}"
            + (f", subject bootstrap {format_interval(boot_fmr)}" if boot_fmr else "")
            + f"; FNMR {p['fnmr']:.4g} ({p['genuine_rejected']:,}/{p['n_genuine']:,}) Wilson "
            f"{format_interval(p['fnmr_interval'])}"
            + (f", subject bootstrap {format_interval(boot_fnmr)}" if boot_fnmr else ""))
    if not p["fmr_supported"]:
        line += f"; only {p['impostor_accepted']} false match(es): the FMR is a rough estimate (rule of 30)"
    if p.get("target_fmr") is not None:
        line += (f"; calibrated for FMR {p['target_fmr']:g}, which is "
                 f"{'inside' if p['target_fmr_in_interval'] else 'OUTSIDE'} the interval")
    if p.get("pipeline_matches") is False:
        line += "; the calibration's pipeline differs from this benchmark's"
    return line
