"""``verikit gallery``: inspect and curate a gallery (list, show, rename, remove, purge, info, audit,
check, migrate, rebuild). Names, metadata and file names are printed as data (:mod:`verikit.cli.display`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DEFAULT_GALLERY, EXIT_PARTIAL, FormatOpt, GalleryOpt, OutputFormat, emit, info, warn
from .display import safe_text, visible

app = typer.Typer(help="Inspect and curate a gallery of enrolled identities.", no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="Identity name.", show_default=False)]
EraseTimeoutOpt = Annotated[float, typer.Option(
    "--erase-timeout", min=0, help="Seconds to wait for other processes' read transactions before the "
                                   "removed templates' bytes can be erased from the gallery files.")]


def _open(path):
    from ..index.gallery import Gallery
    return Gallery.open(path)


def _metadata_text(metadata: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in metadata.items())


@app.command("list")
def list_(gallery: GalleryOpt = DEFAULT_GALLERY, fmt: FormatOpt = OutputFormat.table) -> None:
    """List enrolled identities and their template counts.

    Example: verikit gallery list --gallery people --format json
    """
    with _open(gallery) as g:
        people = g.identities()
    if fmt is OutputFormat.json:
        return emit([p.to_dict() for p in people], fmt)
    from rich.table import Table
    t = Table("identity", "templates", "metadata", "enrolled",
              title=safe_text(f"{len(people)} identities in {gallery}"))
    for p in people:
        t.add_row(safe_text(p.name), str(p.n_templates), safe_text(_metadata_text(p.metadata)),
                  p.to_dict()["created_at"])
    emit(None, fmt, t)


@app.command()
def show(name: NameArg, gallery: GalleryOpt = DEFAULT_GALLERY, fmt: FormatOpt = OutputFormat.table) -> None:
    """Show one identity: templates, their source images, metadata.

    Example: verikit gallery show alice --gallery people
    """
    with _open(gallery) as g:
        d = g.identity(name).to_dict()
    if fmt is OutputFormat.json:
        return emit(d, fmt)
    from rich.text import Text
    out = Text()
    out.append_text(safe_text(d["name"], style="bold"))
    out.append(f"  {d['templates']} template(s), enrolled {d['created_at']}")
    if d["metadata"]:
        out.append("\n  metadata: ")
        out.append_text(safe_text(_metadata_text(d["metadata"])))
    for s in d.get("sources", []):
        out.append("\n  - ")
        out.append_text(safe_text(s))
    emit(d, fmt, out)


@app.command()
def remove(name: NameArg, gallery: GalleryOpt = DEFAULT_GALLERY,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
           erase_timeout: EraseTimeoutOpt = 10.0,
           keep_audit: Annotated[bool, typer.Option(
               "--keep-audit", help="Keep the name and source file names in the audit log (by default "
                                    "the identity's audit events stay but are anonymised).")] = False,
           fmt: FormatOpt = OutputFormat.table) -> None:
    """Remove an identity and erase its templates (overwritten on disk, not just unlinked).

    When it returns the templates' bytes are gone from every gallery file, unless another process
    held a read transaction for longer than --erase-timeout: then it says so, exits with status 4,
    and the bytes are erased as soon as that reader finishes, by the next command that opens the
    gallery or by `verikit gallery purge`.

    Example: verikit gallery remove alice --gallery people --yes
    """
    with _open(gallery) as g:
        n = g.identity(name).n_templates
        if not yes and not typer.confirm(f"delete {visible(repr(name))} and its {n} template(s) from "
                                         f"{visible(gallery)}?", err=True):
            raise typer.Exit(1)
        removed = g.remove(name, erase_timeout=0, keep_audit=keep_audit)
        erased = not g.erasure_pending
        if not erased and erase_timeout > 0:
            # Said before waiting, so a user (or a test) knows what the command is waiting for.
            info(f"waiting up to {erase_timeout:g} s for other processes' read transactions to end "
                 "before erasing the removed templates' bytes ...")
            erased = g.purge(erase_timeout)
    if fmt is OutputFormat.json:
        emit({"removed": name, "templates": removed, "erased": erased}, fmt)
    info(f"removed {name!r} ({removed} template(s))")
    if not erased:
        warn(f"the removed templates' bytes are NOT yet erased from {visible(gallery)}/gallery.sqlite: another "
             "process holds a read transaction on the gallery. They are erased as soon as it ends, by the next "
             "verikit command that opens this gallery, or run `verikit gallery purge` to wait for it.")
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def purge(gallery: GalleryOpt = DEFAULT_GALLERY,
          timeout: Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait for readers.")] = 60.0
          ) -> None:
    """Finish erasing the bytes of removed identities, waiting for other processes' readers.

    Needed only after `gallery remove` said the bytes were not yet erased. Exit 0 when nothing
    removed is left in any gallery file; 1 when a reader still holds an old snapshot.

    Example: verikit gallery purge --gallery people --timeout 120
    """
    from ..errors import GalleryError

    with _open(gallery) as g:
        if not g.erasure_pending:
            info("nothing to erase")
            return
        info(f"waiting up to {timeout:g} s for other processes' read transactions to end ...")
        if not g.purge(timeout):
            raise GalleryError(f"gallery '{visible(gallery)}': removed templates are still not erased after "
                               f"{timeout:g} s: another process keeps a read transaction open; try again later")
    info("erased: no removed template is left in any gallery file")


@app.command()
def rename(old: NameArg, new: Annotated[str, typer.Argument(help="New name.", show_default=False)],
           gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Rename an identity (its templates stay).

    Example: verikit gallery rename alice "Alice Smith" --gallery people
    """
    with _open(gallery) as g:
        g.rename(old, new)
    info(f"renamed {old!r} to {new!r}")


@app.command("set-meta")
def set_meta(name: NameArg, pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE (KEY= deletes).")],
             gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Set or delete metadata of an identity.

    Example: verikit gallery set-meta alice team=red badge= --gallery people
    """
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
    """Gallery summary: counts, index type, the model and pipeline (detector/segmenter) it is bound to.

    Example: verikit gallery info --gallery people
    """
    from ..pipeline.settings import recorded_settings

    with _open(gallery) as g:
        d = g.info()
        pipeline = recorded_settings(g)
    d["pipeline"] = pipeline.to_dict() if pipeline is not None else None
    if fmt is not OutputFormat.json:
        d["pipeline"] = pipeline.describe() if pipeline is not None else "none (whole images)"
    emit(d, fmt, safe_text("\n".join(f"{k:>18}: {v}" for k, v in d.items())))


@app.command()
def audit(gallery: GalleryOpt = DEFAULT_GALLERY,
          limit: Annotated[int, typer.Option(min=1, help="Most recent entries to show.")] = 50,
          fmt: FormatOpt = OutputFormat.table) -> None:
    """The gallery's audit log of changes, newest first.

    Removing an identity anonymises its events (the name becomes removed-XXXXXXXX and source
    file names are dropped) unless it was removed with --keep-audit.

    Example: verikit gallery audit --gallery people --limit 20
    """
    with _open(gallery) as g:
        rows = g.audit_log(limit)
    if fmt is OutputFormat.json:
        return emit(rows, fmt)
    from rich.table import Table
    t = Table("when (UTC)", "action", "identity", "detail")
    for r in rows:
        t.add_row(r["at"], safe_text(r["action"]), safe_text(r["identity"] or ""), safe_text(r["detail"]))
    emit(None, fmt, t)


@app.command()
def check(gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Check the whole gallery: SQLite's integrity check, every template, the index against the database.

    Slower than the check every open makes (it reads every page); exit 1 naming the first problem.

    Example: verikit gallery check --gallery people
    """
    from ..errors import GalleryError

    with _open(gallery) as g:
        report = g.check_report()
        spec = g.index_spec
    problems = report["problems"]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise GalleryError(f"gallery '{visible(gallery)}' is damaged: {problems[0]}{more}")
    info(f"gallery is sound: {_agreement_text(spec, report['index'])}")


def _agreement_text(spec: str, index: dict) -> str:
    ids = "the same ids as the database" if index["ids_compared"] else "as many vectors as the database"
    sampled = (f", {index['vectors_sampled']} sampled vectors equal to the templates" if index["vectors_sampled"]
               else ", vectors not compared (this index does not keep them exactly)")
    return f"{index['templates']} templates; index {visible(spec)} holds {ids}{sampled}"


@app.command()
def migrate(
    src: Annotated[Path, typer.Argument(help="Gallery directory.", show_default=False)],
    to: Annotated[str, typer.Option("--to", show_default=False,
                                    help="Index spec to move to: faiss:Flat, milvus, milvus:http://host:19530, ...")],
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Move a gallery's index to another backend (SQLite, the truth, is unchanged): build the new
    index from the templates, prove it agrees (ids, counts, a sample of vectors), record it, and
    delete the old index's data.

    Example: verikit gallery migrate people --to milvus
    """
    with _open(src) as g:
        old = g.index_spec
        report = g.migrate_index(to)
        spec = g.index_spec
    info(f"migrated from {visible(old)}: {_agreement_text(spec, report)}")
    emit({"gallery": str(src), "from": old, "to": spec, **report}, fmt,
         safe_text(f"{visible(old)} -> {visible(spec)}: {report['templates']} templates"))


@app.command()
def rebuild(gallery: GalleryOpt = DEFAULT_GALLERY) -> None:
    """Rebuild the search index from the templates in SQLite (it is derived data).

    Example: verikit gallery rebuild --gallery people
    """
    with _open(gallery) as g:
        g.rebuild_index()
        n = g.info()["indexed_vectors"]
    info(f"index rebuilt: {n} vectors")
