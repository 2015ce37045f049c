"""A damaged gallery gives one line naming the gallery and what is wrong (issue 14): a meta table
that breaks its declared schema, template blobs of the wrong size or with NaN, a truncated file."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from verikit.errors import DataError, GalleryError
from verikit.index.gallery import DB_FILE, INDEX_FILE, INDEX_META_FILE, Gallery

DIM = 8
ENV = {**os.environ, "COLUMNS": "200"}


def unit(seed: int, n: int = 2) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture()
def gallery(tmp_path):
    path = tmp_path / "g"
    with Gallery.create(path, dim=DIM, fingerprint="fp") as g:
        g.add_many({f"p{i}": (unit(i), [f"/img/p{i}-{k}.png" for k in range(2)]) for i in range(40)})
    return path


def sql(path, statement, *params):
    conn = sqlite3.connect(str(path / DB_FILE))
    with conn:
        conn.execute(statement, params)
    conn.close()


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verikit.cli.main", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=300)


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 1, f"exit {r.returncode}: {r.stdout} {r.stderr}"
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("damage, needles", [
    ("DELETE FROM meta WHERE key='fingerprint'", ["field 'fingerprint'", "Field required"]),
    ("DELETE FROM meta WHERE key='dim'", ["field 'dim'", "Field required"]),
    ("UPDATE meta SET value='abc' WHERE key='dim'", ["field 'dim'", "valid integer", "'abc'"]),
    ("UPDATE meta SET value='-8' WHERE key='dim'", ["field 'dim'", "greater than 0"]),
    ("UPDATE meta SET value='nope' WHERE key='similarity'", ["field 'similarity'"]),
    ("UPDATE meta SET value='x' WHERE key='generation'", ["field 'generation'"]),
    ("DELETE FROM meta WHERE key='uid'", ["field 'uid'"]),
])
@pytest.mark.parametrize("command", ["info", "rebuild", "list"])
def test_a_meta_table_that_breaks_its_schema_is_one_line(gallery, damage, needles, command):
    sql(gallery, damage)
    one_line_error(cli("gallery", command, "-g", gallery), str(gallery), "table meta", *needles)
    with pytest.raises(GalleryError, match="table meta"):
        Gallery.open(gallery)


@pytest.mark.parametrize("blob, what", [(b"\x00\x00\x80\x7f", "4 bytes"),
                                        (np.full(DIM, np.nan, np.float32).tobytes(), "NaN"),
                                        (np.r_[np.ones(DIM - 1), np.inf].astype(np.float32).tobytes(), "NaN or infinite"),
                                        (np.ones(DIM, np.float64).tobytes(), f"{8 * DIM} bytes")])
def test_damaged_template_blobs_are_refused_where_they_are_read(gallery, blob, what):
    sql(gallery, "UPDATE templates SET vector=? WHERE id=7", blob)  # p3's second template
    needles = [str(gallery), "template 7 is damaged", what]
    one_line_error(cli("gallery", "rebuild", "-g", gallery), *needles)
    one_line_error(cli("gallery", "check", "-g", gallery), *needles)
    with Gallery.open(gallery) as g:  # the saved index is sound: opening and other people still work
        assert g.search(unit(5)[0], 1)[0][0].identity == "p5"
        assert g.score(unit(5)[0], "p5") > 0.99
        for read in (lambda: g.score(unit(3)[0], "p3"), lambda: g.templates("p3"), g.rebuild_index):
            with pytest.raises(GalleryError, match="template 7 is damaged"):
                read()
    (gallery / INDEX_FILE).unlink()  # now opening must rebuild, and so read every blob
    one_line_error(cli("gallery", "info", "-g", gallery), *needles)


def test_nan_and_short_vectors_are_refused_on_write(gallery):
    with Gallery.open(gallery) as g:
        before = (g.generation, g.n_templates)
        for bad, message in [(np.full((1, DIM), np.nan), "NaN"), (np.ones((1, DIM - 4)), "size 8"),
                             (np.array([[np.inf] + [0.0] * (DIM - 1)]), "NaN or infinity"),
                             (np.zeros((1, DIM)), "zero vector"), ([["a"] * DIM], "numbers")]:
            with pytest.raises(DataError, match=message):
                g.add("p0", bad)
        assert (g.generation, g.n_templates) == before
        g.add("huge", np.full((1, DIM), 1e30))  # finite and normalisable: accepted, as a unit vector
        assert np.allclose(g.templates("huge"), 1 / np.sqrt(DIM))


@pytest.mark.parametrize("fraction", [0.95, 0.5])
def test_a_truncated_database_is_refused_on_open(gallery, fraction):
    db = gallery / DB_FILE
    db.write_bytes(db.read_bytes()[: int(db.stat().st_size * fraction)])
    line = one_line_error(cli("gallery", "info", "-g", gallery), "not a readable verikit gallery", "truncated")
    assert "restore it from a backup" in line
    with pytest.raises(GalleryError, match="truncated"):
        Gallery.open(gallery)


def test_damage_checks_are_cheap_and_quiet_on_a_sound_gallery(gallery):
    """A sound gallery opens without the full quick_check, and `gallery check` says it is sound."""
    r = cli("gallery", "check", "-g", gallery)
    assert r.returncode == 0 and "gallery is sound" in r.stderr, r.stderr


def test_a_schema_1_gallery_is_upgraded_in_place(gallery, tmp_path):
    """Galleries made before schema 2: the tables and aggregates are added on first open."""
    old = tmp_path / "old"
    shutil.copytree(gallery, old)
    conn = sqlite3.connect(str(old / DB_FILE))
    with conn:
        conn.execute("DROP TABLE removed_templates")
        conn.execute("ALTER TABLE audit DROP COLUMN subject")
        conn.execute("DELETE FROM meta WHERE key IN ('templates', 'template_id_hash', 'erasure_pending')")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()
    (old / INDEX_META_FILE).write_text('{"uid": "x", "generation": 1}')  # a schema-1 style record
    with Gallery.open(old) as g:
        assert g.info()["schema_version"] == 2 and g.n_templates == 80
        g.remove("p1")
        assert g.search(unit(2)[0], 1)[0][0].identity == "p2"
    assert cli("gallery", "check", "-g", old).returncode == 0
