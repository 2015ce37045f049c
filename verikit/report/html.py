"""The report page: one self-contained HTML file (inline CSS, figures as base64 PNG, no script,
no external asset). Every value from a result is escaped. A rate the impostor count cannot
support is shown as a dash with the reason, never as a measured number; every run says, next to
its rates, how many inputs were skipped or failed to acquire and how they were counted
(:mod:`verikit.report.text`), and which kind of interval it shows."""

from __future__ import annotations

import base64
import html
import math
from typing import Any, Mapping, Sequence

from .text import inputs_lines, operating_point_line

__all__ = ["render_page"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #ccc;padding:.25rem .55rem;text-align:right} th{background:#f3f3f3}
td.l,th.l{text-align:left} tr.unsupported td{color:#999}
.note{color:#555;font-size:.85rem} .fig{margin:1rem 0} .fig img{max-width:100%;border:1px solid #eee}
code{background:#f5f5f5;padding:0 .2rem}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}%"


def _ci(ci: Sequence[float] | None, digits: int = 2) -> str:
    return "n/a" if not ci else f"[{_pct(ci[0], digits)}, {_pct(ci[1], digits)}]"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], row_class: Sequence[str] | None = None,
           left: int = 1) -> str:
    def cell(tag: str, j: int, v: str) -> str:
        cls = ' class="l"' if j < left else ""
        return f"<{tag}{cls}>{v}</{tag}>"

    out = ["<table><thead><tr>", *(cell("th", j, _e(h)) for j, h in enumerate(head)), "</tr></thead><tbody>"]
    for k, r in enumerate(rows):
        cls = f' class="{row_class[k]}"' if row_class and row_class[k] else ""
        out.append(f"<tr{cls}>" + "".join(cell("td", j, v) for j, v in enumerate(r)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _inputs_cell(r: dict[str, Any]) -> str:
    """Skipped inputs and failures to acquire, in a few words for the summary table."""
    sk, acq = r.get("skipped") or {}, r.get("acquisition") or {}
    parts = [f"{len(sk.get('files') or []):,} skipped"]
    if sk.get("pairs"):
        parts.append(f"{sk['pairs']:,} pairs dropped")
    if acq.get("detector"):
        parts.append(f"FTA {_pct(acq.get('fta_rate'))} ({acq.get('no_face', 0):,} images, {acq.get('on_no_face')})")
    return _e("; ".join(parts))


def _subjects(v: dict[str, Any]) -> str:
    return "unknown" if v.get("subjects_note") else _e(v["n_subjects"])


def _unit(v: dict[str, Any]) -> str:
    return (v.get("bootstrap") or {}).get("unit", "subject")


def _summary(runs: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        v, p = r.get("verification"), r["protocol"]
        folds = r.get("folds")
        rows.append([_e(r["name"]), f"<code>{_e(r['model']['fingerprint'][:12])}</code>", _e(p.get("kind", "?")),
                     _e(f"{v['n_genuine']:,} / {v['n_impostor']:,}") if v else "n/a",
                     _subjects(v) if v else "n/a",
                     _inputs_cell(r),
                     f"{v['auc']:.4f}" if v else "n/a",
                     (f"{_pct(v['eer']['value'])} {_ci(v['eer']['bootstrap_ci'])}"
                      + (f" ({_e(_unit(v))} bootstrap)" if v['eer']['bootstrap_ci'] else "")) if v else "n/a",
                     (f"{_pct(folds['mean'])} &plusmn; {_pct(folds['std_error'])}") if folds else "&ndash;",
                     _e((r.get("normalization") or {}).get("method", "none"))])
    return _table(["run", "model", "protocol", "genuine / impostor pairs", "subjects", "inputs", "AUC",
                   "EER [95%]", "k-fold accuracy ± SE", "score norm"], rows)


def _notes(lines: Sequence[str]) -> str:
    return "".join(f"<p class='note'>{_e(line)}</p>" for line in lines)


def _tar_table(run: dict[str, Any]) -> str:
    v = run["verification"]
    rows, classes = [], []
    for t in v["tar_at_far"]:
        if t["supported"]:
            cells = [f"{t['far']:g}", f"{t['threshold']:.5f}", _pct(t["tar"]), _ci(t["tar_interval"]),
                     _ci(t["tar_bootstrap_ci"]), f"{t['measured_far']:.3g}", "yes"]
        else:
            need = math.ceil(30 / t["far"])
            cells = [f"{t['far']:g}", "&ndash;", "&ndash;", "&ndash;", "&ndash;", "&ndash;",
                     f"no: needs &ge; {need:,} impostor pairs"]
        rows.append(cells)
        classes.append("" if t["supported"] else "unsupported")
    head = ["FAR", "threshold", "TAR", "Wilson 95%", "subject bootstrap 95%", "measured FAR", "supported"]
    boot = v.get("bootstrap") or {}
    intervals = v.get("interval_note") or "TAR intervals: Wilson (pairs as independent) and a subject bootstrap."
    if boot:
        intervals += f" Bootstrap: {boot.get('n_boot', 0)} replicates over {_unit(v)}s, seed {boot.get('seed')}."
    unscored = v.get("unscored") or {}
    out = (f"<h3>{_e(run['name'])}</h3>" + _notes(inputs_lines(run)) + _table(head, rows, classes) +
           f"<p class='note'>{v['n_impostor']:,} impostor pairs support FAR &ge; {v['min_supported_far']:.2g} "
           f"(rule of 30)." + (f" {unscored['genuine']:,} genuine and {unscored['impostor']:,} impostor pairs "
                                "could not be scored (no face) and count as non-matches."
                                if unscored.get("genuine") or unscored.get("impostor") else "") + "</p>"
           + _notes([intervals]))
    points = v.get("at_threshold") or []
    if points:
        out += "<h3>At fixed thresholds</h3>" + _notes([operating_point_line(p) for p in points])
    return out


def _folds(run: dict[str, Any]) -> str:
    f = run["folds"]
    rows = [[str(k + 1), "&infin;" if math.isinf(t) else f"{t:.5f}", _pct(a)]
            for k, (t, a) in enumerate(zip(f["threshold"], f["accuracy"]))]
    return (f"<h3>{_e(run['name'])}: {f['folds']}-fold accuracy {_pct(f['mean'])} &plusmn; {_pct(f['std_error'])} "
            f"(standard error)</h3>" + _table(["fold", "threshold (fitted on the other folds)", "accuracy"], rows))


def _identification(run: dict[str, Any]) -> str:
    i = run["identification"]
    parts = [f"<h3>{_e(run['name'])}</h3>", _notes(inputs_lines(run)), f"<p>{i['n_gallery_identities']} gallery identities "
             f"({i['n_gallery_templates']} templates), {i['n_mated']} mated and {i['n_non_mated']} non-mated probes."]
    if "rank1" in i:
        parts.append(f" Rank-1: {_pct(i['rank1'])} {_ci(i['rank1_interval'])} (Wilson 95%).")
        if "map" in i:
            parts.append(f" mAP over gallery templates: {_pct(i['map'])}.")
    parts.append("</p>")
    if i.get("dir_at_fpir"):
        rows = [[f"{d['fpir']:g}", f"{d['threshold']:.5f}", _pct(d["dir"]), _pct(d["measured_fpir"]),
                 "yes" if d["supported"] else "no"] for d in i["dir_at_fpir"]]
        parts.append(_table(["FPIR", "threshold", "DIR", "measured FPIR", "supported"], rows))
    return "".join(parts)


def _comparisons(comps: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in comps:
        if c.get("skipped"):
            rows.append([_e(f"{c['a']} vs {c['b']}"), f"{c['far']:g}", "&ndash;", "&ndash;", "&ndash;",
                         "&ndash;", _e(c["skipped"])])
        else:
            rows.append([_e(f"{c['a']} vs {c['b']}"), f"{c['far']:g}", _pct(c["tar_a"]), _pct(c["tar_b"]),
                         f"{100 * c['difference']:+.2f} pts [{100 * c['ci'][0]:+.2f}, {100 * c['ci'][1]:+.2f}]",
                         f"{c['p_value']:.3g}",
                         _e(f"pair-level draws: {c['unit_reason']}") if c.get("unit") == "pair" else
                         "subject-level draws"])
    return _table(["runs (a vs b)", "FAR", "TAR a", "TAR b", "difference [95%]", "p (two-sided)", "note"], rows)


def _figure(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<div class='fig'><img alt='{_e(title)}' src='data:image/png;base64,{data}'></div>"


def render_page(runs: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]], figures: Mapping[str, bytes],
                far: float, title: str = "verikit benchmark report") -> str:
    """The whole page as a string. ``figures`` maps a caption to PNG bytes, in display order."""
    verif = [r for r in runs if r.get("verification")]
    body = [f"<h1>{_e(title)}</h1>",
            f"<p class='note'>Scores are similarities; a comparison matches when score &ge; threshold. "
            f"FAR = FMR, TAR = 1 &minus; FNMR (ISO/IEC 19795-1). Operating point for comparisons: FAR {far:g}.</p>",
            "<h2>Summary</h2>", _summary(runs)]
    if verif:
        body.append("<h2>TAR at FAR</h2>")
        body.extend(_tar_table(r) for r in verif)
    if any(r.get("folds") for r in runs):
        body.append("<h2>k-fold protocol</h2>")
        body.extend(_folds(r) for r in runs if r.get("folds"))
    if any(r.get("identification") for r in runs):
        body.append("<h2>Identification</h2>")
        body.extend(_identification(r) for r in runs if r.get("identification"))
    if comparisons:
        body.append(f"<h2>Paired comparison at FAR {far:g}</h2><p class='note'>Each run against the first; the same "
                    "subjects are drawn for both runs in every bootstrap replicate.</p>")
        body.append(_comparisons(comparisons))
    if figures:
        body.append("<h2>Figures</h2>")
        body.extend(_figure(k, v) for k, v in figures.items())
    prov = [[_e(r["name"]), _e(r.get("created_at", "")), _e(r["protocol"].get("source", "")),
             _e(r["protocol"].get("sha256", ""))[:16], _e(r["protocol"].get("seed") if r["protocol"].get("seed") is not None else "–")] for r in runs]
    body.append("<h2>Provenance</h2>" + _table(["run", "created", "protocol source", "protocol sha256", "seed"], prov,
                                                left=5))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")
