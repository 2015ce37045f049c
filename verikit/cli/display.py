"""User strings on a terminal: always data, never markup or control sequences.

Identity names, metadata, file names and audit details come from users (or from a gallery made
by someone else). Printed through rich they would be read as markup (``[/]`` raises, ``[red]``
restyles), and printed raw their control characters (escape sequences, carriage returns, bidi
overrides) would act on the terminal. :func:`safe_text` makes a :class:`rich.text.Text` (never
parsed as markup) in which every such character is shown as a visible escape such as ``\\x1b``.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from rich.text import Text

_SHOWN_AS_ESCAPES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_KEPT = {"\u200c", "\u200d"}  # zero-width (non-)joiners: part of how some scripts and emoji are spelled


def visible(value: Any) -> str:
    """``str(value)`` with every control, format, separator, private or unassigned character escaped."""
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == " " or (unicodedata.category(ch) not in _SHOWN_AS_ESCAPES) or ch in _KEPT:
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


def safe_text(value: Any, style: str = "") -> Text:
    """A rich Text of ``value`` shown as data: no markup parsed, unprintable characters escaped."""
    return Text(visible(value), style=style)
