"""Benchmark protocols: which comparisons to make, read from the files that define them.

This module owns parsing and validating protocol files into small dataclasses; it embeds and
scores nothing. Four sources:

* :func:`read_pairs_csv` -- ``path_a,path_b,label`` rows (label ``1/0``, ``true/false``,
  ``same/different``, ``yes/no``, any case; header optional, recognised by a word such as
  ``label`` in its label column; paths relative to ``root``);
* :func:`read_lfw_pairs` -- LFW ``pairs.txt`` (View 1: one header count; View 2: ``folds pairs``);
* :func:`folder_pairs` -- every pair of a folder-per-identity set, impostors sampled down to a
  maximum with a recorded seed;
* :func:`read_identification` -- gallery and probe CSVs of ``path,identity``.

A pair protocol is held as index arrays into one tuple of unique files (10M pairs stay arrays,
not Python objects). Every pair also knows its two **subjects** (identities) so that intervals
can be bootstrapped over subjects: LFW and folder protocols know them; a pairs CSV names them
in two optional columns (``subject_a,subject_b``), or else the subject of a file is its folder
relative to ``root`` (the folder-per-identity convention). When those folders contradict the
labels (a genuine pair across two folders, an impostor pair inside one), the subjects are
unknown: ``info["subject_note"]`` says why, and the evaluation falls back to pair-level intervals.

A malformed file raises :class:`~verikit.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from verikit.errors import DataError

__all__ = ["PairsProtocol", "IdentificationProtocol", "parse_label", "read_pairs_csv", "read_lfw_pairs",
           "folder_pairs", "read_identification"]

_TRUE = {"1", "true", "same", "yes"}
_FALSE = {"0", "false", "different", "no"}


def parse_label(text: str) -> bool | None:
    """``True`` (genuine) / ``False`` (impostor) for a label word, ``None`` when it is not one.

    >>> parse_label(" Same "), parse_label("0"), parse_label("maybe")
    (True, False, None)
    """
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


@dataclass(frozen=True, eq=False)
class PairsProtocol:
    """Verification pairs: ``files[a[k]]`` vs ``files[b[k]]``, genuine when ``genuine[k]``.

    ``subject_of[f]`` indexes ``subjects`` for file ``f``; ``fold[k]`` is the pair's fold (LFW
    View 2) or ``None``; ``lines[k]`` the source line it came from (``None`` for generated
    protocols); ``info`` is JSON-ready provenance (kind, source, seed, sampling).
    """

    files: tuple[Path, ...]
    a: np.ndarray
    b: np.ndarray
    genuine: np.ndarray
    subjects: tuple[str, ...]
    subject_of: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    fold: np.ndarray | None = None
    lines: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_files = len(self.files)
        for name in ("a", "b", "genuine"):
            arr = np.asarray(getattr(self, name))
            if arr.ndim != 1 or arr.size != np.asarray(self.a).size:
                raise DataError(f"PairsProtocol.{name} must be 1-D with one entry per pair")
        a, b = np.asarray(self.a, np.int64), np.asarray(self.b, np.int64)
        if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_files):
            raise DataError("PairsProtocol pair indices must point into files")
        subject_of = np.asarray(self.subject_of, np.int64)
        if subject_of.shape != (n_files,) or (n_files and (subject_of.min() < 0 or subject_of.max() >= len(self.subjects))):
            raise DataError("PairsProtocol.subject_of must give one subject index per file")
        object.__setattr__(self, "a", a)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "genuine", np.asarray(self.genuine, bool))
        object.__setattr__(self, "subject_of", subject_of)
        if self.fold is not None:
            object.__setattr__(self, "fold", np.asarray(self.fold, np.int64))

    def __len__(self) -> int:
        return int(self.a.size)

    @property
    def n_genuine(self) -> int:
        return int(np.count_nonzero(self.genuine))

    @property
    def n_impostor(self) -> int:
        return len(self) - self.n_genuine

    def digest(self) -> str:
        """SHA-256 of the comparisons (file names relative to their common root, labels, folds):
        two runs with equal digests scored the same pairs, in the same order."""
        h = hashlib.sha256()
        common = os.path.commonpath([str(f) for f in self.files]) if self.files else ""
        for f in self.files:
            h.update(os.path.relpath(f, common).encode() + b"\0")
        for arr in (self.a, self.b, self.genuine.astype(np.int8)) + ((self.fold,) if self.fold is not None else ()):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()

    def subset(self, keep: np.ndarray) -> "PairsProtocol":
        """The pairs where ``keep`` is true (e.g. both files embedded)."""
        return PairsProtocol(self.files, self.a[keep], self.b[keep], self.genuine[keep], self.subjects,
                             self.subject_of, dict(self.info), None if self.fold is None else self.fold[keep],
                             None if self.lines is None else np.asarray(self.lines)[keep])

    def describe(self) -> dict[str, Any]:
        return {**self.info, "pairs": len(self), "genuine": self.n_genuine, "impostor": self.n_impostor,
                "files": len(self.files), "subjects": len(self.subjects), "sha256": self.digest()}


@dataclass(frozen=True)
class IdentificationProtocol:
    """A gallery (enrolled templates) and probes, each ``(path, identity)``; probes whose
    identity is absent from the gallery are non-mated (open-set)."""

    gallery: tuple[tuple[Path, str], ...]
    probes: tuple[tuple[Path, str], ...]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.gallery:
            raise DataError("identification protocol has an empty gallery")
        if not self.probes:
            raise DataError("identification protocol has no probes")


# --------------------------------------------------------------------------- helpers


class _Files:
    """Unique files in first-seen order, each with its subject."""

    def __init__(self) -> None:
        self.index: dict[Path, int] = {}
        self.subject_index: dict[str, int] = {}
        self.subject_of: list[int] = []
        self.names: list[str] = []

    def add(self, path: Path, subject: str) -> int:
        """The file's index; a file seen before keeps the subject it was first given."""
        i = self.index.get(path)
        if i is None:
            i = self.index[path] = len(self.index)
            if subject not in self.subject_index:
                self.subject_index[subject] = len(self.subject_index)
                self.names.append(subject)
            self.subject_of.append(self.subject_index[subject])
        return i

    def subject(self, i: int) -> str:
        return self.names[self.subject_of[i]]

    def protocol(self, a: list[int], b: list[int], genuine: list[bool], info: dict, fold=None, lines=None
                 ) -> PairsProtocol:
        return PairsProtocol(tuple(self.index), np.asarray(a, np.int64), np.asarray(b, np.int64),
                             np.asarray(genuine, bool), tuple(self.subject_index),
                             np.asarray(self.subject_of, np.int64), info,
                             None if fold is None else np.asarray(fold, np.int64),
                             None if lines is None else np.asarray(lines, np.int64))


def _read_text(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"{what} '{path}' does not exist" if not path.exists() else f"{what} '{path}' is not a file")
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} '{path}' is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{what} '{path}' cannot be read: {exc.strerror}") from None


def _check_exists(path: Path, source: Path, line: int) -> None:
    from verikit.io import file_problem, path_text

    problem = file_problem(path)  # says "symbolic link loop", "a named pipe", ... when that is the matter
    if problem is not None:
        reason = "does not exist" if problem == "no such file" else f"cannot be read: {problem}"
        raise DataError(f"{path_text(source)}:{line}: image '{path_text(path)}' {reason}")


def _subject_of_path(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = path
    return "/".join(rel.parts[:-1]) or rel.stem


def _csv_rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """Non-blank, non-comment CSV rows with their 1-based line numbers (whitespace trimmed)."""
    rows = []
    for number, text in enumerate(_read_text(path, what), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        rows.append((number, [f.strip() for f in fields]))
    return rows


# --------------------------------------------------------------------------- pairs CSV


def read_pairs_csv(path: str | os.PathLike, root: str | os.PathLike | None = None, *,
                   check_files: bool = True) -> PairsProtocol:
    """Parse a ``path_a,path_b,label[,subject_a,subject_b]`` CSV into a :class:`PairsProtocol`.

    A first row is a header when its label column holds a word that is not a label (``label``,
    ``is_same``) and, with ``check_files``, neither of its paths is an existing file; any other
    row whose label is not a label word is an error naming the file and line (a first row
    ``a,b,2`` is a bad label, not a header). Blank lines and ``#`` comments are skipped. Relative
    paths are joined to ``root`` (default: the CSV's folder). With ``check_files`` every image
    must exist. The two optional columns name each file's subject (person); they must agree with
    the labels and give a file one subject only. Without them a file's subject is its folder,
    unless the folders contradict the labels (then ``subject_note`` in ``info`` says the subjects
    are unknown).
    """
    source = Path(path)
    base = Path(root) if root is not None else source.parent
    files = _Files()
    a: list[int] = []
    b: list[int] = []
    genuine: list[bool] = []
    lines: list[int] = []
    named: bool | None = None  # whether rows carry subject columns (all or none)
    note: str | None = None
    rows = _csv_rows(source, "pairs file")
    for k, (number, fields) in enumerate(rows):
        if len(fields) not in (3, 5):
            raise DataError(f"{source}:{number}: expected 3 fields 'path_a,path_b,label' or 5 "
                            f"'path_a,path_b,label,subject_a,subject_b', found {len(fields)}")
        label = parse_label(fields[2])
        if label is None:
            if k == 0 and _is_header(fields, base, check_files):
                continue
            raise DataError(f"{source}:{number}: label '{fields[2]}' is not one of 1/0, true/false, "
                            "same/different, yes/no")
        if named is None:
            named = len(fields) == 5
        elif named != (len(fields) == 5):
            raise DataError(f"{source}:{number}: {len(fields)} fields, but earlier rows have "
                            f"{5 if named else 3}: give subject_a,subject_b on every row or on none")
        pair, subjects = [], []
        for text, subject in zip(fields[:2], fields[3:5] if named else (None, None)):
            if not text:
                raise DataError(f"{source}:{number}: empty path")
            if named and not subject:
                raise DataError(f"{source}:{number}: empty subject")
            p = base / text
            if check_files:
                _check_exists(p, source, number)
            subject = subject if named else _subject_of_path(p, base)
            i = files.add(p, subject)
            if files.subject(i) != subject:
                if named:
                    raise DataError(f"{source}:{number}: '{text}' is subject '{subject}' here but "
                                    f"'{files.subject(i)}' on an earlier line")
            pair.append(i)
            subjects.append(files.subject(i))
        if (subjects[0] == subjects[1]) != label:
            what = (f"a genuine pair of two subjects ('{subjects[0]}', '{subjects[1]}')" if label
                    else f"an impostor pair inside one subject ('{subjects[0]}')")
            if named:
                raise DataError(f"{source}:{number}: {what}; the label and the subject columns disagree")
            note = note or (f"the folders do not follow the labels ({source.name}:{number} is {what}), so the "
                            "subjects are unknown; name them in columns subject_a,subject_b")
        a.append(pair[0])
        b.append(pair[1])
        genuine.append(label)
        lines.append(number)
    if not a:
        raise DataError(f"pairs file '{source}' has no pairs")
    info = {"kind": "pairs-csv", "source": str(source), "root": str(base),
            "subject_source": "columns" if named else "folders", "subject_note": note}
    return files.protocol(a, b, genuine, info, lines=lines)


def is_header_word(text: str) -> bool:
    """A column name such as ``label``, ``is_same`` or ``same person``: a letter or ``_`` first, then
    letters, digits, ``_`` or spaces. ``2``, ``-1``, ``0.5``, ``?`` or nothing are not: in a first
    row they are bad labels, not a header."""
    return bool(text) and (text[0].isalpha() or text[0] == "_") and all(c.isalnum() or c in "_ " for c in text)


def _is_header(fields: list[str], base: Path, check_files: bool) -> bool:
    if not is_header_word(fields[2]):
        return False
    return not (check_files and any(text and (base / text).is_file() for text in fields[:2]))


# --------------------------------------------------------------------------- LFW pairs.txt


def _lfw_file(root: Path, name: str, number: str, source: Path, line: int) -> Path:
    try:
        n = int(number)
    except ValueError:
        raise DataError(f"{source}:{line}: image number '{number}' is not an integer") from None
    if n < 1:
        raise DataError(f"{source}:{line}: image number {n} must be >= 1")
    return root / name / f"{name}_{n:04d}.jpg"


def read_lfw_pairs(path: str | os.PathLike, root: str | os.PathLike, *, check_files: bool = True) -> PairsProtocol:
    """Parse LFW ``pairs.txt`` (View 1 or View 2) into a :class:`PairsProtocol` with folds.

    View 1 (``pairsDevTrain.txt``/``pairsDevTest.txt``): a header ``N`` then ``N`` matched lines
    ``name n1 n2`` and ``N`` mismatched lines ``name1 n1 name2 n2`` (one fold). View 2
    (``pairs.txt``): a header ``folds N`` then, per fold, ``N`` matched then ``N`` mismatched.
    Image ``n`` of ``name`` is ``root/name/name_%04d.jpg``.
    """
    source, base = Path(path), Path(root)
    numbered = [(i, t.split()) for i, t in enumerate(_read_text(source, "LFW pairs file"), start=1) if t.strip()]
    if not numbered:
        raise DataError(f"LFW pairs file '{source}' is empty")
    head_line, head = numbered[0]
    try:
        counts = [int(x) for x in head]
    except ValueError:
        raise DataError(f"{source}:{head_line}: header must be 'N' (View 1) or 'folds N' (View 2), "
                        f"found '{' '.join(head)}'") from None
    if len(counts) not in (1, 2) or min(counts) < 1:
        raise DataError(f"{source}:{head_line}: header must be 'N' (View 1) or 'folds N' (View 2) with positive "
                        f"numbers, found '{' '.join(head)}'")
    n_folds, per = (1, counts[0]) if len(counts) == 1 else counts
    body = numbered[1:]
    expected = n_folds * 2 * per
    if len(body) != expected:
        where = f"{source}:{body[expected][0]}: unexpected extra line" if len(body) > expected else \
            f"LFW pairs file '{source}' ends after {len(body)} pair lines"
        raise DataError(f"{where} (header says {n_folds} fold(s) x {per} matched + {per} mismatched = {expected})")
    files = _Files()
    a, b, genuine, fold, lines = [], [], [], [], []
    for k, (number, tokens) in enumerate(body):
        same = (k // per) % 2 == 0
        if same and len(tokens) != 3:
            raise DataError(f"{source}:{number}: expected a matched pair 'name n1 n2', found {len(tokens)} fields")
        if not same and len(tokens) != 4:
            raise DataError(f"{source}:{number}: expected a mismatched pair 'name1 n1 name2 n2', "
                            f"found {len(tokens)} fields")
        names = (tokens[0], tokens[0]) if same else (tokens[0], tokens[2])
        nums = (tokens[1], tokens[2]) if same else (tokens[1], tokens[3])
        idx = []
        for name, num in zip(names, nums):
            p = _lfw_file(base, name, num, source, number)
            if check_files:
                _check_exists(p, source, number)
            idx.append(files.add(p, name))
        a.append(idx[0])
        b.append(idx[1])
        genuine.append(same)
        fold.append(k // (2 * per))
        lines.append(number)
    info = {"kind": "lfw", "source": str(source), "root": str(base), "view": 1 if len(counts) == 1 else 2,
            "folds": n_folds, "pairs_per_fold": 2 * per, "subject_source": "names", "subject_note": None}
    return files.protocol(a, b, genuine, info, fold=fold if n_folds > 1 else None, lines=lines)


# --------------------------------------------------------------------------- folder-per-identity


def _pair_from_linear(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major index ``k`` of the strict upper triangle of an ``n x n`` matrix -> ``(i, j)``."""
    k = np.asarray(k, np.int64)
    # rows start at s(i) = i*n - i*(i+1)/2; invert the quadratic, then fix rounding by one step.
    i = np.floor((2 * n - 1 - np.sqrt((2.0 * n - 1) ** 2 - 8.0 * k)) / 2).astype(np.int64)
    start = i * n - i * (i + 1) // 2
    i = np.where(start > k, i - 1, i)
    start = i * n - i * (i + 1) // 2
    nxt = (i + 1) * n - (i + 1) * (i + 2) // 2
    i = np.where(nxt <= k, i + 1, i)
    start = i * n - i * (i + 1) // 2
    return i, k - start + i + 1


def folder_pairs(root: str | os.PathLike, *, max_impostors: int | None = None, seed: int = 0) -> PairsProtocol:
    """Every genuine pair of a folder-per-identity set and every impostor pair, or a uniform
    sample of ``max_impostors`` impostor pairs (without replacement, ``seed`` recorded)."""
    from verikit.io import scan_identity_folders

    scan = scan_identity_folders(root)
    files = _Files()
    for name, p in scan.items:
        files.add(p, name)
    subj = np.asarray(files.subject_of, np.int64)
    n = subj.size
    if n < 2:
        raise DataError(f"'{root}' has fewer than two images")
    counts = np.bincount(subj)
    n_gen = int((counts * (counts - 1) // 2).sum())
    total = n * (n - 1) // 2
    n_imp = total - n_gen
    if max_impostors is not None and max_impostors < 1:
        raise DataError(f"max_impostors must be >= 1, got {max_impostors}")
    gi, gj = [], []
    starts = np.r_[0, np.cumsum(counts)]  # scan items are grouped by identity
    for s in range(counts.size):
        i, j = np.triu_indices(int(counts[s]), 1)
        gi.append(i + starts[s])
        gj.append(j + starts[s])
    ga, gb = np.concatenate(gi), np.concatenate(gj)
    sampled = max_impostors is not None and n_imp > max_impostors
    if sampled:
        rng = np.random.default_rng(seed)
        chosen = np.empty(0, np.int64)
        while chosen.size < max_impostors:  # rejection of genuine pairs; keeps the draw uniform
            k = rng.integers(0, total, size=2 * (max_impostors - chosen.size) + 16)
            i, j = _pair_from_linear(k, n)
            k = k[subj[i] != subj[j]]
            chosen = np.unique(np.concatenate([chosen, k]))
        chosen = rng.permutation(chosen)[:max_impostors]
        ia, ib = _pair_from_linear(np.sort(chosen), n)
    else:
        ia, ib = np.triu_indices(n, 1)
        keep = subj[ia] != subj[ib]
        ia, ib = ia[keep], ib[keep]
    a = np.concatenate([ga, ia])
    b = np.concatenate([gb, ib])
    genuine = np.r_[np.ones(ga.size, bool), np.zeros(ia.size, bool)]
    info = {"kind": "folder", "source": str(root), "impostors_available": n_imp, "sampled": bool(sampled),
            "max_impostors": max_impostors, "seed": seed if sampled else None,
            "skipped_files": [str(p) for p in scan.skipped], "subject_source": "identity folders",
            "subject_note": None}
    return PairsProtocol(tuple(files.index), a, b, genuine, tuple(files.subject_index), subj, info)


# --------------------------------------------------------------------------- identification


def _identity_csv(path: Path, base: Path, what: str, check_files: bool) -> tuple[tuple[Path, str], ...]:
    out = []
    for k, (number, fields) in enumerate(_csv_rows(path, what)):
        if len(fields) != 2:
            raise DataError(f"{path}:{number}: expected 2 fields 'path,identity', found {len(fields)}")
        if k == 0 and [f.lower() for f in fields] == ["path", "identity"]:
            continue
        if not fields[0] or not fields[1]:
            raise DataError(f"{path}:{number}: empty {'path' if not fields[0] else 'identity'}")
        p = base / fields[0]
        if check_files:
            _check_exists(p, path, number)
        out.append((p, fields[1]))
    if not out:
        raise DataError(f"{what} '{path}' has no rows")
    return tuple(out)


def read_identification(gallery_csv: str | os.PathLike, probe_csv: str | os.PathLike,
                        root: str | os.PathLike | None = None, *, check_files: bool = True) -> IdentificationProtocol:
    """Gallery and probe CSVs of ``path,identity`` (header ``path,identity`` optional)."""
    g, p = Path(gallery_csv), Path(probe_csv)
    gallery = _identity_csv(g, Path(root) if root is not None else g.parent, "gallery file", check_files)
    probes = _identity_csv(p, Path(root) if root is not None else p.parent, "probe file", check_files)
    return IdentificationProtocol(gallery, probes, {"kind": "identification", "gallery": str(g), "probes": str(p)})
