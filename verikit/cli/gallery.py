"""``verikit gallery``: inspect and curate a gallery (list, show, rename, remove, info, audit, rebuild)."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import DEFAULT_GALLERY, FormatOpt, GalleryOpt, OutputFormat, emit, info

app = typer.Typer(help="Inspect and curate a gallery of enrolled identities.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Identity name.", show_default=False)]


def _open(path):
    from ..index.gallery import Gallery
    return Gallery.open(path)


@app.command("list")
def list_(gallery: GalleryOpt = DEFAULT_GALLERY, fmt: FormatOpt = OutputFormat.table) -> None:
    """List enrolled identities and their template counts."""
    with _open(gallery) as g:
        people = g.identities()
    if fmt is OutputFormat.json:
        return emit([p.to_dict() for p in people], fmt)
    from rich.table import Table
    t = Table("identity", "templates", "metadata", "enrolled", title=f"{len(people)} identities in {gallery}")
    for p in people:
        d = p.to_dict()
        t.add_row(p.name, str(p.n_templates), ", ".join(f"{k}={v}" for k, v in p.metadata.items()), d["created_at"])
    emit(None, fmt, t)


@app.command()
def show(name: NameArg, gallery: GalleryOpt = DEFAULT_GALLERY, fmt: FormatOpt = OutputFormat.table) -> None:
    """Show one identity: templates, their source images, metadata."""
    with _open(gallery) as g:
        d = g.identity(name).to_dict()
    if fmt is OutputFormat.json:
        return emit(d, fmt)
    lines = [f"[bold]{d['name']}[/]  {d['templates']} template(s), enrolled {d['created_at']}"]
    lines += [f"  metadata: {d['metadata']}"] if d["metadata"] else []
    lines += [f"  - {s}" for s in d.get("sources", [])]
    emit(d, fmt, "\n".join(lines))


@app.command()
def remove(name: NameArg, gallery: GalleryOpt = DEFAULT_GALLERY,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False) -> None:
    """Remove an identity and delete its templates (for good: they are overwritten on disk)."""
    with _open(gallery) as g:
        n = g.identity(name).n_templates
        if not yes and not typer.confirm(f"delete {name!r} and its {n} template(s) from {gallery}?", err=True):
            raise typer.Exit(1)
        removed = g.remove(name)
    info(f"removed {name!r} ({removed} template(s))")


@app.command()
def rename(old: NameArg, new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
           gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Rename an identity (its templates stay)."""
    with _open(gallery) as g:
        g.rename(old, new)
    info(f"renamed {old!r} to {new!r}")


@app.command("set-meta")
def set_meta(name: NameArg, pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE (KEY= deletes).")],
             gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Set or delete metadata of an identity."""
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        meta[key] = value if value else None
    with _open(gallery) as g:
        g.set_metadata(name, meta)


@app.command("info")
def info_(gallery: GalleryOpt = DEFAULT_GALLERY, fmt: FormatOpt = OutputFormat.table) -> None:
    """Gallery summary: counts, index type, the model and pipeline (detector/segmenter) it is bound to."""
    from ..pipeline.settings import recorded_settings

    with _open(gallery) as g:
        d = g.info()
        pipeline = recorded_settings(g)
    d["pipeline"] = pipeline.to_dict() if pipeline is not None else None
    if fmt is not OutputFormat.json:
        d["pipeline"] = pipeline.describe() if pipeline is not None else "none (whole images)"
    emit(d, fmt, "\n".join(f"{k:>18}: {v}" for k, v in d.items()))


@app.command()
def audit(gallery: GalleryOpt = DEFAULT_GALLERY,
          limit: Annotated[int, typer.Option(min=1, help="Most recent entries to show.")] = 50,
          fmt: FormatOpt = OutputFormat.table) -> None:
    """The gallery's audit log of changes, newest first."""
    with _open(gallery) as g:
        rows = g.audit_log(limit)
    if fmt is OutputFormat.json:
        return emit(rows, fmt)
    from rich.table import Table
    t = Table("when (UTC)", "action", "identity", "detail")
    for r in rows:
        t.add_row(r["at"], r["action"], r["identity"] or "", str(r["detail"]))
    emit(None, fmt, t)


@app.command()
def rebuild(gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Rebuild the search index from the templates in SQLite (it is derived data)."""
    with _open(gallery) as g:
        g.rebuild_index()
        n = g.info()["indexed_vectors"]
    info(f"index rebuilt: {n} vectors")
