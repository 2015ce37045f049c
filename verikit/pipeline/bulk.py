"""Bulk enrollment of a folder-per-identity tree of any size: streamed, decoded in parallel,
committed in batches, resumable.

* **Streaming.** The tree is walked lazily (one directory listing at a time) and at most
  ``batch_commit`` embeddings wait for their commit, so memory does not grow with the folder.
* **Parallel decode.** A ``torch.utils.data.DataLoader`` over an ``IterableDataset``: each worker
  takes every W-th file of the same listing, checks it, reads it once, hashes those bytes (SHA-256),
  decodes the same bytes with the model's own transform and stacks its loader batch into one
  tensor, so the main process (whose cores the forward pass needs) only receives one block per
  batch and runs the network on it.
* **Batches.** Every ``batch_commit`` templates are committed in one gallery transaction (an
  interrupted run keeps the batches before it; normal ``verikit enroll`` stays one transaction).
* **Resume.** With ``resume``, a file whose path is already a stored source with the same content
  hash is skipped before embedding; a file changed since (same path, other bytes) is enrolled.
* **Summary.** Skipped files are counted by reason, with a few examples each.

Whole images only (no detector or segmenter): the crop pipeline runs in the main process.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import DataError, VerikitError

ALREADY = "already enrolled (same path and content)"
UNREADABLE = "unreadable image"
EXAMPLES = 5


@dataclass
class BulkReport:
    """What a bulk enroll did: templates per identity, skips by reason (with examples), batches."""

    enrolled: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    batches: int = 0
    files: int = 0
    seconds: float = 0.0

    def skip(self, reason: str, path: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES:
            shown.append(path)

    @property
    def failed(self) -> int:
        """Skips the user must hear about (not the resumed ones)."""
        return sum(n for reason, n in self.skipped.items() if reason != ALREADY)

    def to_dict(self) -> dict[str, Any]:
        return {"templates": sum(self.enrolled.values()), "identities": len(self.enrolled), "files": self.files,
                "batches": self.batches, "seconds": round(self.seconds, 2),
                "skipped": {r: {"count": n, "examples": self.examples.get(r, [])}
                            for r, n in sorted(self.skipped.items())}}


def _listing(root: Path) -> Iterator[tuple[str, Path, str | None]]:
    """(identity, path, reason-or-None) for every file under ``root``, sorted, lazily, from the
    directory listings alone (no file is opened or stat'ed here): files directly under ``root``
    and files of an invalid identity name carry their reason."""
    from ..index.names import check_name

    if not root.is_dir():
        raise DataError(f"--from-folder '{root}' is not a directory")
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if not entry.is_dir():
            yield "", Path(entry.path), "not in an identity folder"
            continue
        try:
            check_name(entry.name)
            bad_name = None
        except VerikitError as exc:
            bad_name = f"invalid identity name ({exc})"
        for dirpath, dirnames, filenames in os.walk(entry.path):
            dirnames.sort()
            for fn in sorted(filenames):
                yield entry.name, Path(dirpath) / fn, bad_name


def _classified(name: str, path: Path, reason: str | None) -> str | None:
    """Why ``path`` (from :func:`_listing`) cannot be enrolled, or None: the per-file check (a stat,
    a sniff for suffix-less files), done only by the worker that owns the file."""
    from ..io import is_image_file

    if reason is None and not is_image_file(path):
        return "not an image file"
    return reason


def walk_identities(root: Path) -> Iterator[tuple[str, Path | None, str | None]]:
    """(identity, image path, None) for each image under ``root/<identity>/`` (sorted, lazily), and
    (identity-or-"", path, reason) for what cannot be enrolled: non-image files, files directly
    under ``root``, invalid identity names."""
    for name, path, reason in _listing(root):
        yield name, path, _classified(name, path, reason)


def count_files(root: Path) -> int:
    """How many files the walk will meet (names only, no reads): the progress bar's total."""
    return sum(len(files) for _, _, files in os.walk(root))


@dataclass
class _Batch:
    """One loader batch, assembled in the worker that decoded it: the enrollable files with their
    model inputs stacked into ONE plain tensor (one shared-memory block to hand over, no per-item
    tensors or torchvision subclasses for the main process to unpack and stack), and the files it
    could not use with their reasons."""

    files: int
    names: list[str]
    paths: list[str]
    digests: list[str]
    inputs: Any  # torch.Tensor (len(names), C, H, W), or None when no file of the batch was usable
    skipped: list[tuple[str, str]]  # (reason, path)


def _collate(items: list) -> _Batch:
    import torch

    good = [it for it in items if it[4] is None]
    inputs = torch.stack([it[3].as_subclass(torch.Tensor) for it in good]) if good else None
    return _Batch(len(items), [it[0] for it in good], [it[1] for it in good], [it[2] for it in good], inputs,
                  [(it[4], it[1]) for it in items if it[4] is not None])


class _Decoded:
    """An IterableDataset over the listing; each worker takes every W-th file, checks it, reads it
    once, hashes those bytes (SHA-256) and decodes the same bytes with the model's own transform
    (imported lazily: torch)."""

    def __new__(cls, root: Path, transform: Callable) -> Any:
        from torch.utils.data import IterableDataset, get_worker_info

        class Decoded(IterableDataset):
            def __iter__(self):
                from PIL import Image

                from ..io import load_image_bytes

                info = get_worker_info()
                worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
                for i, (name, path, reason) in enumerate(_listing(root)):
                    if i % workers != worker:
                        continue
                    reason = _classified(name, path, reason)
                    if reason is not None:
                        yield name, str(path), "", None, reason
                        continue
                    try:
                        data, image = load_image_bytes(path)
                        yield name, str(path), hashlib.sha256(data).hexdigest(), transform(image), None
                    except (OSError, VerikitError, Image.DecompressionBombError, ValueError) as exc:
                        why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
                        yield name, f"{path} ({why})", "", None, UNREADABLE

        return Decoded()


def bulk_enroll(model: Any, root: str | Path, commit: Callable[[dict, dict], None], *,
                already: Callable[[list[tuple[str, str]]], set] | None = None, batch_commit: int = 1000,
                batch_size: int = 64, workers: int = 2, progress: Callable[[int], None] | None = None) -> BulkReport:
    """Embed every image under ``root/<identity>/`` and hand ``commit(templates, hashes)`` each
    ``batch_commit`` templates ({name: (vectors, sources)}, {name: [sha256, ...]}).

    ``already(pairs)`` returns which (path, sha256) pairs are enrolled (resume); None: no resume.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..models.backend import run_network
    from ..models.preprocess import to_tensor_transform

    if batch_commit < 1:
        raise DataError(f"--batch-commit must be at least 1, got {batch_commit}")
    root = Path(root)
    report = BulkReport()
    started = time.perf_counter()
    loader = DataLoader(_Decoded(root, to_tensor_transform(model.input_spec)), batch_size=batch_size,
                        num_workers=workers, collate_fn=_collate, prefetch_factor=4 if workers else None)
    device = next(model.parameters()).device
    pending: dict[str, tuple[list[np.ndarray], list[str], list[str]]] = {}
    n_pending = 0

    def flush() -> None:
        nonlocal pending, n_pending
        if not pending:
            return
        templates = {n: (np.stack(v), s) for n, (v, s, _) in pending.items()}
        commit(templates, {n: h for n, (_, _, h) in pending.items()})
        for n, (v, _, _) in pending.items():
            report.enrolled[n] += len(v)
        report.batches += 1
        pending, n_pending = {}, 0

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                report.files += batch.files
                for reason, path in batch.skipped:
                    report.skip(reason, path)
                keep = list(range(len(batch.names)))
                if keep and already is not None:
                    pairs = list(zip(batch.paths, batch.digests))
                    done = already(pairs)
                    keep = []
                    for i, pair in enumerate(pairs):
                        if pair in done:
                            report.skip(ALREADY, pair[0])
                        else:
                            keep.append(i)
                if keep:
                    inputs = batch.inputs if len(keep) == len(batch.names) else batch.inputs[keep]
                    out = run_network(model, inputs.to(device)).float().cpu().numpy()
                    for i, vec in zip(keep, out):
                        vecs, srcs, hashes = pending.setdefault(batch.names[i], ([], [], []))
                        vecs.append(vec)
                        srcs.append(batch.paths[i])
                        hashes.append(batch.digests[i])
                    n_pending += len(keep)
                if n_pending >= batch_commit:
                    flush()
                if progress is not None:
                    progress(batch.files)
        flush()
    finally:
        model.train(was_training)
    report.seconds = time.perf_counter() - started
    return report
