"""A process's copy of the gallery's vector index, kept caught up with the database.

The index is derived data: SQLite holds the templates, and each process holds an index built
from them, labelled with the :class:`~verikit.index.state.IndexState` it reflects. Before the
index answers anything, :meth:`DerivedIndex.sync` compares that label with the database's own
numbers (one small query) and, when they differ, catches up: templates with ids above the
label's ``seq`` are added, tombstoned ids are removed, and the result must then match the
database exactly or the index is rebuilt from the templates. The saved ``index.faiss`` is only a
head start for that process: loaded when its ids check out, caught up like any other copy, and
replaced only by a newer state (see docs/concurrency.md).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import GalleryError
from ..interfaces import IndexBackend
from ..registry import index_backends, parse_spec
from .state import (INDEX_FILE, INDEX_META_FILE, IndexState, id_hash, index_lock, read_record,
                    remove_leftover_temporaries, write_file_atomic)
from .store import db_state, decode_vectors, marker

CHUNK = 65_536


class DerivedIndex:
    """The backend index plus the exact state it holds (None: nothing trustworthy yet)."""

    def __init__(self, folder: Path, *, uid: str, spec: str, dim: int, where: str) -> None:
        self.folder, self.uid, self.spec, self.dim, self.where = folder, uid, spec, dim, where
        self.backend: IndexBackend = self._new_backend()
        self.state: IndexState | None = None
        self.saved_generation: int | None = None  # generation of the files on disk we wrote or verified
        self.rebuilds = 0  # how often this process rebuilt from scratch (tests and `gallery info` read it)

    def _new_backend(self) -> IndexBackend:
        """A fresh backend of this gallery's spec. A factory marked ``gallery_bound`` (an index kept
        outside the process, e.g. verikit-milvus) is also told the gallery folder and uid."""
        if getattr(index_backends.get(parse_spec(self.spec)[0]), "gallery_bound", False):
            return index_backends.create(self.spec, dim=self.dim, gallery=self.folder, uid=self.uid)
        return index_backends.create(self.spec, dim=self.dim)

    def close(self) -> None:
        """Release what the backend holds outside this process (a Milvus client), if anything."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    # -- keeping up -------------------------------------------------------------------------------
    def sync(self, conn: sqlite3.Connection, target: tuple[int, int, int, int] | None = None) -> None:
        """Make the index reflect the database snapshot ``conn`` is reading (call inside one);
        ``target``: that snapshot's :func:`~verikit.index.store.db_state` when the caller read it."""
        target = db_state(conn) if target is None else target
        if self.state is None or not self.state.matches(*target):
            self._follow(conn, target)
        self._replan(conn, target)

    def _follow(self, conn: sqlite3.Connection, target: tuple[int, int, int, int]) -> None:
        generation = target[0]
        tried_saved = self.state is None or self.state.generation > generation
        if tried_saved:
            self._load_saved(generation)
        if self.state is not None and self.state.generation <= generation and self._catch_up(conn, target):
            return
        if not tried_saved:
            # The saved file may already be at this generation (another process did the work): cheaper
            # than a rebuild when this index type cannot remove, and checked like any other copy.
            self._load_saved(generation)
            if self.state is not None and self.state.generation <= generation and self._catch_up(conn, target):
                return
        self.rebuild(conn)

    def _catch_up(self, conn: sqlite3.Connection, target: tuple[int, int, int, int]) -> bool:
        """Apply the database's changes since this index's generation; False if that cannot be done
        (the index is then unusable until rebuilt or reloaded)."""
        generation, count, hash_, seq = target
        state = self.state
        assert state is not None
        removed = np.array([r[0] for r in conn.execute(
            "SELECT id FROM removed_templates WHERE generation > ? AND id <= ?", (state.generation, state.seq))],
            dtype=np.int64)
        if len(removed):
            if not self.backend.remove(removed):
                self.state = None
                return False
            state = state.minus(removed, generation)
        for ids, vecs in self.iter_templates(conn, "WHERE id > ?", (state.seq,)):
            if self.backend.needs_training:
                self.state = None
                return False
            self.backend.add(ids, vecs)
            state = state.plus(ids, generation, int(ids[-1]))
        state = replace(state, generation=generation, seq=max(state.seq, seq))
        if not state.matches(*target):
            self.state = None
            return False
        self.state = state
        return True

    def applied(self, generation_before: int, generation: int, *, added: tuple[np.ndarray, np.ndarray] | None = None,
                removed: np.ndarray | None = None, seq: int = 0) -> bool:
        """Apply this process's own committed change directly when the index was at the generation
        the change was built on; False when it was not (the caller then syncs from the database)."""
        state = self.state
        if state is None or state.generation != generation_before:
            return False
        if removed is not None and len(removed):
            if not self.backend.remove(removed):
                self.state = None
                return False
            state = state.minus(removed, generation)
        if added is not None:
            if self.backend.needs_training:
                self.state = None
                return False
            self.backend.add(*added)
            state = state.plus(added[0], generation, seq)
        self.state = replace(state, generation=generation, seq=max(state.seq, seq))
        return True

    def _replan(self, conn: sqlite3.Connection, target: tuple[int, int, int, int]) -> None:
        """A managed approximate index: switch layout or rebuild (retrain, tune again) when the size
        calls for it (verikit.index.approximate). Another process may have done the work already: a
        saved copy that needs nothing is loaded and caught up instead."""
        action = getattr(self.backend, "action", None)
        todo = action(self.state.ntotal) if action is not None and self.state is not None else None
        if todo is None:
            return
        self.state = None
        self._load_saved(target[0])
        if (self.state is not None and self.state.generation <= target[0] and self._catch_up(conn, target)
                and self.backend.action(self.state.ntotal) is None):
            return
        self.rebuild(conn)

    @property
    def tuning(self) -> dict[str, Any] | None:
        """The measured recall and search parameter of a managed approximate index (else None)."""
        return getattr(self.backend, "tuning", None)

    def invalidate(self) -> None:
        self.state = None

    # -- from scratch -------------------------------------------------------------------------------
    def iter_templates(self, conn: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = ()
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, checked vectors) in id order, in chunks."""
        cur = conn.execute(f"SELECT id, vector FROM templates {where} ORDER BY id", params)
        try:
            while rows := cur.fetchmany(CHUNK):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                yield ids, decode_vectors(rows, self.dim, self.where)
        finally:
            cur.close()  # an unfinished SELECT would keep its read snapshot (and block erasure) alive

    def rebuild(self, conn: sqlite3.Connection) -> None:
        """Build the index from every template in the snapshot ``conn`` reads, and check it."""
        generation, count, hash_, seq = db_state(conn)
        backend = self._new_backend()
        begin = getattr(backend, "begin_rebuild", None)
        if begin is not None:  # an index kept outside this process (Milvus): it may hold rows already
            begin()
        prepare = getattr(backend, "prepare", None)
        held = None  # a managed approximate index: templates kept out of it until it is tuned
        if prepare is not None:  # managed: the layout follows the size, trained on a sample
            want = prepare(count)
            if not backend.exact:
                from .tuning import held_out_sample

                held = held_out_sample(conn, count, self.dim, self.where)
            if want:
                backend.train(self._training_sample(conn, want, count, seed=generation,
                                                    exclude=held[0] if held is not None else None))
        elif backend.needs_training:
            # Approximate indexes learn their partition from the data itself.
            vecs = [v for _, v in self.iter_templates(conn)]
            if vecs:
                backend.train(np.concatenate(vecs))
        n, h = 0, 0
        for ids, vecs in self.iter_templates(conn):
            n, h = n + len(ids), (h + id_hash(ids)) % (1 << 64)
            if held is not None:
                keep = ~np.isin(ids, held[0])
                ids, vecs = ids[keep], vecs[keep]
            if len(ids):
                backend.add(ids, vecs)
        end = getattr(backend, "end_rebuild", None)
        if end is not None:  # ... and drops what it held that the database does not
            end()
        state = IndexState(self.uid, self.spec, generation, n, h, seq)
        if not state.matches(generation, count, hash_, seq):
            raise GalleryError(f"{self.where}: the templates table holds {n} templates but the gallery's meta "
                               f"records {count} (or other ids): gallery.sqlite is damaged; restore it from a backup")
        if held is not None:
            from .tuning import tune

            # Measured on queries the index does not hold, then they are added (verikit.index.tuning).
            tune(conn, backend, lambda: self.iter_templates(conn), self.dim, self.where, held)
        self.backend, self.state = backend, state
        self.rebuilds += 1

    def _training_sample(self, conn: sqlite3.Connection, want: int, count: int, *, seed: int,
                         exclude: np.ndarray | None = None) -> np.ndarray:
        """About ``want`` templates drawn uniformly in one streaming pass (bounded memory), none of
        the ids in ``exclude`` (the held-out tuning queries: the partition must not have seen them)."""
        exclude = np.zeros(0, np.int64) if exclude is None else exclude
        count -= len(exclude)
        rng = np.random.default_rng(seed)
        p = min(1.0, 1.1 * want / max(count, 1))  # a little over, trimmed below: never under faiss's minimum
        parts = [v[~np.isin(ids, exclude) & ((rng.random(len(v)) < p) if p < 1.0 else True)]
                 for ids, v in self.iter_templates(conn)]
        return np.concatenate(parts)[:want]  # 10% over: short of ``want`` only with negligible chance

    # -- the saved copy ---------------------------------------------------------------------------------
    def _load_saved(self, generation: int) -> None:
        """Replace this copy by the saved one when the saved one is of this gallery, no newer than
        the database, and its own ids are the ones its record claims; otherwise keep this copy."""
        if not (self.folder / INDEX_FILE).is_file():
            return
        with index_lock(self.folder, exclusive=False):
            record = read_record(self.folder)
            if (record is None or record.uid != self.uid or record.index != self.spec or record.generation > generation
                    or (self.state is not None and self.state.generation >= record.generation
                        and self.state.generation <= generation)):
                return
            backend = self._new_backend()
            try:
                backend.load(self.folder / INDEX_FILE)
            except (RuntimeError, OSError, MemoryError, GalleryError):
                return  # unreadable: it is derived data, so it is rebuilt
        if backend.ntotal != record.ntotal:
            return
        restore = getattr(backend, "restore", None)
        if restore is not None and not restore(record.tuning):
            return  # a managed index whose recorded tuning does not fit the file: rebuilt
        held_ids = getattr(backend, "ids", None)
        if callable(held_ids) and id_hash(held_ids()) != record.id_hash:
            return  # an index.faiss that is not the one index.json describes
        self.backend, self.state = backend, record
        self.saved_generation = record.generation

    def save_after_removal(self, conn: sqlite3.Connection, generation: int) -> None:
        """After a removal committed at ``generation``: save this index when it reflects the removal;
        otherwise (it could not be updated) delete saved files older than the removal, which hold
        the removed vectors. The next process to open the gallery rebuilds them from SQLite."""
        if self.state is not None and self.state.generation >= generation and self.save(conn, force=True):
            return
        try:
            with index_lock(self.folder, exclusive=True):
                remove_leftover_temporaries(self.folder)
                disk = read_record(self.folder)
                if disk is None or disk.uid != self.uid or disk.generation < generation:
                    (self.folder / INDEX_META_FILE).unlink(missing_ok=True)
                    (self.folder / INDEX_FILE).unlink(missing_ok=True)
        except OSError as exc:
            raise GalleryError(f"{self.where}: the removed templates are gone from the database, but the saved index "
                               f"that still holds them could be neither rewritten nor deleted ({exc.strerror}); "
                               f"delete '{self.folder / INDEX_FILE}' by hand") from exc

    def save(self, conn: sqlite3.Connection, *, force: bool = False) -> bool:
        """Write index.faiss + index.json, unless the files on disk already hold this state or a
        newer one that is still valid for the database (a reader never moves the files back).

        False when the files could not be written (a full disk, a read-only folder): they are
        derived data, so that costs the next process a rebuild, never a wrong answer.
        """
        state = self.state
        if state is None or (not force and self.saved_generation == state.generation):
            return state is not None
        empty_untrained = self.backend.needs_training
        try:
            with index_lock(self.folder, exclusive=True):
                disk = read_record(self.folder)
                current = int(conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0])
                if (disk is not None and disk.uid == self.uid and disk.index == self.spec
                        and state.generation < disk.generation <= current):
                    return True  # someone saved a newer state: keep it
                remove_leftover_temporaries(self.folder)
                if empty_untrained:  # e.g. IVF on an empty gallery: nothing to save, and no old vectors left
                    (self.folder / INDEX_META_FILE).unlink(missing_ok=True)
                    (self.folder / INDEX_FILE).unlink(missing_ok=True)
                else:
                    self.backend.save(self.folder / INDEX_FILE)
                    record = replace(state, tuning=self.tuning)
                    write_file_atomic(self.folder / INDEX_META_FILE, record.to_json().encode())
        except (OSError, RuntimeError):
            return False
        self.saved_generation = state.generation
        marker("index-saved")
        return True
