"""API keys for ``verikit serve``: a keys file that holds only salted hashes, and the check of a
presented key against it in constant time.

A key looks like ``vk_<id>_<secret>``: ``id`` (12 hex digits) names the record and is not secret;
``secret`` is 32 random bytes (``secrets.token_urlsafe``). The file stores, per key, its id, a name,
its scopes, a random salt and SHA-256(salt + secret); the key itself is shown once, when made, and
never stored. A fast hash is enough here, unlike for passwords: 256 random bits cannot be
guessed, so key stretching would only make every request slower. Comparison uses
:func:`hmac.compare_digest`, and an unknown id still costs one hash and one comparison, so timing
tells an attacker nothing about which ids exist.

Scopes: ``read`` (verify, search, list and show identities, gallery info), ``write`` (enroll, rename,
remove, metadata), ``admin`` (everything, including the metrics). The file is written atomically
with mode 0600 and is re-read when it changes, so ``verikit serve keys revoke`` takes effect on a
running server at its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import DataError

SCOPES = ("read", "write", "admin")
Scope = Literal["read", "write", "admin"]
_KEY = re.compile(r"^vk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class KeyRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    name: str = Field(pattern=_NAME.pattern)
    scopes: tuple[Scope, ...] = Field(min_length=1)
    salt: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str


class KeysFile(BaseModel):
    """The declared schema of a keys file (``version`` 1)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    keys: list[KeyRecord] = Field(default_factory=list)


class KeysError(DataError):
    """A keys file that cannot be read, or a key operation that cannot be done."""


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def load_keys(path: Path) -> KeysFile:
    """Read and validate a keys file (one-line :class:`KeysError` naming it when it is not valid)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeysError(f"no keys file at '{path}' (make a key with `verikit serve keys add NAME --keys {path}`)")
    except OSError as exc:
        raise KeysError(f"cannot read keys file '{path}': {exc.strerror or exc}") from exc
    try:
        data = KeysFile.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise KeysError(f"keys file '{path}' is not valid at {where}: {first['msg']}") from None
    names = [k.name for k in data.keys]
    if len(set(names)) != len(names) or len({k.id for k in data.keys}) != len(data.keys):
        raise KeysError(f"keys file '{path}' names a key twice")
    return data


def _save(path: Path, data: KeysFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, even briefly
    with os.fdopen(fd, "w") as f:
        f.write(data.model_dump_json(indent=2) + "\n")
    os.replace(tmp, path)


def add_key(path: Path, name: str, scopes: list[str]) -> tuple[str, KeyRecord]:
    """Make a key: returns the key (shown once) and its stored record."""
    if not _NAME.match(name):
        raise KeysError(f"key name {name!r}: use 1-64 letters, digits or ._@- (starting with a letter or digit)")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise KeysError(f"scope(s) {', '.join(unknown) or 'none given'}: choose from {', '.join(SCOPES)}")
    data = load_keys(path) if path.exists() else KeysFile()
    if any(k.name == name for k in data.keys):
        raise KeysError(f"keys file '{path}' already has a key named {name!r} (revoke it first)")
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
    record = KeyRecord(id=key_id, name=name, scopes=tuple(s for s in SCOPES if s in scopes), salt=salt,
                       sha256=_digest(salt, secret), created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    data.keys.append(record)
    _save(path, data)
    return f"vk_{key_id}_{secret}", record


def revoke_key(path: Path, name: str) -> KeyRecord:
    data = load_keys(path)
    kept = [k for k in data.keys if k.name != name]
    if len(kept) == len(data.keys):
        raise KeysError(f"keys file '{path}' has no key named {name!r}")
    gone = next(k for k in data.keys if k.name == name)
    _save(path, KeysFile(keys=kept))
    return gone


_DUMMY = KeyRecord(id="0" * 12, name="dummy", scopes=("read",), salt="0" * 32, sha256="0" * 64, created_at="")


@dataclass
class KeyStore:
    """The keys a running server accepts, re-read whenever the file changes."""

    path: Path
    _data: KeysFile | None = None
    _stamp: tuple[int, int] | None = None

    def current(self) -> KeysFile:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if self._data is None or stamp != self._stamp:
            # A file that became unreadable or invalid accepts nothing rather than the old keys.
            try:
                self._data = load_keys(self.path)
            except KeysError:
                self._data = KeysFile()
            self._stamp = stamp
        return self._data

    def check(self, presented: str) -> KeyRecord | None:
        """The record of a valid key, or None; constant time in the secret."""
        m = _KEY.match(presented or "")
        key_id, secret = (m.group(1), m.group(2)) if m else ("", "x" * 43)
        record = next((k for k in self.current().keys if k.id == key_id), None)
        candidate = record or _DUMMY
        ok = hmac.compare_digest(_digest(candidate.salt, secret), candidate.sha256)
        return record if (ok and record is not None) else None
