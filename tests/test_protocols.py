"""Protocol parsers: pairs CSV, LFW pairs.txt (View 1 and 2), folder all-pairs, identification CSVs."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from verikit.evaluate import protocols as P
from verikit.evaluate.protocols import (folder_pairs, parse_label, read_identification, read_lfw_pairs,
                                         read_pairs_csv)
from verikit.errors import DataError


def test_docstring_examples_run() -> None:
    assert doctest.testmod(P).failed == 0


@pytest.fixture()
def people(tmp_path: Path) -> Path:
    """root/<name>/<name>_000k.jpg for three people (tiny files: parsers never open them)."""
    for name, n in (("Ann", 3), ("Bob", 2), ("Cy", 1)):
        (tmp_path / name).mkdir()
        for k in range(1, n + 1):
            (tmp_path / name / f"{name}_{k:04d}.jpg").write_bytes(b"x")
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- pairs CSV


@pytest.mark.parametrize("word,expected", [("1", True), ("0", False), ("TRUE", True), ("false", False),
                                           ("Same", True), ("different", False), ("yes", True), ("NO", False),
                                           (" yes ", True), ("2", None), ("", None), ("y", None)])
def test_parse_label(word: str, expected) -> None:
    assert parse_label(word) is expected


def test_pairs_csv_with_header_comments_and_every_label_word(people: Path) -> None:
    csv = _write(people / "pairs.csv", "path_a,path_b,label\n# a comment\n\n"
                 "Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,same\n"
                 "Ann/Ann_0001.jpg,Bob/Bob_0001.jpg,Different\n"
                 "Bob/Bob_0001.jpg,Bob/Bob_0002.jpg,1\n"
                 "Cy/Cy_0001.jpg,Bob/Bob_0002.jpg,no\n")
    p = read_pairs_csv(csv, people)
    assert len(p) == 4 and p.n_genuine == 2 and p.n_impostor == 2
    assert p.genuine.tolist() == [True, False, True, False]
    assert [p.files[k].name for k in p.a] == ["Ann_0001.jpg", "Ann_0001.jpg", "Bob_0001.jpg", "Cy_0001.jpg"]
    assert len(p.files) == 5  # each file once
    assert p.lines.tolist() == [4, 5, 6, 7]
    assert [p.subjects[p.subject_of[k]] for k in p.b] == ["Ann", "Bob", "Bob", "Bob"]
    assert p.info["kind"] == "pairs-csv"


def test_pairs_csv_without_header_defaults_root_to_its_folder(people: Path) -> None:
    csv = _write(people / "pairs.csv", "Ann/Ann_0001.jpg,Ann/Ann_0003.jpg,true\nAnn/Ann_0001.jpg,Cy/Cy_0001.jpg,0\n")
    p = read_pairs_csv(csv)
    assert len(p) == 2 and p.files[0] == people / "Ann" / "Ann_0001.jpg"


def test_pairs_csv_quoted_paths_with_commas(people: Path) -> None:
    (people / "A,B").mkdir()
    (people / "A,B" / "x.jpg").write_bytes(b"x")
    csv = _write(people / "pairs.csv", '"A,B/x.jpg",Ann/Ann_0001.jpg,0\n')
    assert read_pairs_csv(csv).files[0].name == "x.jpg"


@pytest.mark.parametrize("text,message", [
    ("Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,same\nAnn/Ann_0001.jpg,Bob/Bob_0001.jpg,maybe\n",
     ":2: label 'maybe' is not one of"),
    ("Ann/Ann_0001.jpg,Ann/Ann_0002.jpg\n", ":1: expected 3 fields"),
    ("Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,1,extra\n", ":1: expected 3 fields"),
    ("Ann/Ann_0001.jpg,,1\n", ":1: empty path"),
    ("a,b,label\nAnn/Ann_0001.jpg,Ann/Ann_0009.jpg,1\n", ":2: image"),
    ("path_a,path_b,label\n", "has no pairs"),
    ("", "has no pairs"),
    ('"Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,1\n', ":1:"),
])
def test_pairs_csv_malformed_names_file_and_line(people: Path, text: str, message: str) -> None:
    csv = _write(people / "bad.csv", text)
    with pytest.raises(DataError) as e:
        read_pairs_csv(csv, people)
    assert message in str(e.value) and "bad.csv" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("first", ["a,b,2", "Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,2", "x,y,-1", "x,y,0.5", "x,y,",
                                   "x,y,?", "Ann/Ann_0001.jpg,Ann/Ann_0002.jpg,maybe"])
def test_pairs_csv_first_row_with_a_bad_label_is_an_error_not_a_header(people: Path, first: str) -> None:
    """A first row `a,b,2` used to be dropped silently as a header: a header is a word that is not a
    label in the label column (and, when files are checked, paths that are not files)."""
    csv = _write(people / "bad.csv", first + "\nAnn/Ann_0001.jpg,Bob/Bob_0001.jpg,0\n")
    with pytest.raises(DataError) as e:
        read_pairs_csv(csv, people)
    label = first.split(",")[2]
    assert str(e.value).endswith(f"bad.csv:1: label '{label}' is not one of 1/0, true/false, same/different, yes/no")


@pytest.mark.parametrize("header", ["path_a,path_b,label", "a,b,is_same", "first,second,same person", "A,B,Label"])
def test_pairs_csv_header_words(people: Path, header: str) -> None:
    csv = _write(people / "h.csv", header + "\nAnn/Ann_0001.jpg,Bob/Bob_0001.jpg,0\n")
    p = read_pairs_csv(csv, people)
    assert len(p) == 1 and p.lines.tolist() == [2]


def test_pairs_csv_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_pairs_csv(tmp_path / "nope.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        read_pairs_csv(tmp_path / "bin.csv")
    with pytest.raises(DataError, match="not a file"):
        read_pairs_csv(tmp_path)


def test_pairs_csv_check_files_off(tmp_path: Path) -> None:
    csv = _write(tmp_path / "p.csv", "x/1.jpg,y/2.jpg,1\n")
    assert len(read_pairs_csv(csv, check_files=False)) == 1


# --------------------------------------------------------------------------- LFW


def test_lfw_view1(people: Path) -> None:
    txt = _write(people / "pairsDevTest.txt", "2\nAnn 1 2\nBob 1 2\nAnn 3 Bob 1\nCy 1 Ann 2\n")
    p = read_lfw_pairs(txt, people)
    assert p.genuine.tolist() == [True, True, False, False]
    assert p.fold is None and p.info["view"] == 1
    assert p.files[p.a[2]] == people / "Ann" / "Ann_0003.jpg"
    assert p.subjects[p.subject_of[p.b[3]]] == "Ann"


def test_lfw_view2_folds(people: Path) -> None:
    fold = "Ann 1 2\nAnn 1 Bob 1\n"
    txt = _write(people / "pairs.txt", "3\t1\n" + fold * 3)
    p = read_lfw_pairs(txt, people)
    assert p.fold.tolist() == [0, 0, 1, 1, 2, 2]
    assert p.genuine.tolist() == [True, False] * 3
    assert p.info["folds"] == 3 and p.info["view"] == 2
    assert len(p.files) == 3


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("two\nAnn 1 2\n", ":1: header must be"),
    ("1 2 3\nAnn 1 2\n", ":1: header must be"),
    ("0\n", ":1: header must be"),
    ("1\nAnn 1 2\n", "ends after 1 pair lines"),
    ("1\nAnn 1 2\nAnn 1 Bob 1\nBob 1 2\n", ":4: unexpected extra line"),
    ("1\nAnn 1 Bob 2\nAnn 1 Bob 1\n", ":2: expected a matched pair"),
    ("1\nAnn 1 2\nAnn 1 2\n", ":3: expected a mismatched pair"),
    ("1\nAnn one 2\nAnn 1 Bob 1\n", ":2: image number 'one'"),
    ("1\nAnn 0 2\nAnn 1 Bob 1\n", ":2: image number 0"),
    ("1\nAnn 1 7\nAnn 1 Bob 1\n", ":2: image"),
    ("1\nAnn 1 2\nAnn 1 Zed 1\n", ":3: image"),
])
def test_lfw_malformed_names_line(people: Path, text: str, message: str) -> None:
    txt = _write(people / "pairs.txt", text)
    with pytest.raises(DataError) as e:
        read_lfw_pairs(txt, people)
    assert message in str(e.value) and "pairs.txt" in str(e.value)


# --------------------------------------------------------------------------- folder


def _tree(root: Path, sizes: list[int]) -> Path:
    from tests.conftest import make_pattern_image

    for s, n in enumerate(sizes):
        for k in range(n):
            make_pattern_image(root / f"id{s}" / f"{k}.png", s, k, size=8)
    return root


def test_folder_pairs_all(tmp_path: Path) -> None:
    p = folder_pairs(_tree(tmp_path, [3, 2, 1]))
    n = 6
    assert len(p) == n * (n - 1) // 2 and p.n_genuine == 3 + 1
    sa, sb = p.subject_of[p.a], p.subject_of[p.b]
    assert ((sa == sb) == p.genuine).all()
    assert len({(int(a), int(b)) for a, b in zip(p.a, p.b)}) == len(p)
    assert not p.info["sampled"] and p.info["seed"] is None


def test_folder_pairs_sampling_is_seeded_uniform_and_recorded(tmp_path: Path) -> None:
    root = _tree(tmp_path, [2] * 12)  # 24 images: 12 genuine, 264 impostor pairs
    a = folder_pairs(root, max_impostors=50, seed=3)
    b = folder_pairs(root, max_impostors=50, seed=3)
    c = folder_pairs(root, max_impostors=50, seed=4)
    assert a.n_impostor == 50 and a.n_genuine == 12
    assert a.digest() == b.digest() != c.digest()
    imp = ~a.genuine
    assert (a.subject_of[a.a[imp]] != a.subject_of[a.b[imp]]).all()
    assert len({(int(x), int(y)) for x, y in zip(a.a[imp], a.b[imp])}) == 50  # without replacement
    assert a.info == {**a.info, "sampled": True, "seed": 3, "max_impostors": 50, "impostors_available": 264}
    # more than available: everything, nothing sampled
    assert folder_pairs(root, max_impostors=10_000).n_impostor == 264


def test_folder_pairs_sampling_covers_pairs_uniformly(tmp_path: Path) -> None:
    root = _tree(tmp_path, [1] * 6)  # 15 impostor pairs, sample 5 -> each pair has p = 1/3
    hits = np.zeros(15)
    index = {pair: k for k, pair in enumerate(zip(*np.triu_indices(6, 1)))}
    for seed in range(300):
        p = folder_pairs(root, max_impostors=5, seed=seed)
        for x, y in zip(p.a, p.b):
            hits[index[(int(x), int(y))]] += 1
    assert np.abs(hits / 300 - 1 / 3).max() < 0.1


def test_folder_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        folder_pairs(tmp_path / "missing")
    with pytest.raises(DataError, match="max_impostors"):
        folder_pairs(_tree(tmp_path / "t", [2, 2]), max_impostors=0)


# --------------------------------------------------------------------------- identification


def test_identification_csvs(people: Path) -> None:
    g = _write(people / "gallery.csv", "path,identity\nAnn/Ann_0001.jpg,Ann\nBob/Bob_0001.jpg,Bob\n")
    q = _write(people / "probes.csv", "Ann/Ann_0002.jpg,Ann\nCy/Cy_0001.jpg,Cy\n")
    proto = read_identification(g, q, people)
    assert [i for _, i in proto.gallery] == ["Ann", "Bob"]
    assert proto.probes[1] == (people / "Cy" / "Cy_0001.jpg", "Cy")


@pytest.mark.parametrize("text,message", [
    ("Ann/Ann_0001.jpg\n", ":1: expected 2 fields"),
    ("path,identity\nAnn/Ann_0001.jpg,Ann,x\n", ":2: expected 2 fields"),
    ("Ann/Ann_0001.jpg,\n", ":1: empty identity"),
    (",Ann\n", ":1: empty path"),
    ("Ann/Ann_0009.jpg,Ann\n", ":1: image"),
    ("path,identity\n", "has no rows"),
])
def test_identification_malformed(people: Path, text: str, message: str) -> None:
    good = _write(people / "good.csv", "Ann/Ann_0001.jpg,Ann\n")
    bad = _write(people / "bad.csv", text)
    with pytest.raises(DataError) as e:
        read_identification(good, bad, people)
    assert message in str(e.value) and "bad.csv" in str(e.value)
