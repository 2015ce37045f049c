"""``verikit serve``: the HTTP service (``verikit serve --gallery DIR ...``), and ``verikit serve keys
add|list|revoke`` for its API keys. Needs the ``serve`` extra (``pip install 'verikit[serve]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DEFAULT_GALLERY, DefaultCommandGroup, DeviceOpt, FormatOpt, GalleryOpt, ModelOpt, OutputFormat,
                     ThresholdOpt, emit, info)
from .pipeline_options import (BackgroundOpt, CropMarginOpt, DetectorOpt, DetectorOptionOpt, SegmenterOpt,
                               SegmenterOptionOpt, pipeline_request, pipeline_usage_errors)
from .query import Scorer, ScorerOpt


class _ServeGroup(DefaultCommandGroup):
    """``verikit serve`` with no sub-command (or only options) runs the server."""

    def parse_args(self, ctx, args):
        if not args:
            args = [self.default_command]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_ServeGroup, help="Serve a gallery over HTTP: `verikit serve --gallery DIR` (options: "
                                        "`verikit serve run --help`); API keys: `verikit serve keys --help`.")
keys_app = typer.Typer(help="API keys of `verikit serve`: stored as salted hashes, each key shown once.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")

KeysOpt = Annotated[Optional[Path], typer.Option(
    "--keys", envvar="VERIKIT_SERVE_KEYS", show_default=False,
    help="Keys file (salted hashes of API keys). Without it the server accepts every request and listens on "
         "localhost only.")]
_LIMITS = "Limits"
_BATCHING = "Micro-batching"


@app.command("run")
def run(
    gallery: GalleryOpt = DEFAULT_GALLERY,
    model: ModelOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but localhost needs --keys.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8000,
    keys: KeysOpt = None,
    threshold: ThresholdOpt = None,
    scorer: ScorerOpt = Scorer.similarity,
    device: DeviceOpt = "auto",
    index: Annotated[str, typer.Option(help="Index for a gallery the first enroll creates.")] = "faiss:Flat",
    max_batch: Annotated[int, typer.Option(min=1, help="Most images in one forward pass (1: no batching).",
                                           rich_help_panel=_BATCHING)] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0.0, max=1000.0, help="Longest a request waits for others to "
                                               "share its forward pass.", rich_help_panel=_BATCHING)] = 5.0,
    max_request_mb: Annotated[float, typer.Option(min=0.001, help="Largest request body (MB).",
                                                  rich_help_panel=_LIMITS)] = 32.0,
    max_images: Annotated[int, typer.Option(min=1, help="Most images in one request.", rich_help_panel=_LIMITS)] = 16,
    max_pixels: Annotated[int, typer.Option(min=1, help="Most pixels in one image.",
                                            rich_help_panel=_LIMITS)] = 40_000_000,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Most requests answered at once (more get 503).",
                                                rich_help_panel=_LIMITS)] = 64,
    graceful_timeout: Annotated[int, typer.Option(min=0, help="Seconds requests in progress get to finish after "
                                                  "SIGTERM.")] = 30,
    access_log: Annotated[bool, typer.Option(help="Log every request on stdout.")] = False,
    detector: DetectorOpt = None,
    detector_option: DetectorOptionOpt = None,
    crop_margin: CropMarginOpt = None,
    segmenter: SegmenterOpt = None,
    segmenter_option: SegmenterOptionOpt = None,
    background: BackgroundOpt = None,
) -> None:
    """Serve enroll, verify, search and curation of a gallery over HTTP (FastAPI + uvicorn).

    The model, its calibration and the gallery are loaded once; concurrent requests' images go through the model in shared forward passes (--max-batch, --max-wait-ms). Answers are the JSON of the CLI's --format json; the OpenAPI schema is at /openapi.json, interactive docs at /docs. Once it serves, one line on stderr says: verikit serve: listening on http://HOST:PORT

    Example: verikit serve --gallery people --port 8000

    Beyond localhost, with keys: verikit serve keys add ops --scope admin --keys keys.json, then verikit serve --gallery people --host 0.0.0.0 --keys keys.json
    """
    try:
        from ..server.limits import Limits
        from ..server.run import ServeConfig, serve
        from ..server.runtime import ServiceOptions
    except ImportError as exc:
        from ..errors import PluginError
        raise PluginError(f"verikit serve needs the serve extra ({exc.name} is missing): "
                          "pip install 'verikit[serve]'") from None
    from ..service.checks import check_threshold

    options = ServiceOptions(gallery, model=model, device=device, threshold=check_threshold(threshold, "--threshold"),
                             scorer=scorer.value, index=index,
                             pipeline=pipeline_request(detector, detector_option, crop_margin, segmenter,
                                                       segmenter_option, background))
    config = ServeConfig(options, host=host, port=port, keys=keys,
                         limits=Limits(max_request_bytes=int(max_request_mb * 1024 * 1024), max_images=max_images,
                                       max_pixels=max_pixels, max_concurrent=max_concurrent),
                         max_batch=max_batch, max_wait=max_wait_ms / 1000.0, graceful_timeout=graceful_timeout,
                         access_log=access_log)
    with pipeline_usage_errors():
        serve(config)


@keys_app.command("add")
def keys_add(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).", show_default=False)],
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="read (verify, search, list), write (enroll, "
                                             "rename, remove, metadata) or admin (all, and /metrics); repeatable.")],
    keys: Annotated[Path, typer.Option("--keys", envvar="VERIKIT_SERVE_KEYS", help="Keys file (created if new).")],
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Make an API key. The key is printed once, on stdout; only its salted hash is stored.

    Example: verikit serve keys add kiosk --scope write --keys keys.json
    """
    from ..server.keys import add_key

    key, record = add_key(keys, name, scope)
    if fmt is OutputFormat.json:
        emit({"name": record.name, "id": record.id, "scopes": list(record.scopes), "key": key}, fmt)
    else:
        emit(None, fmt, key)
        info(f"key {record.name!r} ({', '.join(record.scopes)}) added to '{keys}'; it is shown only this once")


@keys_app.command("list")
def keys_list(
    keys: Annotated[Path, typer.Option("--keys", envvar="VERIKIT_SERVE_KEYS", help="Keys file.")],
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """List the keys (names, ids, scopes; never the keys themselves).

    Example: verikit serve keys list --keys keys.json
    """
    from ..server.keys import load_keys

    rows = [{"name": k.name, "id": k.id, "scopes": list(k.scopes), "created_at": k.created_at}
            for k in load_keys(keys).keys]
    if fmt is OutputFormat.json:
        return emit(rows, fmt)
    from rich.table import Table
    t = Table("name", "id", "scopes", "created (UTC)")
    for r in rows:
        t.add_row(r["name"], r["id"], ", ".join(r["scopes"]), r["created_at"])
    emit(None, fmt, t)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.", show_default=False)],
    keys: Annotated[Path, typer.Option("--keys", envvar="VERIKIT_SERVE_KEYS", help="Keys file.")],
) -> None:
    """Revoke a key; a running server refuses it from its next request on.

    Example: verikit serve keys revoke kiosk --keys keys.json
    """
    from ..server.keys import revoke_key

    record = revoke_key(keys, name)
    info(f"revoked key {record.name!r} ({record.id})")
