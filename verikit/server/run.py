"""Starting ``verikit serve``: where it may listen, the socket, uvicorn, and the start-up lines.

Without a keys file every request is allowed, so the server then listens on a loopback address
only (127.0.0.1, ::1, localhost) and says so; any other host needs ``--keys``. The socket is bound
here (port 0 picks a free port) and, once uvicorn serves it, one line on stderr says
``verikit serve: listening on http://HOST:PORT``: what scripts and tests wait for. SIGTERM or
Ctrl-C stops accepting connections, lets requests in progress finish (up to
``graceful_timeout`` seconds), then exits 0.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .limits import Limits
from .runtime import ServiceOptions


class ServeError(DataError):
    """The server cannot start as asked (a host without keys, a port in use, ...)."""


@dataclass(frozen=True)
class ServeConfig:
    options: ServiceOptions
    host: str = "127.0.0.1"
    port: int = 8000
    keys: Path | None = None
    limits: Limits = Limits()
    max_batch: int = 32
    max_wait: float = 0.005
    graceful_timeout: int = 30
    access_log: bool = False


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def _bind(host: str, port: int) -> socket.socket:
    host = "127.0.0.1" if host == "localhost" else host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _say(message: str) -> None:
    sys.stderr.write(f"verikit serve: {message}\n")
    sys.stderr.flush()


def serve(config: ServeConfig) -> None:
    """Run the server until SIGTERM/SIGINT (blocking)."""
    import uvicorn

    from .app import create_app
    from .keys import KeyStore, load_keys

    store = None
    if config.keys is not None:
        data = load_keys(config.keys)  # a missing or invalid keys file stops the start, in one line
        store = KeyStore(config.keys)
        _say(f"API keys from '{config.keys}' ({len(data.keys)} key(s)); every /v1 route needs one")
    elif not is_loopback(config.host):
        raise ServeError(f"refusing to listen on {config.host} without API keys: anyone who can reach it could "
                         "enroll, search and remove people. Make a key (`verikit serve keys add NAME --scope admin "
                         "--keys FILE`) and pass --keys FILE, or listen on 127.0.0.1")
    else:
        _say(f"no API keys configured (--keys): listening on {config.host} only, and every request is allowed")
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(config.options, keys=store, limits=config.limits, max_batch=config.max_batch,
                     max_wait=config.max_wait)
    try:
        app.state.runtime.open()
    except BaseException:
        sock.close()
        raise

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:  # the lifespan (model, gallery) started and the socket is served
                _say(f"listening on http://{shown}:{port}")

    uconfig = uvicorn.Config(app, lifespan="on", log_level="info", access_log=config.access_log,
                             timeout_graceful_shutdown=config.graceful_timeout, server_header=False)
    server = _Server(uconfig)
    app.state.server = server
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found: ours notes
    # it, so a graceful stop exits 0 instead of dying of the signal.
    terminated: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: terminated.append(sig)) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise ServeError("the server did not start (its log above says why)")
    if terminated:
        _say("stopped on SIGTERM; requests in progress were finished")


def describe(config: ServeConfig) -> dict[str, Any]:
    """The settings a start-up reports (for logs and --help examples)."""
    lim = config.limits
    return {"host": config.host, "port": config.port, "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait * 1000, "max_request_bytes": lim.max_request_bytes,
            "max_images": lim.max_images, "max_pixels": lim.max_pixels, "max_concurrent": lim.max_concurrent}
