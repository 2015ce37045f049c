"""The one way verikit checks a file it reads: a declared pydantic schema, one-line errors.

Every file verikit loads (a model's ``config.json``, ``calibration.json``, the cohort, the pair
head, the SVM classifier, a ``--config`` training file, a benchmark's ``result.json`` and
``scores.npz``, the embedding cache) is described by a :class:`FileSchema` subclass declared next
to the code that owns the file, and is validated by it on load, before any value is used. This
module holds what those schemas share:

* :class:`FileSchema`: strict (no silent coercion: ``true`` is not a number, ``"3"`` is not an
  int), closed (an unknown key is refused, not ignored), finite (``NaN`` and ``Infinity``, which
  JSON files written by Python may hold, are refused wherever a number is expected) and frozen.
* :func:`validate`, :func:`validate_json`, :func:`read_json`: run a schema and turn pydantic's
  ``ValidationError`` into ONE line that names the file, the field and the allowed values, raised
  as the :class:`~verikit.errors.VerikitError` subclass the caller owns (``ModelError`` for a
  model's files, ``CalibrationError`` for a calibration, ...), so the CLI prints it and exits 1.
* :func:`read_npz` and the :func:`array` field type: ``.npz`` files (plain arrays, never pickle)
  validated by the same kind of schema, with each array's kind, rank and finiteness declared.

Why pydantic v2: it is already a core dependency, its validators are compiled (pydantic-core),
it parses JSON itself (so a ``NaN`` token reaches the schema and is refused with a field name),
and its errors are structured (location, type, allowed values), which is what a one-line message
naming the field needs. msgspec would be faster, but is one more dependency and checks less
(no constrained floats without NaN, coarser messages); speed does not matter for files of a few
kilobytes read once per command. Hand-written checks scattered through loaders are what this
replaces.

pydantic is imported here, not in ``verikit/__init__``: only loaders import this module, so
``verikit --help`` never pays for it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError,
                      create_model)

from .errors import DataError, VerikitError

__all__ = ["FileSchema", "validate", "validate_json", "read_json", "read_bytes", "read_npz", "describe", "array",
           "finite_json", "schema_of", "Sha256", "MAX_FILE_BYTES"]

S = TypeVar("S")

# A JSON file verikit reads is a few kilobytes (a calibration keeps 2,000 scores: ~40 kB); a file
# this large is not one of ours, and reading it whole would only waste memory.
MAX_FILE_BYTES = 64 << 20
_GOT_LIMIT = 60  # characters of an offending value quoted in a message


class FileSchema(BaseModel):
    """Base of every file schema: strict, closed, finite numbers only, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True,
                              arbitrary_types_allowed=True)


def schema_of(settings: type) -> type[FileSchema]:
    """The :class:`FileSchema` a settings dataclass declares through its annotated fields.

    For dataclasses that stay plain dataclasses in the code (``dataclasses.replace`` and
    ``asdict`` keep working) but whose annotations (``Literal`` choices, ``Field`` bounds,
    validators) are the schema of the file they are read from: one declaration, two uses.
    """
    hints = typing.get_type_hints(settings, include_extras=True)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (hints[f.name], default)
    return create_model(f"{settings.__name__}Schema", __base__=FileSchema, __module__=settings.__module__, **fields)


# -- turning a ValidationError into one line --------------------------------------------------------

def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _got(value: Any) -> str:
    """The offending value as the file spells it (JSON: null, true, NaN), on one short line."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    try:
        text = json.dumps(value, allow_nan=True, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())  # a message is one line whatever the value holds
    return text if len(text) <= _GOT_LIMIT else text[:_GOT_LIMIT - 3] + "..."


def _declared(schema: Any) -> dict[str, Any]:
    """Field name -> annotation of a schema (a pydantic model or a dataclass), else empty."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return {k: f.annotation for k, f in schema.model_fields.items()}
    if dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema)
        return {f.name: hints.get(f.name) for f in dataclasses.fields(schema)}
    return {}


def _fields_at(schema: Any, loc: tuple[Any, ...]) -> list[str]:
    """The field names the (nested) schema at ``loc`` declares, for "unknown field" messages."""
    for part in loc:
        declared = _declared(schema)
        if not isinstance(part, str) or part not in declared:
            return []
        schema = declared[part]
    return sorted(_declared(schema))


def _allowed_values(expected: str) -> str:
    """pydantic's "'a', 'b' or 'c'" as "a, b, c" (the way verikit lists choices everywhere)."""
    return expected.replace(" or ", ", ").replace("'", "")


def _field_label(field: str) -> str:
    return f"field '{field}'"


def _message(err: dict[str, Any], schema: Any, label: Callable[[str], str] = _field_label) -> str:
    loc, kind, msg = tuple(err.get("loc", ())), err.get("type", ""), str(err.get("msg", ""))
    field = _where(loc)
    if kind == "missing":
        return f"{label(field)} is missing" if field else "a required field is missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        else:
            hint = f" (allowed: {', '.join(allowed)})" if 0 < len(allowed) <= 15 else ""
        return f"unknown {label(field)}{hint}"
    if kind == "json_invalid":
        return f"not valid JSON ({err.get('ctx', {}).get('error', msg)})"
    value = err.get("input")
    if kind in ("literal_error", "enum"):
        allowed = _allowed_values(str(err.get("ctx", {}).get("expected", "")))
        msg = f"must be one of {allowed}" if ", " in allowed else f"must be {allowed}"
    own = kind in ("value_error", "assertion_error")  # a schema's own check: its message is complete
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    msg = msg.replace("Input should be", "must be").replace(" after validation", "")
    msg = msg.replace("List should have", "must have").replace("String should have", "must have")
    msg = msg[0].lower() + msg[1:] if msg else kind
    got = "" if own and (isinstance(value, (dict, list)) or "got " in msg) else f", got {_got(value)}"
    if not field:
        return msg if own else f"the top level {msg}{got}"
    sep = " " if msg.startswith(("must", "is ")) else ": "
    return f"{label(field)}{sep}{msg}{got}"


def describe(exc: ValidationError, schema: Any = None, label: Callable[[str], str] = _field_label) -> str:
    """The first violation in ``exc`` as one line (and how many more there are); ``label`` says how
    a field is named (``field 'x'`` in files; a command-line flag for options)."""
    errors = exc.errors(include_url=False)
    if not errors:
        return "is invalid"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return _message(errors[0], schema, label) + more


def _raise(error: type[VerikitError], what: str, source: str, detail: str) -> None:
    raise error(f"{what} '{source}' {detail}" if source else f"{what} {detail}")


# -- running a schema ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def validate(schema: type[S], data: Any, source: str, *, error: type[VerikitError] = DataError,
             what: str = "file", context: dict[str, Any] | None = None,
             label: Callable[[str], str] | None = None) -> S:
    """``data`` (already parsed: a dict, an npz's arrays) checked by ``schema`` (a :class:`FileSchema`);
    one-line ``error`` otherwise: "WHAT 'SOURCE' is malformed: field 'x' must be ...".

    Settings that came from no file (command-line options) pass ``source=""`` and a ``label``
    naming each field as the user typed it: "WHAT --x must be ...".
    """
    try:
        return _adapter(schema).validate_python(data, context=context)
    except ValidationError as exc:
        if label is not None:
            raise error(f"{what} {describe(exc, schema, label)}") from None
        _raise(error, what, source, f"is malformed: {describe(exc, schema)}")
    raise AssertionError("unreachable")


def validate_json(schema: type[S], raw: bytes | str, source: str, *, error: type[VerikitError] = DataError,
                  what: str = "file", context: dict[str, Any] | None = None) -> S:
    """JSON text checked by ``schema`` (pydantic parses it: NaN/Infinity tokens reach the schema)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            _raise(error, what, source, f"is malformed: not UTF-8 text (byte {exc.start})")
    try:
        return _adapter(schema).validate_json(raw, context=context)
    except ValidationError as exc:
        _raise(error, what, source, f"is malformed: {describe(exc, schema)}")
    raise AssertionError("unreachable")


def read_bytes(path: str | os.PathLike, *, error: type[VerikitError] = DataError, what: str = "file",
               limit: int = MAX_FILE_BYTES) -> bytes:
    """A small file's bytes, or a one-line error (missing, a folder, unreadable, too large)."""
    p = Path(path)
    try:
        if not p.is_file():
            _raise(error, what, str(p), "is not a file" if p.exists() else "does not exist")
        size = p.stat().st_size
        if size > limit:
            _raise(error, what, str(p), f"is {size:,} bytes; files of this kind are at most {limit:,}")
        return p.read_bytes()
    except OSError as exc:
        _raise(error, what, str(p), f"cannot be read ({exc.strerror or type(exc).__name__})")
    raise AssertionError("unreachable")


def read_json(schema: type[S], path: str | os.PathLike, *, error: type[VerikitError] = DataError,
              what: str = "file", context: dict[str, Any] | None = None) -> S:
    """Read a JSON file and check it with ``schema``: the whole load, every failure one line."""
    return validate_json(schema, read_bytes(path, error=error, what=what), str(path), error=error, what=what,
                         context=context)


def read_npz(path: str | os.PathLike, *, error: type[VerikitError] = DataError, what: str = "file") -> dict[str, Any]:
    """An ``.npz`` file's arrays (``allow_pickle=False``: an object array is refused), 0-d arrays as scalars.

    The caller validates the result with its schema (:func:`validate`).
    """
    import zipfile

    import numpy as np

    p = Path(path)
    if not p.is_file():
        _raise(error, what, str(p), "is not a file" if p.exists() else "does not exist")
    try:
        with np.load(p, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                _raise(error, what, str(p), "is a single .npy array, not an .npz archive")
            out: dict[str, Any] = {}
            for name in z.files:
                value = z[name]
                out[name] = value.item() if value.ndim == 0 else value
            return out
    except VerikitError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if "pickle" in reason:  # np.load's advice to allow pickle must never reach a user as a suggestion
            reason = "it is not an archive of plain arrays"
        _raise(error, what, str(p), f"is unreadable or malformed: not an .npz archive ({reason})")
    raise AssertionError("unreachable")


# -- field types the schemas share -----------------------------------------------------------------

def _sha256(value: str) -> str:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("must be a SHA-256 digest: 64 lowercase hex digits")
    return value


# A model fingerprint or a file digest.
Sha256 = Annotated[str, AfterValidator(_sha256)]


def array(*, ndim: int, kind: str, finite: bool = True, neg_inf: bool = False, dtype: Any = None) -> Any:
    """A numpy array field: ``ndim`` dimensions, dtype kind in ``kind`` (``"f"`` float, ``"iu"``
    integers, ``"U"`` text, ``"b"`` bool), all finite when ``finite`` (``neg_inf``: except ``-inf``,
    the mark of a score that could not be computed); cast to ``dtype`` when given."""
    import numpy as np

    names = {"f": "floats", "i": "integers", "u": "integers", "U": "text", "b": "booleans"}
    want = " or ".join(dict.fromkeys(names.get(k, k) for k in kind))

    def check(value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            if ndim == 0 or np.ndim(value) != ndim:
                raise ValueError(f"must be a {ndim}-D array of {want}")
            value = np.asarray(value)
        if value.ndim != ndim:
            raise ValueError(f"must be a {ndim}-D array of {want}, not {value.ndim}-D of shape {value.shape}")
        if value.dtype.kind not in kind and not (value.size == 0 and kind != "U"):
            raise ValueError(f"must hold {want}, not dtype {value.dtype}")
        if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
            if not neg_inf:
                raise ValueError("must hold finite numbers only (it has NaN or infinity)")
            if not (np.isfinite(value) | np.isneginf(value)).all():
                raise ValueError("must hold finite numbers or -inf (unscored) only (it has NaN or +infinity)")
        return value if dtype is None else value.astype(dtype, copy=False)

    return Annotated[Any, BeforeValidator(check)]


def _finite_json(value: Any, where: str = "") -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must hold finite numbers only ({where or 'a value'} is {_got(value)})")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_json(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{where}[{i}]")
    return value


def finite_json(kind: type = dict) -> Any:
    """A free-form JSON value of type ``kind`` (an object by default) holding no NaN or infinity."""
    return Annotated[kind, AfterValidator(_finite_json)]
