"""Named, pluggable components: entry-point discovery, lazy import, helpful errors.

A :class:`Registry` maps a short name (``timm``, ``faiss``, ``haar``) to a factory. Built-in and
third-party components arrive the same way, through a Python entry-point group such as
``verikit.backbones``; nothing is imported until a name is asked for, so ``verikit --help``
stays fast. Components are requested with spec strings ``name[:argument]``.

``VERIKIT_LOAD_PLUGINS`` (comma-separated distribution names) restricts which installed
distributions are loaded; an empty value loads none. Tests register factories in-process with
:meth:`Registry.register` and undo it with the context manager :meth:`Registry.temporary`.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import PluginError, VerikitError, one_line

T = TypeVar("T")

GROUPS = {
    "backbone": "verikit.backbones",
    "detector": "verikit.detectors",
    "segmenter": "verikit.segmenters",
    "index_backend": "verikit.index_backends",
}


@dataclass(frozen=True)
class PluginInfo:
    """What ``verikit plugins`` shows for one registered name."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str

    def to_dict(self, status: str | None = None) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name, "distribution": self.distribution, "version": self.version,
               "target": self.target}
        if status is not None:
            out["status"] = status
        return out


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``"timm:resnet18"`` into ``("timm", "resnet18")``; ``"faiss"`` into ``("faiss", None)``."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"empty component spec {spec!r}; expected 'name' or 'name:argument'")
    name, sep, arg = spec.strip().partition(":")
    return name, (arg if sep and arg else None)


def _allowed_distributions() -> set[str] | None:
    raw = os.environ.get("VERIKIT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_canonical(d) for d in raw.split(",") if d.strip()}


def _canonical(dist: str) -> str:
    """PEP 503 form, so ``verikit_haar``, ``Verikit-Haar`` and ``verikit.haar`` are one name."""
    return re.sub(r"[-_.]+", "-", dist.strip()).lower()


class Registry(Generic[T]):
    """Factories of one kind, found through one entry-point group."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = GROUPS[kind]
        self._factories: dict[str, Callable[..., T]] = {}
        self._entry_points: dict[str, tuple[metadata.EntryPoint, str, str]] | None = None
        self._local: dict[str, PluginInfo] = {}

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> dict[str, tuple[metadata.EntryPoint, str, str]]:
        if self._entry_points is None:
            allowed = _allowed_distributions()
            found: dict[str, tuple[metadata.EntryPoint, str, str]] = {}
            for ep in metadata.entry_points(group=self.group):
                dist = ep.dist.name if ep.dist else "unknown"
                version = ep.dist.version if ep.dist else ""
                # The core distribution's built-ins are always on: the tool cannot work without them.
                if allowed is not None and _canonical(dist) != "verikit" and _canonical(dist) not in allowed:
                    continue
                if ep.name in found and found[ep.name][0].value != ep.value:
                    raise PluginError(
                        f"{self.kind} name {ep.name!r} is registered twice "
                        f"(by {found[ep.name][1]} and {dist}); uninstall one of them")
                found[ep.name] = (ep, dist, version)
            self._entry_points = found
        return self._entry_points

    def names(self) -> list[str]:
        return sorted(set(self._discover()) | set(self._factories))

    def infos(self) -> list[PluginInfo]:
        out = [PluginInfo(self.kind, n, ep.value, dist, ver) for n, (ep, dist, ver) in self._discover().items()
               if n not in self._local]
        return sorted(out + list(self._local.values()), key=lambda i: i.name)

    # -- lookup ----------------------------------------------------------------------------
    def get(self, name: str) -> Callable[..., T]:
        if name in self._factories:
            return self._factories[name]
        eps = self._discover()
        if name not in eps:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise PluginError(f"unknown {self.kind} {name!r}{hint} (installed: {', '.join(known) or 'none'})")
        ep, dist, _ = eps[name]
        try:
            factory = ep.load()
        except ImportError as exc:
            raise PluginError(f"{self.kind} {name!r} from {dist} failed to import ({one_line(exc)}); "
                              f"install what it needs: pip install --force-reinstall {dist}") from exc
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the tool down with it
            raise PluginError(f"{self.kind} {name!r} from {dist} is broken: entry point {ep.value!r} raised "
                              f"{type(exc).__name__}: {one_line(exc)}") from exc
        if not callable(factory):
            raise PluginError(f"{self.kind} {name!r} from {dist}: entry point {ep.value!r} is not callable")
        self._factories[name] = factory
        return factory

    def status(self, name: str) -> str:
        """``"ok"`` when ``name`` imports and can be built here, else the one-line reason (never raises)."""
        try:
            factory = self.get(name)
        except PluginError as exc:
            return str(exc)
        return _unavailable(factory) or "ok"

    def example(self, name: str) -> tuple[str, dict[str, Any]]:
        """A small build of ``name``: the factory's declared ``example`` ``(spec, options)``, else the bare name."""
        spec, options = getattr(self.get(name), "example", (name, {}))
        return spec, dict(options)

    def examples(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """Every small build of ``name`` the contract tests check: ``examples``, else ``[example]``."""
        declared = getattr(self.get(name), "examples", None)
        return [(spec, dict(options)) for spec, options in declared] if declared else [self.example(name)]

    def preferred(self, *, where: Callable[[Any], bool] | None = None) -> str:
        """The default component of this kind: the installed, buildable factory with the highest
        ``preference`` (ties: the name that sorts first), among those ``where(factory)`` accepts."""
        ranked = []
        for name in self.names():
            try:
                factory = self.get(name)
            except PluginError:
                continue
            if _unavailable(factory) is None and (where is None or where(factory)):
                ranked.append((-int(getattr(factory, "preference", 0)), name))
        if not ranked:
            what = f"{self.kind}s" if where is None else f"suitable {self.kind}s"
            raise PluginError(f"no {what} are installed (see `verikit plugins`); install a plugin that provides one")
        return min(ranked)[1]

    def create(self, spec: str, **options: Any) -> T:
        """Build a component from ``name[:argument]`` and keyword options."""
        name, arg = parse_spec(spec)
        factory = self.get(name)
        try:
            return factory(arg, **options) if arg is not None else factory(**options)
        except TypeError as exc:
            # A misspelt option is a user error; name it instead of showing a traceback.
            if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
                raise PluginError(f"{self.kind} {spec!r} does not accept these options: {one_line(exc)}") from exc
            raise
        except VerikitError as exc:
            # A factory's own refusal ("timm has no architecture 'x'") says what is wrong, not which
            # component was asked for: name the kind and the spec the user gave.
            if spec in str(exc):
                raise
            raise type(exc)(f"{self.kind} {spec!r}: {exc}") from exc

    def refresh(self) -> None:
        """Forget discovered entry points (after installing a plugin in a running process)."""
        self._entry_points = None
        for name in [n for n in self._factories if n not in self._local]:
            del self._factories[name]

    # -- in-process registration (tests, notebooks) ----------------------------------------
    def register(self, name: str, factory: Callable[..., T], *, replace: bool = False) -> None:
        if not replace and (name in self._factories or name in self._discover()):
            raise PluginError(f"{self.kind} name {name!r} is already registered")
        self._factories[name] = factory
        target = f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"
        self._local[name] = PluginInfo(self.kind, name, target, "(in-process)", "")

    def unregister(self, name: str) -> None:
        self._factories.pop(name, None)
        self._local.pop(name, None)

    @contextlib.contextmanager
    def temporary(self, name: str, factory: Callable[..., T]) -> Iterator[None]:
        self.register(name, factory)
        try:
            yield
        finally:
            self.unregister(name)


def _unavailable(factory: Any) -> str | None:
    """The factory's own reason it cannot build here (see :mod:`verikit.interfaces`), or None."""
    check = getattr(factory, "unavailable", None)
    if not callable(check):
        return None
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - a broken check is a reason too, never a crash
        return f"availability check failed: {one_line(exc)}"


backbones: Registry[Any] = Registry("backbone")
index_backends: Registry[Any] = Registry("index_backend")
detectors: Registry[Any] = Registry("detector")
segmenters: Registry[Any] = Registry("segmenter")
REGISTRIES = {r.kind: r for r in (backbones, detectors, segmenters, index_backends)}
