"""How errors reach an HTTP client: a status code and ``{"error": "<one line>"}``, never a traceback.

verikit's own errors map by kind (below); a request the schema rejects is 422 with the first
problem in one line; anything else is a bug: 500 with a fixed message, the traceback in the
server's log only.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import (CalibrationError, DataError, FingerprintMismatchError, GalleryError, IdentityNotFoundError,
                      ImageError, VerikitError)

INTERNAL = "internal error (the server log has the details)"


def status_for(exc: VerikitError) -> int:
    if isinstance(exc, IdentityNotFoundError):
        return 404          # the claimed / named identity is not enrolled
    if isinstance(exc, (ImageError, DataError)):
        return 422          # an upload or a value that cannot be used
    if isinstance(exc, (GalleryError, FingerprintMismatchError, CalibrationError)):
        return 409          # the request conflicts with the gallery's state or the server's configuration
    return 400


def one_line(message: str, limit: int = 500) -> str:
    return " ".join(str(message).split())[:limit] or "bad request"


def body(message: str) -> bytes:
    return json.dumps({"error": one_line(message)}).encode()


def validation_message(errors: list[dict[str, Any]]) -> str:
    """FastAPI/pydantic validation errors as one line: the first problem and where it is."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body",)) or "request"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


async def send_error(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer on a raw ASGI ``send`` (for middleware that refuses before the app runs)."""
    content = body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": content})
