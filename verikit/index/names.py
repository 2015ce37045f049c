"""Which strings may name an identity, and the one form a name is stored and looked up in.

An identity name is data that ends up in terminals, tables, JSON, file listings and audit logs,
so it is held to a rule that every output can rely on:

* it is Unicode text of 1 to :data:`MAX_NAME_LENGTH` characters, stored in NFC form (the same
  name typed on different systems, composed or decomposed, is one identity);
* it neither starts nor ends with white space;
* it holds no control characters (C0/C1, DEL: newlines, tabs, terminal escape sequences), no
  line or paragraph separators, no unpaired surrogates (an undecodable file name), and no
  invisible format characters (bidirectional overrides, zero-width spaces, the BOM), except the
  zero-width (non-)joiners that some scripts and emoji need.

Everything else is allowed: any script, emoji, punctuation, brackets such as ``[/]``, quotes.
Outputs still print names as data (never markup), escaping anything unprintable they meet in a
gallery made before this rule.
"""

from __future__ import annotations

import unicodedata

from ..errors import GalleryError

MAX_NAME_LENGTH = 200
_JOINERS = {"\u200c", "\u200d"}  # ZWNJ / ZWJ: part of Persian, Indic and emoji spelling
_REFUSED_CATEGORIES = {"Cc", "Cs", "Zl", "Zp", "Cf"}

RULE = (f"1-{MAX_NAME_LENGTH} characters, no leading/trailing space, no control, format or "
        "separator characters (newlines, tabs, escape sequences, bidi overrides, zero-width spaces)")


def forbidden_character(name: str) -> str | None:
    """The first character of ``name`` that no identity name may hold, or None."""
    for ch in name:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES and ch not in _JOINERS:
            return ch
    return None


def check_name(name: object) -> str:
    """Return ``name`` in its stored (NFC) form, or raise a one-line GalleryError saying why not."""
    if not isinstance(name, str):
        raise GalleryError(f"invalid identity name {name!r}: a name is text ({RULE})")
    bad = forbidden_character(name)  # before normalising: NFC of a lone surrogate would raise
    if bad is not None:
        raise GalleryError(f"invalid identity name {name!r}: it holds the character {bad!r} "
                           f"({unicodedata.category(bad)}); a name has {RULE}")
    stored = unicodedata.normalize("NFC", name)
    if not stored or not (1 <= len(stored) <= MAX_NAME_LENGTH) or stored != stored.strip():
        shown = name if len(name) <= 60 else name[:60] + "..."
        raise GalleryError(f"invalid identity name {shown!r}: a name has {RULE}")
    return stored


def lookup_forms(name: str) -> tuple[str, ...]:
    """The stored forms a looked-up name may match: as given, and NFC (galleries made before
    names were normalised may hold other forms)."""
    if not isinstance(name, str) or forbidden_character(name) is not None:
        return (name,) if isinstance(name, str) else ()
    nfc = unicodedata.normalize("NFC", name)
    return (name,) if nfc == name else (name, nfc)
