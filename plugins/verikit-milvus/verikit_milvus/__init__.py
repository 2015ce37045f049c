"""Milvus as a gallery index backend: ``--index milvus`` (Milvus Lite, a file in the gallery
folder) or ``--index milvus:http://host:19530`` (a standalone or cluster server).

Which side holds the truth: **SQLite does**, exactly as with faiss. The Milvus collection is a
derived index, labelled and caught up from ``gallery.sqlite`` by verikit's ``DerivedIndex``
(docs/concurrency.md): writes commit to SQLite first, then reach Milvus; every search first
compares the index's label with the database and catches up (idempotent upserts of the templates
added since, deletes of the tombstoned ids). Why: the gallery's guarantees (one transaction per
change, crash safety at any instant, erasure of removed templates, the audit log in the same
transaction) need a single transactional store, and Milvus has no transactions spanning the
identity rows and the vectors. A writer killed between its SQLite commit and its Milvus upsert
therefore loses nothing: the next process catches the collection up.

One collection per gallery, ``verikit_<gallery uid>``, with ``id`` (the template id, INT64 primary
key) and ``vector`` (FLOAT_VECTOR, inner product: templates are unit length, so scores are cosine
similarities). The index type is ``FLAT`` (exact) on Milvus Lite, and by default on a server too;
``milvus:URI,index=HNSW`` (or ``IVF_FLAT``, ``AUTOINDEX``...) asks the server for another one.
What verikit saves as ``index.faiss`` is a small JSON pointer (URI and collection); ``index.json``
records the state, and loading checks the collection's own ids against it, as for faiss.

Credentials for a server come from the environment, never from the spec (which is recorded in
``gallery.sqlite``): ``VERIKIT_MILVUS_TOKEN`` (``user:password`` or an API key) and
``VERIKIT_MILVUS_DB`` (database name, default ``default``).

Milvus Lite opens its file from one process at a time (a second one gets "Open local milvus
failed"): the client is opened on first use and released when the gallery is closed; for many
processes at once, use a server.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from verikit.plugin_api import GalleryError, PluginError, one_line, write_atomic

LITE_FILE = "index.milvus.db"
FIELD_ID, FIELD_VEC = "id", "vector"
BATCH = 2_000  # rows per insert/delete request: well under Milvus's default 64 MiB gRPC message limit
MAX_TOPK = 16_384  # Milvus's limit on k
INDEX_TYPES = {"FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "AUTOINDEX", "DISKANN", "SCANN"}

F = TypeVar("F", bound=Callable[..., Any])
_clients: dict[tuple[str, str, str], Any] = {}  # one client per (uri, token, db) in a process


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence these libraries' loggers for a moment: verikit reports their failures as one line."""
    logs = [logging.getLogger(n) for n in loggers]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for log, level in zip(logs, levels):
            log.setLevel(level)


def _reason(exc: BaseException) -> str:
    """pymilvus's message without its exception repr around it."""
    return one_line(getattr(exc, "message", None) or exc)


def _reported(method: F) -> F:
    """A Milvus failure (server down, refused credentials, a quota) becomes a one-line GalleryError
    naming the server and collection; the gallery's commit in SQLite stands either way."""

    @functools.wraps(method)
    def wrapper(self: "MilvusIndex", *args: Any, **kwargs: Any) -> Any:
        from pymilvus.exceptions import MilvusException

        try:
            return method(self, *args, **kwargs)
        except MilvusException as exc:
            raise GalleryError(f"Milvus at '{self.uri}', collection {self.collection!r}: {_reason(exc)}") from exc

    return wrapper  # type: ignore[return-value]


def _client(uri: str, token: str, db: str):
    key = (uri, token, db)
    if key not in _clients:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        try:
            with _quiet("milvus_lite.server_manager", "milvus_lite"):  # it logs a traceback, we say one line
                _clients[key] = (MilvusClient(uri=uri, token=token, db_name=db) if db
                                 else MilvusClient(uri=uri, token=token))
        except MilvusException as exc:
            hint = (" (Milvus Lite opens a file from one process at a time: is another process using this gallery? "
                    "Use a Milvus server for concurrent access)") if not uri.startswith(("http", "tcp", "grpc")) else ""
            raise GalleryError(f"cannot open Milvus at '{uri}': {_reason(exc)}{hint}") from exc
    return _clients[key]


def _release(uri: str, token: str, db: str) -> None:
    client = _clients.pop((uri, token, db), None)
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing a client that is already gone must not hide the caller's work
            pass
    if uri.endswith(".db"):
        # Milvus Lite serves the file from a thread of this process until it exits; stopping it
        # releases the file for another process (pymilvus's close() leaves it running).
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


class MilvusIndex:
    """The IndexBackend protocol over one Milvus collection (see the module docstring)."""

    exact: bool

    def __init__(self, dim: int, *, uri: str | None, index_type: str, gallery: Path | None, uid: str | None) -> None:
        self.dim = int(dim)
        self.server_uri = uri
        self.index_type = index_type
        self.exact = index_type == "FLAT"
        self.gallery, self.uid = gallery, uid
        self.token = os.environ.get("VERIKIT_MILVUS_TOKEN", "")
        self.db = os.environ.get("VERIKIT_MILVUS_DB", "")
        self._ready = False
        self._shared = bool(uri)  # a server: other processes use the collection at the same time
        self._stale: set[int] | None = None  # during a rebuild on a server: ids not re-added yet

    # -- where ------------------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        if self.server_uri:
            return self.server_uri
        if self.gallery is None:
            raise GalleryError("index 'milvus' (Milvus Lite) needs its gallery folder; it is built by a Gallery")
        return str(Path(self.gallery) / LITE_FILE)

    @property
    def collection(self) -> str:
        if not self.uid:
            raise GalleryError("index 'milvus' needs the gallery's uid; it is built by a Gallery")
        return f"verikit_{self.uid}"

    def _c(self):
        client = _client(self.uri, self.token, self.db)
        if not self._ready:
            self._ensure(client)
            self._ready = True
        return client

    def _ensure(self, client) -> None:
        from pymilvus import DataType, MilvusClient

        if client.has_collection(self.collection):
            described = client.describe_collection(self.collection)
            dims = [f.get("params", {}).get("dim") for f in described.get("fields", []) if f.get("name") == FIELD_VEC]
            if dims and int(dims[0]) != self.dim:
                raise GalleryError(f"Milvus collection {self.collection!r} at '{self.uri}' has dimension {dims[0]}, "
                                   f"expected {self.dim}")
            client.load_collection(self.collection)
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(FIELD_ID, DataType.INT64, is_primary=True)
        schema.add_field(FIELD_VEC, DataType.FLOAT_VECTOR, dim=self.dim)
        params = client.prepare_index_params()
        params.add_index(FIELD_VEC, index_type=self.index_type, metric_type="IP")
        # Strong: a search right after this process's (or another's) upsert sees it.
        client.create_collection(self.collection, schema=schema, index_params=params, consistency_level="Strong")

    # -- IndexBackend ------------------------------------------------------------------------------
    @property
    @_reported
    def ntotal(self) -> int:
        rows = self._c().query(self.collection, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    @property
    def needs_training(self) -> bool:
        return False  # Milvus builds its own index structures on the server

    def train(self, vectors: np.ndarray) -> None:  # never called: needs_training is False
        return None

    @_reported
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: idempotent, so a process catching up over rows another process already sent is harmless."""
        client = self._c()
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        if self._stale is not None:
            self._stale.difference_update(ids.tolist())
        for start in range(0, len(ids), BATCH):
            rows = [{FIELD_ID: int(i), FIELD_VEC: v} for i, v in zip(ids[start:start + BATCH],
                                                                     vecs[start:start + BATCH].tolist())]
            client.upsert(self.collection, rows)
        if not self.server_uri:
            # Milvus Lite scans unflushed rows slowly (measured: ~150 ms per call at 10k x 64 rows
            # unflushed, 10-40 ms flushed); a server flushes by itself.
            client.flush(self.collection)

    @_reported
    def remove(self, ids: np.ndarray) -> bool:
        """A Milvus delete only writes a tombstone; the vectors stay in the data files until a
        compaction rewrites them. Milvus Lite cannot be asked to compact, so there this returns False
        and the gallery rebuilds the collection from SQLite (the drop deletes the old files): the
        removed templates' bytes are then gone, as ``gallery remove`` promises. A server is asked to
        compact after the delete; when its files are rewritten is up to the server (docs/scale.md)."""
        if not self._shared:
            return False
        client = self._c()
        ids = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        for start in range(0, len(ids), BATCH):
            client.delete(self.collection, ids=ids[start:start + BATCH])
        client.compact(self.collection)
        return True

    @_reported
    def begin_rebuild(self) -> None:
        """A rebuild from SQLite starts (every template is then added). Milvus Lite (one process):
        the collection is dropped and made anew, which also deletes the files of removed rows. A
        server (shared by other processes that keep searching): nothing is dropped; the ids held now
        are noted, and :meth:`end_rebuild` deletes those the rebuild did not add, so a concurrent
        search never misses a template the database holds."""
        if not self._shared:
            client = _client(self.uri, self.token, self.db)
            if client.has_collection(self.collection):
                client.drop_collection(self.collection)
            self._ready = False
            self._c()
            return
        self._stale = set(self.ids().tolist())

    @_reported
    def end_rebuild(self) -> None:
        stale, self._stale = self._stale, None
        if stale:
            client = self._c()
            ids = sorted(stale)
            for start in range(0, len(ids), BATCH):
                client.delete(self.collection, ids=ids[start:start + BATCH])
            client.compact(self.collection)

    @_reported
    def drop(self) -> None:
        """Delete the collection and, for Milvus Lite, its folder (`gallery migrate` away from Milvus)."""
        client = _client(self.uri, self.token, self.db)
        if client.has_collection(self.collection):
            client.drop_collection(self.collection)
        self.close()
        if not self.server_uri:
            shutil.rmtree(self.uri, ignore_errors=True)

    @_reported
    def ids(self) -> np.ndarray:
        """Every template id the collection holds (what the gallery checks a saved state against)."""
        parts = []
        # Milvus Lite lacks the AllocTimestamp call the iterator tries first: it logs an error and a
        # warning, then uses a client-side timestamp (correct here). Keep that noise off stderr.
        with _quiet("pymilvus.client.iterator.query_iterator", "grpc._server"):
            it = self._c().query_iterator(self.collection, batch_size=BATCH * 8, output_fields=[FIELD_ID])
            try:
                while batch := it.next():
                    parts.append(np.fromiter((r[FIELD_ID] for r in batch), dtype=np.int64, count=len(batch)))
            finally:
                it.close()
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @_reported
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (rows in the order asked; NaN rows for ids it lacks)."""
        rows = self._c().get(self.collection, ids=[int(i) for i in ids], output_fields=[FIELD_VEC])
        found = {int(r[FIELD_ID]): r[FIELD_VEC] for r in rows}
        out = np.full((len(ids), self.dim), np.nan, dtype=np.float32)
        for row, i in enumerate(ids):
            if int(i) in found:
                out[row] = found[int(i)]
        return out

    @_reported
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = int(k)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        ids = np.full((len(q), k), -1, dtype=np.int64)
        if len(q) == 0 or k < 1:
            return scores, ids
        if k > MAX_TOPK:
            raise GalleryError(f"Milvus returns at most {MAX_TOPK} neighbours per query, {k} were asked")
        hits = self._c().search(self.collection, data=q.tolist(), limit=k, output_fields=[FIELD_ID],
                                search_params={"metric_type": "IP"}, anns_field=FIELD_VEC)
        for row, found in enumerate(hits):
            for col, hit in enumerate(found):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    @_reported
    def save(self, path: str | Path) -> None:
        """Flush the collection and write a pointer to it where faiss would write its index file."""
        self._c().flush(self.collection)
        pointer = {"backend": "milvus", "uri": self.server_uri or LITE_FILE, "collection": self.collection,
                   "dim": self.dim, "index_type": self.index_type}
        write_atomic(Path(path), json.dumps(pointer).encode())

    @_reported
    def load(self, path: str | Path) -> None:
        """Attach to the collection a saved pointer names; refuse one for another place or gallery."""
        try:
            pointer = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise GalleryError(f"'{path}' is not a Milvus index pointer ({one_line(exc)})") from exc
        if not isinstance(pointer, dict) or pointer.get("collection") != self.collection or \
                pointer.get("uri") != (self.server_uri or LITE_FILE) or pointer.get("dim") != self.dim:
            raise GalleryError(f"'{path}' points to another Milvus collection than {self.collection!r}")
        self._ready = False
        self._c()

    def close(self) -> None:
        """Release the client: a Milvus Lite file is then free for another process."""
        if self.gallery is not None or self.server_uri:
            _release(self.uri, self.token, self.db)
        self._ready = False


def _parse(argument: str | None) -> tuple[str | None, str]:
    uri, index_type = None, "FLAT"
    if not argument:
        return uri, index_type
    head, *options = [p.strip() for p in argument.split(",")]
    if head:
        if not head.startswith(("http://", "https://", "tcp://", "grpc://")):
            raise PluginError(f"index 'milvus:{argument}': expected a server URI such as http://host:19530 "
                              "(or plain 'milvus' for a Milvus Lite file in the gallery folder)")
        uri = head
    for opt in options:
        key, sep, value = opt.partition("=")
        if key != "index" or not sep or value.upper() not in INDEX_TYPES:
            raise PluginError(f"index 'milvus:{argument}': unknown option {opt!r} "
                              f"(expected index=one of {', '.join(sorted(INDEX_TYPES))})")
        index_type = value.upper()
    if uri is None and index_type != "FLAT":
        raise PluginError(f"index 'milvus:{argument}': Milvus Lite supports only the exact FLAT index here")
    return uri, index_type


def create(argument: str | None = None, *, dim: int, gallery: str | Path | None = None,
           uid: str | None = None) -> MilvusIndex:
    """Entry-point factory. Without ``gallery``/``uid`` (a spec check before the gallery exists)
    nothing is opened; the gallery passes both when it builds its index."""
    uri, index_type = _parse(argument)
    return MilvusIndex(dim, uri=uri, index_type=index_type, gallery=Path(gallery) if gallery else None, uid=uid)


create.gallery_bound = True  # type: ignore[attr-defined]  # DerivedIndex passes gallery= and uid=
