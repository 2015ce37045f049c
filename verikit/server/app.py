"""The FastAPI application of ``verikit serve``: routes, authentication, and error bodies.

Every route is a thin shell over :class:`verikit.service.Service` (through :class:`.runtime.Runtime`),
and answers with the JSON the CLI prints with ``--format json``. Routes and the scope each needs:

=========================================  ========  ==========================================
``POST /v1/verify``                         read      multipart ``image``, ``claim``
``POST /v1/search``                         read      multipart ``images`` (1+), ``top_k``
``GET /v1/identities[/{name}]``             read      list, or one identity with its sources
``GET /v1/gallery``                         read      ``verikit gallery info``
``POST /v1/enroll``                         write     multipart ``name``, ``images`` (1+), ``metadata``
``PATCH /v1/identities/{name}``             write     JSON ``{"name": new, "metadata": {...}}``
``DELETE /v1/identities/{name}``            write
``GET /metrics``                            admin     Prometheus text format
``GET /healthz``, ``GET /readyz``           none      liveness, readiness
=========================================  ========  ==========================================

``admin`` includes every scope. Without a keys file the server listens on localhost only and
asks for no key (see :mod:`.run`).
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Optional

from fastapi import Depends, FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DataError, VerikitError
from . import responses as R
from .errors import INTERNAL, one_line, status_for, validation_message
from .keys import KeyStore
from .limits import LimitMiddleware, Limits
from .metrics import CONTENT_TYPE_LATEST, Metrics
from .runtime import Runtime, ServiceOptions, TooManyImages

log = logging.getLogger("verikit.serve")

_ERRORS = {code: {"model": R.ErrorOut, "description": what} for code, what in (
    (401, "No API key, or not a valid one"), (403, "The key lacks the scope this route needs"),
    (404, "No such identity"), (409, "Conflicts with the gallery or the server's configuration"),
    (411, "A body without Content-Length"), (413, "Over a size limit"),
    (422, "A value or an upload that cannot be used"), (503, "Busy, or shutting down"))}

_bearer = HTTPBearer(auto_error=False, description="An API key made with `verikit serve keys add`.")


class _AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def require(scope: str) -> Any:
    """A dependency that lets a request through when its key has ``scope`` (or ``admin``)."""

    async def check(request: Request, credentials: Optional[HTTPAuthorizationCredentials] = Security(_bearer)) -> None:
        store: KeyStore | None = request.app.state.keys
        if store is None:
            return  # no keys configured: the server listens on localhost only
        if credentials is None:
            raise _AuthError(401, "an API key is required: send 'Authorization: Bearer <key>'")
        record = store.check(credentials.credentials)
        if record is None:
            raise _AuthError(401, "the API key is not valid (unknown, revoked or mistyped)")
        if scope not in record.scopes and "admin" not in record.scopes:
            raise _AuthError(403, f"the key {record.name!r} lacks the {scope!r} scope this route needs")
    return Depends(check)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": one_line(message)}, status_code=status, headers=headers)


def _metadata(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise DataError(f"metadata is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise DataError('metadata must be a JSON object of strings, e.g. {"team": "blue"}')
    return value


class _Metrics:
    """Counts and times every request by its route template (bounded labels, whatever the path)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def create_app(options: ServiceOptions, *, keys: KeyStore | None = None, limits: Limits = Limits(),
               max_batch: int = 32, max_wait: float = 0.005) -> FastAPI:
    metrics = Metrics()
    runtime = Runtime(options, limits, metrics, max_batch=max_batch, max_wait=max_wait)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await runtime.start()
        app.state.ready = True
        for message in runtime.warnings:
            log.warning("%s", message)
        yield
        app.state.ready = False
        await runtime.stop()

    app = FastAPI(title="verikit", version=_version(), lifespan=lifespan,
                  description="Enroll, verify (1:1) and search (1:N) against a verikit gallery. Results are the "
                              "JSON of the CLI's `--format json`; errors are `{\"error\": \"<one line>\"}`.")
    app.state.keys, app.state.runtime, app.state.ready, app.state.server = keys, runtime, False, None

    # -- errors: always one line of JSON ------------------------------------------------------------
    @app.exception_handler(_AuthError)
    async def _auth(_: Request, exc: _AuthError) -> JSONResponse:
        return _error(exc.status, str(exc), {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None)

    @app.exception_handler(TooManyImages)
    async def _too_many(_: Request, exc: TooManyImages) -> JSONResponse:
        return _error(413, str(exc))

    @app.exception_handler(VerikitError)
    async def _verikit(_: Request, exc: VerikitError) -> JSONResponse:
        return _error(status_for(exc), str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error answering %s %s", request.method, request.url.path)
        return _error(500, INTERNAL)

    # -- verification --------------------------------------------------------------------------------
    @app.post("/v1/verify", tags=["verification"], dependencies=[require("read")],
              responses={200: {"model": R.DecisionOut}, **_ERRORS})
    async def verify(image: UploadFile = File(..., description="The probe image."),
                     claim: str = Form(..., min_length=1, description="The identity it claims to be.")) -> Any:
        """Is this probe the claimed identity? Score, threshold and decision (`verikit verify`)."""
        decoded = await runtime.decode([image])
        svc = runtime.service
        await runtime.in_gallery_thread(svc.identity, claim)  # an unknown claim fails before any model work
        vector = (await runtime.embed(decoded))[0]
        decision = await runtime.in_gallery_thread(svc.decide, vector, decoded[0][0], claim)
        return _json(decision.to_dict())

    @app.post("/v1/search", tags=["verification"], dependencies=[require("read")],
              responses={200: {"model": list[R.SearchResultOut]}, **_ERRORS})
    async def search(images: list[UploadFile] = File(..., description="One or more probe images."),
                     top_k: int = Form(5, ge=1, description="Identities to list per probe.")) -> Any:
        """Who is this? Ranked identities per probe, open-set (`verikit search`)."""
        if top_k > limits.max_top_k:
            raise DataError(f"top_k {top_k} is over the server's limit of {limits.max_top_k}")
        decoded = await runtime.decode(images)
        vectors = await runtime.embed(decoded)
        results = await runtime.in_gallery_thread(
            lambda: runtime.service.rank([n for n, _ in decoded], vectors, top_k=top_k))
        return _json([r.to_dict() for r in results])

    # -- enrollment and curation ----------------------------------------------------------------------
    @app.post("/v1/enroll", tags=["gallery"], dependencies=[require("write")],
              responses={200: {"model": R.EnrollOut}, **_ERRORS})
    async def enroll(name: str = Form(..., min_length=1, max_length=512, description="The identity."),
                     images: list[UploadFile] = File(..., description="Its images (one template each)."),
                     metadata: Optional[str] = Form(None, description='A JSON object of strings to merge into '
                                                                       'its metadata, e.g. {"team": "blue"}.')) -> Any:
        """Enroll one identity from one or more images, in one transaction (`verikit enroll`).
        Any unreadable image (or one without a face) fails the request and stores nothing."""
        meta = _metadata(metadata)
        decoded = await runtime.decode(images)
        vectors = await runtime.embed(decoded)
        result = await runtime.in_gallery_thread(
            runtime.service.commit_embeddings, {name: (vectors, [n for n, _ in decoded])},
            {name: meta} if meta else None)
        return _json(result.to_dict())

    @app.get("/v1/identities", tags=["gallery"], dependencies=[require("read")],
             responses={200: {"model": list[R.IdentityOut]}, **_ERRORS})
    async def identities() -> Any:
        """Enrolled identities and their template counts (`verikit gallery list`)."""
        people = await runtime.in_gallery_thread(runtime.service.identities)
        return _json([p.to_dict() for p in people])

    @app.get("/v1/identities/{name:path}", tags=["gallery"], dependencies=[require("read")],
             responses={200: {"model": R.IdentityOut}, **_ERRORS})
    async def identity(name: str) -> Any:
        """One identity with its templates' sources (`verikit gallery show`)."""
        return _json((await runtime.in_gallery_thread(runtime.service.identity, name)).to_dict())

    @app.patch("/v1/identities/{name:path}", tags=["gallery"], dependencies=[require("write")],
               responses={200: {"model": R.IdentityOut}, **_ERRORS})
    async def update(name: str, patch: R.IdentityPatch) -> Any:
        """Rename an identity and/or merge metadata into it (a null value deletes a key)."""
        svc = runtime.service

        def apply() -> Any:
            current = name
            if patch.name is not None and patch.name != name:
                svc.rename(name, patch.name)
                current = patch.name
            if patch.metadata:
                svc.set_metadata(current, patch.metadata)
            return svc.identity(current)
        return _json((await runtime.in_gallery_thread(apply)).to_dict())

    @app.delete("/v1/identities/{name:path}", tags=["gallery"], dependencies=[require("write")],
                responses={200: {"model": R.RemovedOut}, **_ERRORS})
    async def remove(name: str) -> Any:
        """Remove an identity and delete its templates (`verikit gallery remove`)."""
        n = await runtime.in_gallery_thread(runtime.service.remove, name)
        return _json({"identity": name, "removed_templates": n})

    @app.get("/v1/gallery", tags=["gallery"], dependencies=[require("read")],
             responses={200: {"model": R.GalleryInfoOut}, **_ERRORS})
    async def gallery_info() -> Any:
        """Counts, index, model and pipeline (`verikit gallery info`)."""
        return _json(await runtime.in_gallery_thread(runtime.service.info))

    # -- operations ------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"], responses={200: {"model": R.HealthOut}})
    async def health() -> Any:
        """The process is up and answering."""
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["operations"], responses={200: {"model": R.ReadyOut}, 503: {"model": R.ReadyOut}})
    async def ready(request: Request) -> Any:
        """Ready for requests: model loaded, gallery reachable, not shutting down."""
        server = request.app.state.server
        if not request.app.state.ready or (server is not None and server.should_exit):
            return _json({"status": "not ready", "gallery": False, "warnings": runtime.warnings}, 503)
        exists = (runtime.service.gallery_dir / "gallery.sqlite").exists()
        return _json({"status": "ready", "gallery": exists, "warnings": runtime.warnings})

    @app.get("/metrics", tags=["operations"], dependencies=[require("admin")],
             responses={200: {"content": {"text/plain": {}}}, **_ERRORS})
    async def prometheus() -> Response:
        """Prometheus metrics of this process (requests, latency, batch sizes, gallery size)."""
        svc = runtime.service
        if (svc.gallery_dir / "gallery.sqlite").exists():
            size = await runtime.in_gallery_thread(lambda: svc.gallery().info())
            metrics.identities.set(size["identities"])
            metrics.templates.set(size["templates"])
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: every request is counted, including those a limit refuses.
    app.add_middleware(LimitMiddleware, limits=limits, on_reject=lambda limit: metrics.rejected.labels(limit).inc())
    app.add_middleware(_Metrics, metrics=metrics)
    return app


def _version() -> str:
    from .. import __version__

    return __version__
