"""A pydantic ValidationError as one line naming the file and the field.

Local stand-in for the shared helper that branch ``schemas`` is adding (``verikit/schemas.py``):
same behaviour, so the gallery can switch to it with a one-line import change when it lands.
"""

from __future__ import annotations

from pydantic import ValidationError


def one_line_validation_error(exc: ValidationError, where: str) -> str:
    """``"<where>: field 'dim': Input should be a valid integer (got 'abc')"``, first error only,
    plus how many more there were."""
    errors = exc.errors(include_url=False)
    if not errors:
        return f"{where}: invalid ({' '.join(str(exc).split())})"
    first = errors[0]
    field = ".".join(str(p) for p in first.get("loc", ()))
    message = " ".join(str(first.get("msg", "invalid")).split())
    got = ""
    if first.get("type") != "missing" and "input" in first and not isinstance(first["input"], dict):
        shown = repr(first["input"])
        got = f" (got {shown[:60] + '...' if len(shown) > 60 else shown})"
    more = f"; and {len(errors) - 1} more problem(s)" if len(errors) > 1 else ""
    return f"{where}: field '{field}': {message}{got}{more}" if field else f"{where}: {message}{got}{more}"
