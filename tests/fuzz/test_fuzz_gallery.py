"""Property-based tests of the gallery against hostile names and damaged files (issue 14).

Every outcome must be either correct behaviour or ONE line of GalleryError/DataError: never
another exception (a traceback for a user), a hang (pytest-timeout) or silent acceptance of a
template that cannot be a template. `make fuzz` runs these with the long profile.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import unicodedata
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from verikit.cli.display import safe_text, visible
from verikit.errors import VerikitError
from verikit.index.gallery import DB_FILE, INDEX_FILE, Gallery
from verikit.index.names import forbidden_character

pytestmark = pytest.mark.fuzz
DIM = 8
PEOPLE = [f"p{i}" for i in range(12)]


def unit(seed: int, n: int = 2) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, VerikitError), f"{type(exc).__name__} escaped: {exc!r}"
    assert str(exc) and "\n" not in str(exc), f"not one line: {str(exc)!r}"


# -- names -----------------------------------------------------------------------------------------
names = st.text(st.characters(codec=None), max_size=40) | st.sampled_from(
    ["[/]", "[bold]x[/bold]", "\x1b[31mred", "a\u202eb", " x", "x ", "e\u0301", "\ud800", "😀\u200d😀", "x\x00y"])


def cli_output(*args: str) -> str:
    """The command run in-process (typer's CliRunner): exit 0, and nothing a terminal would act on."""
    from typer.testing import CliRunner

    from verikit.cli.main import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    inert = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    assert not [ch for ch in result.stdout if unicodedata.category(ch) in inert and ch not in "\n\u200c\u200d"]
    return result.stdout


def rendered(value: str) -> str:
    from rich.console import Console

    out = StringIO()
    Console(file=out, width=500, force_terminal=True, color_system=None).print(safe_text(value))
    return out.getvalue()


@given(name=names)
def test_any_name_is_stored_exactly_or_refused_in_one_line(name):
    assume(unicodedata.normalize("NFC", name) != "anchor")
    with tempfile.TemporaryDirectory() as tmp, Gallery.create(Path(tmp) / "g", dim=DIM, fingerprint="fp") as g:
        g.add("anchor", unit(0))
        try:
            g.add(name, unit(1))
        except VerikitError as exc:
            one_line(exc)
            assert [p.name for p in g.identities()] == ["anchor"] and g.n_templates == 2
            return
        stored = unicodedata.normalize("NFC", name)
        assert forbidden_character(stored) is None and stored == stored.strip()
        assert sorted(p.name for p in g.identities()) == sorted(["anchor", stored])
        assert name in g and g.identity(name).name == stored
        assert g.search(unit(1)[0], 1)[0][0].identity == stored
        assert g.audit_log(1)[0]["identity"] == stored
        g.close()
        for command in (["gallery", "list"], ["gallery", "audit"]):  # tables may wrap a long name: exit 0, inert
            cli_output(*command, "-g", str(g.path))
        assert visible(stored) in cli_output("gallery", "show", "-g", str(g.path), "--", name)
        g = Gallery.open(g.path)
        renamed = stored + "~" if len(stored) < 200 else "~" + stored[1:]
        g.rename(name, renamed)
        assert renamed in g and name not in g or name == renamed
        assert g.remove(renamed) == 2
        assert [p.name for p in g.identities()] == ["anchor"]
        assert all(e["identity"] != renamed for e in g.audit_log())  # the log was anonymised
        g.close()


@given(value=st.text(st.characters(codec=None), max_size=60))
def test_any_string_prints_as_inert_text(value):
    """What the CLI prints for a user string: no control or format character reaches the terminal,
    no markup is interpreted, and nothing printable is lost."""
    inert = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    shown = visible(value)
    assert not [ch for ch in shown if unicodedata.category(ch) in inert and ch not in "\u200c\u200d"]
    out = rendered(value)  # through rich, as the CLI prints: no colours here, so no escape byte may appear
    assert not [ch for ch in out if unicodedata.category(ch) in inert and ch not in "\n\u200c\u200d"]
    for ch in value:
        if ch.isprintable() and not ch.isspace():
            assert ch in out


# -- damaged files -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sound_gallery(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fuzz") / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({n: (unit(i), [f"/img/{n}-{k}.png" for k in range(2)]) for i, n in enumerate(PEOPLE)})
        g.rename("p11", "eleven")
        g.set_metadata("p2", {"team": "red"})
    return path


META_KEYS = ["schema_version", "dim", "fingerprint", "index", "generation", "uid", "created_at", "model_path",
             "similarity", "templates", "template_id_hash", "erasure_pending"]
meta_damage = st.tuples(st.just("meta"), st.sampled_from(META_KEYS),
                        st.none() | st.text(max_size=12) | st.integers(-5, 10**20).map(str) | st.sampled_from(
                            ["nan", "inf", "1e400", "0", "-1", "8.0", "faiss:IVF64,Flat", "l2", "faiss:Nope"]))
blob_damage = st.tuples(st.just("blob"), st.integers(1, 24), st.binary(max_size=80) | st.sampled_from(
    [np.full(DIM, np.nan, np.float32).tobytes(), np.full(DIM, np.inf, np.float32).tobytes(), b"", b"abcd"]))
# Truncations (page-aligned or not) and flips of bytes past the 100-byte header, file kept whole:
# the header's own damage is the easy case, the pages are where silent acceptance could hide.
byte_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.3, 0.999), st.booleans()),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8),
              st.none()))
damage = st.one_of(meta_damage, blob_damage, byte_damage)


def apply(path: Path, kind: str, a, b) -> None:
    db = path / DB_FILE
    if kind == "meta":
        conn = sqlite3.connect(str(db))
        with conn:
            if b is None:
                conn.execute("DELETE FROM meta WHERE key=?", (a,))
            else:
                conn.execute("UPDATE meta SET value=? WHERE key=?", (b, a))
        conn.close()
    elif kind == "blob":
        conn = sqlite3.connect(str(db))
        with conn:
            conn.execute("UPDATE templates SET vector=? WHERE id=?", (b, a))
        conn.close()
    elif kind == "truncate":  # to a fraction of the file, page-aligned when b
        data = db.read_bytes()
        size = int(len(data) * a)
        db.write_bytes(data[: size - size % 4096 if b else size])
    else:  # flip bytes at relative offsets past the header
        data = bytearray(db.read_bytes())
        for where, xor in a:
            data[100 + int(where * (len(data) - 101))] ^= xor
        db.write_bytes(bytes(data))


def exercise(path: Path) -> None:
    """What users do with a gallery; each step is correct or one line of error."""
    try:
        g = Gallery.open(path)
    except VerikitError as exc:
        one_line(exc)
        return
    steps = [g.info, g.identities, lambda: g.identity("p2"), lambda: g.search(unit(3), 3),
             lambda: g.score(unit(4)[0], "p4"), lambda: g.templates("p5"), lambda: g.audit_log(50),
             lambda: g.add("newcomer", unit(99)), lambda: g.rename("p6", "six"), lambda: g.remove("p7"),
             g.rebuild_index, g.check]
    try:
        for step in steps:
            try:
                result = step()
            except VerikitError as exc:
                one_line(exc)
                continue
            if step is g.check:
                assert isinstance(result, list)
            if isinstance(result, list) and result and isinstance(result[0], list):  # search hits
                names = {p.name for p in g.identities()}
                assert all(h.identity in names for hits in result for h in hits)
    finally:
        try:
            g.close()
        except VerikitError as exc:
            one_line(exc)


@given(change=damage, drop_index=st.booleans())
def test_a_damaged_gallery_gives_one_line_or_correct_answers(sound_gallery, change, drop_index):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g"
        shutil.copytree(sound_gallery, path)
        apply(path, *change)
        if drop_index:
            (path / INDEX_FILE).unlink()
        exercise(path)


@given(template=st.integers(1, 24), bad=st.sampled_from(["nan", "short", "long", "text"]))
def test_a_bad_template_is_never_accepted_silently(sound_gallery, template, bad):
    """Reading the damaged template (its identity's score, a rebuild) must refuse it, naming it."""
    blob = {"nan": np.full(DIM, np.nan, np.float32).tobytes(), "short": b"\x00" * 4,
            "long": np.ones(DIM + 1, np.float32).tobytes(), "text": "a" * (4 * DIM)}[bad]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g"
        shutil.copytree(sound_gallery, path)
        apply(path, "blob", template, blob)
        with Gallery.open(path) as g:
            conn = sqlite3.connect(str(path / DB_FILE))
            owner = conn.execute("SELECT i.name FROM templates t JOIN identities i ON i.id = t.identity_id "
                                 "WHERE t.id=?", (template,)).fetchone()[0]
            conn.close()
            for read in (lambda: g.score(unit(1)[0], owner), g.rebuild_index, lambda: g.templates(owner)):
                with pytest.raises(VerikitError, match=f"template {template} is damaged") as exc:
                    read()
                one_line(exc.value)
