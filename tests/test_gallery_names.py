"""Identity names are data (issue 14): which names a gallery accepts, and that every output prints
them as they are (never as rich markup, never as raw terminal control sequences)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from verikit.errors import GalleryError
from verikit.index.gallery import DB_FILE, Gallery
from verikit.index.names import MAX_NAME_LENGTH, check_name

DIM = 8
ENV = {**os.environ, "COLUMNS": "200"}


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(1, DIM)).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("name", ["alice", "[/]", "[bold red]x[/]", "O'Brien \"Bob\"", "José Núñez", "李小龙",
                                  "محمد", "क्षत्रिय", "👩\u200d👩\u200d👧", "a b", "x" * MAX_NAME_LENGTH, "-dash",
                                  "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"])  # Persian with ZWNJ
def test_names_a_gallery_accepts(name):
    assert check_name(name) == unicodedata.normalize("NFC", name)


@pytest.mark.parametrize("name, why", [
    ("", "1-200 characters"), (" padded", "leading/trailing"), ("padded ", "leading/trailing"),
    ("two\nlines", "'\\n'"), ("tab\there", "'\\t'"), ("\x1b[31mred", "'\\x1b'"), ("bell\x07", "'\\x07'"),
    ("cr\rhidden", "'\\r'"), ("del\x7f", "'\\x7f'"), ("rtl\u202eevil", "'\\u202e'"), ("zero\u200bwidth", "'\\u200b'"),
    ("bom\ufeff", "'\\ufeff'"), ("line\u2028sep", "'\\u2028'"), ("bad\udcff", "'\\udcff'"), ("x" * (MAX_NAME_LENGTH + 1), "1-200"),
])
def test_names_a_gallery_refuses_with_one_line(name, why):
    with pytest.raises(GalleryError, match="invalid identity name") as exc:
        check_name(name)
    assert "\n" not in str(exc.value) and why in str(exc.value)


def test_composed_and_decomposed_spellings_are_one_identity(tmp_path):
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        assert g.add("Jose\u0301", unit(1)) == 1      # decomposed, as macOS folder names are
        g.add("Jos\u00e9", unit(2))                   # composed
        assert [(p.name, p.n_templates) for p in g.identities()] == [("Jos\u00e9", 2)]
        assert "Jose\u0301" in g and g.identity("Jose\u0301").n_templates == 2
        g.rename("Jose\u0301", "Zo\u0308e")
        assert [p.name for p in g.identities()] == ["Z\u00f6e"]


def test_refused_names_leave_the_gallery_untouched(tmp_path):
    with Gallery.create(tmp_path / "g", dim=DIM, fingerprint="fp") as g:
        g.add("ok", unit(1))
        generation = g.generation
        for bad in ["\x1b]0;pwned\x07", "new\nline"]:
            with pytest.raises(GalleryError, match="invalid identity name"):
                g.add_many({"fine": (unit(2), None), bad: (unit(3), None)})
            with pytest.raises(GalleryError, match="invalid identity name"):
                g.rename("ok", bad)
        assert [p.name for p in g.identities()] == ["ok"] and g.generation == generation


def cli(*args) -> subprocess.CompletedProcess:
    """The real command, its stdout and stderr as BYTES (what reaches a terminal)."""
    return subprocess.run([sys.executable, "-m", "verikit.cli.main", *map(str, args)], capture_output=True,
                          env=ENV, timeout=300)


@pytest.fixture()
def hostile_gallery(tmp_path):
    """Names with markup, plus names with control characters written by an older verikit (or by
    hand): the rule stops new ones, the output must still cope with old ones."""
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add("[/]", unit(1), sources=["/photos/[red]x[/].jpg"], metadata={"note": "[bold]hi"})
        g.add("[bold]boss", unit(2))
        g.add("legacy", unit(3))
        g.add("ansi", unit(4), sources=["/photos/ansi.jpg"])
        g.set_metadata("legacy", {"k": "v"})
    conn = sqlite3.connect(str(path / DB_FILE))
    with conn:
        conn.execute("UPDATE identities SET name=? WHERE name='legacy'", ("\x1b[2J\x1b[31mred\x07",))
        conn.execute("UPDATE identities SET name=?, metadata=? WHERE name='ansi'",
                     ("rtl\u202eevil", '{"x": "\\u001b[5mblink"}'))
        conn.execute("UPDATE templates SET source=? WHERE source='/photos/ansi.jpg'", ("/photos/\x1b[1mbold.jpg",))
        conn.execute("UPDATE audit SET identity=? WHERE identity='legacy'", ("\x1b[2J\x1b[31mred\x07",))
    conn.close()
    return path


def assert_no_control_bytes(data: bytes) -> None:
    text = data.decode("utf-8")
    bad = [ch for ch in text if ch not in "\n" and unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\u200c\u200d"]
    assert not bad, f"raw control characters reached the terminal: {bad!r}"


@pytest.mark.parametrize("command", [["gallery", "list"], ["gallery", "audit"], ["gallery", "show", "[/]"],
                                     ["gallery", "show", "[bold]boss"], ["gallery", "show", "\x1b[2J\x1b[31mred\x07"],
                                     ["gallery", "show", "rtl\u202eevil"], ["gallery", "info"]])
def test_outputs_print_names_as_data(hostile_gallery, command):
    r = cli(*command, "-g", hostile_gallery)
    assert r.returncode == 0, r.stderr.decode()
    assert_no_control_bytes(r.stdout)
    assert_no_control_bytes(r.stderr)
    out = r.stdout.decode()
    if command[1] in ("list", "audit"):
        assert "[/]" in out and "[bold]boss" in out          # markup printed as itself
        assert "\\x1b[2J\\x1b[31mred\\x07" in out              # control characters made visible
    if command[1:] == ["show", "[/]"]:
        assert "[/]" in out and "/photos/[red]x[/].jpg" in out and "[bold]hi" in out
    if command[1:] == ["show", "rtl\u202eevil"]:
        assert "rtl\\u202eevil" in out and "\\x1b[5mblink" in out and "/photos/\\x1b[1mbold.jpg" in out


def test_json_output_keeps_names_exact(hostile_gallery):
    import json

    r = cli("gallery", "list", "-g", hostile_gallery, "--format", "json")
    assert r.returncode == 0
    assert_no_control_bytes(r.stdout)
    assert {p["name"] for p in json.loads(r.stdout)} == {"[/]", "[bold]boss", "\x1b[2J\x1b[31mred\x07", "rtl\u202eevil"}


def test_errors_about_names_are_one_escaped_line(hostile_gallery):
    r = cli("gallery", "rename", "[/]", "\x1b]0;pwned\x07", "-g", hostile_gallery)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid identity name"), lines
    assert_no_control_bytes(r.stderr)
    r = cli("gallery", "show", "\x1b[0mghost", "-g", hostile_gallery)
    assert r.returncode == 1 and b"is not enrolled" in r.stderr
    assert_no_control_bytes(r.stderr)


def test_enroll_help_states_the_rule_for_names():
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "enroll", "--help"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "up to 200 characters" in text and "escape sequences" in text and "NFC" in text
