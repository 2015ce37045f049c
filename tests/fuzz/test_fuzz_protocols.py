"""Property-based fuzzing of protocol files (hypothesis): pairs CSV, LFW pairs.txt, identification CSVs.

Each generated file either parses to exactly what a small reference model of the format says,
or raises ONE :class:`verikit.errors.DataError` (one line, naming the file and, for a bad row,
its line); never another exception type, a hang (pytest-timeout), or a row taken silently that
the format does not allow (a bad label read as a header, a short LFW file, ...). Raw text and
raw bytes are thrown at each parser as well.

`make fuzz` runs these with the long hypothesis profile (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verikit.errors import DataError
from verikit.evaluate.protocols import read_identification, read_lfw_pairs, read_pairs_csv

# A hang fails the test (pytest-timeout); the limit grows with the profile's example count, since a
# `make fuzz` run of 2000 examples on a loaded 2-core machine takes minutes per test.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(max(120, settings.default.max_examples // 2))]

LABELS = {"1": True, "true": True, "same": True, "yes": True, "0": False, "false": False, "different": False,
          "no": False}
# Text on one line: no character str.splitlines() breaks at, no control characters, no surrogates.
ONE_LINE = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x1c\x1d\x1e\x85")
FIELD = st.one_of(st.sampled_from(["a.jpg", "b/c.png", " x y.jpg ", "q,r.jpg", 'say "hi".png', "", "#c.png"]),
                  st.text(ONE_LINE, max_size=8))
LABEL = st.one_of(
    st.tuples(st.sampled_from(sorted(LABELS)), st.sampled_from([str.lower, str.upper, str.title]),
              st.sampled_from(["", " "])).map(lambda t: t[2] + t[1](t[0]) + t[2]),
    st.sampled_from(["2", "-1", "0.5", "", "?", "maybe", "label", "is_same", "same person", "y", "1.0", "_x", "ja"]),
    st.text(ONE_LINE, max_size=6))


def _csv_line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _is_word(text: str) -> bool:
    return bool(text) and (text[0].isalpha() or text[0] == "_") and all(c.isalnum() or c in "_ " for c in text)


def _one_line_error(exc: DataError, path: Path) -> str:
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, f"the message does not name the file: {msg}"
    return msg


# -- pairs CSV -------------------------------------------------------------------------------------


ITEM = st.one_of(
    st.tuples(FIELD, FIELD, LABEL).map(list),                                   # a row
    st.lists(st.text(ONE_LINE, max_size=5), min_size=0, max_size=5),            # a row of any width
    st.sampled_from([[None], ["#", "a comment"]]),                              # blank line / comment
)


def _pairs_model(items: list[list], root: Path) -> tuple[list[tuple[Path, Path, bool, int]] | None, int | None, str]:
    """(pairs, None, "") when the file is valid, else (None, error line or None, what the error says).

    Rows have 3 fields, or 5 with the two files' subjects (all rows alike); subject columns must
    give a file one subject and agree with the labels."""
    pairs, seen = [], 0
    named: bool | None = None
    subject_of: dict[Path, str] = {}
    for number, item in enumerate(items, start=1):
        if item == [None]:
            continue
        text = _csv_line(item)
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([text]))]
        first, seen = seen == 0, seen + 1
        if len(fields) not in (3, 5):
            return None, number, "expected 3 fields"
        label = LABELS.get(fields[2].lower())
        if label is None:
            if first and _is_word(fields[2]):
                continue  # the header
            return None, number, "is not one of"
        if named is None:
            named = len(fields) == 5
        elif named != (len(fields) == 5):
            return None, number, "on every row or on none"
        subjects = []
        for path, subject in zip(fields[:2], fields[3:5] if named else (None, None)):
            if not path:
                return None, number, "empty path"
            if named and not subject:
                return None, number, "empty subject"
            if named:
                if subject_of.setdefault(root / path, subject) != subject:
                    return None, number, "on an earlier line"
                subjects.append(subject)
        if named and (subjects[0] == subjects[1]) != label:
            return None, number, "disagree"
        pairs.append((root / fields[0], root / fields[1], label, number))
    if not pairs:
        return None, None, "has no pairs"
    return pairs, None, ""


def _write_items(path: Path, items: list[list]) -> None:
    lines = ["" if item == [None] else "# a comment" if item == ["#", "a comment"] else _csv_line(item) for item in items]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@given(items=st.lists(ITEM, max_size=8))
def test_pairs_csv_matches_the_reference_model(tmp_path, items):
    path = tmp_path / "pairs.csv"
    _write_items(path, items)
    expected, line, says = _pairs_model(items, tmp_path)
    try:
        got = read_pairs_csv(path, tmp_path, check_files=False)
    except DataError as exc:
        msg = _one_line_error(exc, path)
        assert expected is None, f"refused a valid file: {msg}"
        assert says in msg and (line is None or f"pairs.csv:{line}:" in msg), (msg, line, says)
        return
    assert expected is not None, f"accepted a file with an error on line {line} ({says})"
    assert [(got.files[a], got.files[b], bool(g), int(n)) for a, b, g, n in zip(got.a, got.b, got.genuine, got.lines)] \
        == expected


@given(text=st.text(max_size=300))
def test_pairs_csv_any_text(tmp_path, text):
    path = tmp_path / "pairs.csv"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        got = read_pairs_csv(path, tmp_path, check_files=False)
    except DataError as exc:
        _one_line_error(exc, path)
        return
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    for g, n in zip(got.genuine, got.lines):  # every accepted pair came from a line with a label word
        fields = next(csv.reader([lines[n - 1]]))
        assert LABELS.get(fields[2].strip().lower()) == bool(g)


@given(data=st.binary(max_size=200))
def test_pairs_csv_any_bytes(tmp_path, data):
    path = tmp_path / "pairs.csv"
    path.write_bytes(data)
    try:
        read_pairs_csv(path, tmp_path, check_files=False)
    except DataError as exc:
        _one_line_error(exc, path)


# -- LFW pairs.txt ---------------------------------------------------------------------------------


NAME = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp", "Zs")), min_size=1, max_size=6)
NUMBER = st.one_of(st.integers(1, 30).map(str), st.sampled_from(["0", "-2", "x", "1.5", "+3", "0010"]))


@st.composite
def lfw_files(draw):
    folds, per = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    header = draw(st.sampled_from([f"{per}", f"{folds} {per}", f"{folds}\t{per}", "x", "0", f"{folds} {per} 1", ""]))
    lines = []
    for k in range(folds * 2 * per):
        same = (k // per) % 2 == 0
        tokens = [draw(NAME), draw(NUMBER), draw(NUMBER)] if same else [draw(NAME), draw(NUMBER), draw(NAME), draw(NUMBER)]
        if draw(st.integers(0, 9)) == 0:  # now and then a line of the wrong shape
            tokens = tokens[:-1] if draw(st.booleans()) else tokens + [draw(NUMBER)]
        lines.append(" ".join(tokens))
    cut = draw(st.integers(-2, 2))  # lines missing or extra
    lines = lines[:len(lines) + cut] if cut < 0 else lines + [f"{draw(NAME)} 1 2"] * cut
    return [header] + lines


def _lfw_model(lines: list[str], root: Path):
    numbered = [(i, t.split()) for i, t in enumerate(lines, start=1) if t.strip()]
    if not numbered:
        return None, None, "is empty"
    head_line, head = numbered[0]
    try:
        counts = [int(x) for x in head]
    except ValueError:
        return None, head_line, "header must be"
    if len(counts) not in (1, 2) or min(counts) < 1:
        return None, head_line, "header must be"
    folds, per = (1, counts[0]) if len(counts) == 1 else counts
    body = numbered[1:]
    if len(body) != folds * 2 * per:
        return None, body[folds * 2 * per][0] if len(body) > folds * 2 * per else None, \
            "unexpected extra line" if len(body) > folds * 2 * per else "ends after"
    pairs = []
    for k, (number, tokens) in enumerate(body):
        same = (k // per) % 2 == 0
        if len(tokens) != (3 if same else 4):
            return None, number, "expected a"
        names = (tokens[0], tokens[0]) if same else (tokens[0], tokens[2])
        nums = (tokens[1], tokens[2]) if same else (tokens[1], tokens[3])
        files = []
        for name, num in zip(names, nums):
            try:
                n = int(num)
            except ValueError:
                return None, number, "is not an integer"
            if n < 1:
                return None, number, "must be >= 1"
            files.append(root / name / f"{name}_{n:04d}.jpg")
        pairs.append((files[0], files[1], same, number))
    return pairs, None, ""


@given(lines=lfw_files())
def test_lfw_pairs_match_the_reference_model(tmp_path, lines):
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected, line, says = _lfw_model(lines, tmp_path)
    try:
        got = read_lfw_pairs(path, tmp_path, check_files=False)
    except DataError as exc:
        msg = _one_line_error(exc, path)
        assert expected is None, f"refused a valid file: {msg}"
        assert says in msg and (line is None or f"pairs.txt:{line}:" in msg), (msg, line, says)
        return
    assert expected is not None, f"accepted a file with an error on line {line} ({says})"
    assert [(got.files[a], got.files[b], bool(g), int(n)) for a, b, g, n in zip(got.a, got.b, got.genuine, got.lines)] \
        == expected


@given(text=st.text(max_size=300))
def test_lfw_pairs_any_text(tmp_path, text):
    path = tmp_path / "pairs.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        read_lfw_pairs(path, tmp_path, check_files=False)
    except DataError as exc:
        _one_line_error(exc, path)


# -- identification CSVs ---------------------------------------------------------------------------


ID_ITEM = st.one_of(
    st.tuples(FIELD, st.one_of(st.sampled_from(["ann", "bob", "", " c d "]), st.text(ONE_LINE, max_size=5))).map(list),
    st.lists(st.text(ONE_LINE, max_size=4), min_size=0, max_size=4),
    st.sampled_from([[None], ["#", "a comment"], ["path", "identity"], ["Path", "IDENTITY"]]),
)


def _identification_model(items: list[list], root: Path):
    rows, seen = [], 0
    for number, item in enumerate(items, start=1):
        if item == [None]:
            continue
        text = _csv_line(item)
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([text]))]
        first, seen = seen == 0, seen + 1
        if len(fields) != 2:
            return None, number, "expected 2 fields"
        if first and [f.lower() for f in fields] == ["path", "identity"]:
            continue
        if not fields[0] or not fields[1]:
            return None, number, "empty"
        rows.append((root / fields[0], fields[1]))
    if not rows:
        return None, None, "has no rows"
    return rows, None, ""


@given(gallery=st.lists(ID_ITEM, max_size=6), probes=st.lists(ID_ITEM, max_size=6))
def test_identification_csvs_match_the_reference_model(tmp_path, gallery, probes):
    files = {}
    for name, items in (("gallery.csv", gallery), ("probes.csv", probes)):
        _write_items(tmp_path / name, items)
        files[name] = _identification_model(items, tmp_path)
    try:
        got = read_identification(tmp_path / "gallery.csv", tmp_path / "probes.csv", check_files=False)
    except DataError as exc:
        bad = "gallery.csv" if files["gallery.csv"][0] is None else "probes.csv"
        expected, line, says = files[bad]
        msg = _one_line_error(exc, tmp_path / bad)
        assert expected is None, f"refused valid files: {msg}"
        assert says in msg and (line is None or f"{bad}:{line}:" in msg), (msg, line, says)
        return
    assert files["gallery.csv"][0] is not None and files["probes.csv"][0] is not None, files
    assert list(got.gallery) == files["gallery.csv"][0] and list(got.probes) == files["probes.csv"][0]


@given(text=st.text(max_size=200), data=st.binary(max_size=100))
def test_identification_any_text_and_bytes(tmp_path, text, data):
    (tmp_path / "g.csv").write_bytes(text.encode("utf-8", "surrogatepass"))
    (tmp_path / "p.csv").write_bytes(data)
    try:
        read_identification(tmp_path / "g.csv", tmp_path / "p.csv", check_files=False)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg and ("g.csv" in msg or "p.csv" in msg), msg
