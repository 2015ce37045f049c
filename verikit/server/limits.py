"""Limits that protect one server process: request size, images per request, pixels per image,
and requests answered at once. The size and concurrency limits are enforced here, in front of the
application (ASGI middleware), before a body is read; images and pixels where uploads are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import send_error

UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics")  # probes must answer even when the server is busy


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 32 * 1024 * 1024
    max_images: int = 16
    max_pixels: int = 40_000_000
    max_concurrent: int = 64
    max_top_k: int = 100

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_images", "max_pixels", "max_concurrent", "max_top_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")


class LimitMiddleware:
    """413 for a declared body over the limit, 411 for a body without a declared length, 503 when
    ``max_concurrent`` requests are already being answered (with ``Retry-After``)."""

    def __init__(self, app: Any, limits: Limits, on_reject: Any = None) -> None:
        self.app = app
        self.limits = limits
        self.on_reject = on_reject or (lambda limit: None)
        self.active = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await send_error(send, 400, "Content-Length is not a number")
            if n > self.limits.max_request_bytes:
                self.on_reject("request_bytes")
                return await send_error(send, 413, f"request body of {n} bytes exceeds the limit of "
                                                   f"{self.limits.max_request_bytes} bytes")
        elif b"transfer-encoding" in headers:
            self.on_reject("length_required")
            return await send_error(send, 411, "a request body needs a Content-Length header")
        if self.active >= self.limits.max_concurrent:
            self.on_reject("concurrent")
            return await send_error(send, 503, f"server busy: {self.limits.max_concurrent} requests in progress; "
                                               "retry shortly", [(b"retry-after", b"1")])
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
