"""Bulk enrollment (issue 12): streamed, batched commits, resume by path and content hash, a
summary of skips; a killed run resumes without duplicates (real processes, signals)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import make_pattern_image, pattern_people
from verikit.index.gallery import DB_FILE, Gallery
from verikit.pipeline.bulk import ALREADY, UNREADABLE

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture()
def people(tmp_path):
    root = pattern_people(tmp_path / "people", 5, 4, size=32)
    (root / "id0" / "notes.txt").write_text("not an image")
    (root / "id1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    return root


def _service(gallery, model_dir):
    from verikit.service import Service
    return Service.open(gallery, model=model_dir, device="cpu")


def test_bulk_stores_what_a_normal_enroll_stores_in_batches_and_lists_skips(tmp_path, people, tiny_model_dir):
    with _service(tmp_path / "bulk", tiny_model_dir) as svc:
        report = svc.enroll_bulk(people, batch_commit=6, workers=2, batch_size=4)
    assert sum(report.enrolled.values()) == 20 and report.files == 22
    assert 3 <= report.batches <= 4  # a commit once >= 6 wait, checked every loader batch of 4 files
    assert report.skipped == {"not an image file": 1, UNREADABLE: 1}
    assert report.examples[UNREADABLE][0].startswith(str(people / "id1" / "broken.png"))
    with _service(tmp_path / "normal", tiny_model_dir) as svc:
        svc.enroll({f"id{i}": sorted(str(p) for p in (people / f"id{i}").glob("[0-9].png")) for i in range(5)})
    with Gallery.open(tmp_path / "bulk") as b, Gallery.open(tmp_path / "normal") as n:
        assert {i.name: i.n_templates for i in b.identities()} == {f"id{i}": 4 for i in range(5)}
        for i in range(5):  # the same templates as the one-transaction enroll, from the same files
            src_b = b.identity(f"id{i}").sources
            order = np.argsort(src_b)
            assert np.allclose(b.templates(f"id{i}")[order], n.templates(f"id{i}"), atol=1e-6)
        commits = [e for e in b.audit_log(100) if e["action"] in ("enroll", "add_templates")]
        assert len({e["at"] for e in commits}) >= 1 and len(commits) > 5  # identities split over batches


def test_resume_skips_same_path_and_content_and_takes_a_changed_file(tmp_path, people, tiny_model_dir):
    gallery = tmp_path / "g"
    with _service(gallery, tiny_model_dir) as svc:
        svc.enroll_bulk(people, batch_commit=100, workers=0)
        again = svc.enroll_bulk(people, batch_commit=100, workers=0, resume=True)
        assert sum(again.enrolled.values()) == 0 and again.skipped[ALREADY] == 20 and again.batches == 0
        make_pattern_image(people / "id3" / "0.png", 3, 99, size=32)  # same path, new content
        changed = svc.enroll_bulk(people, batch_commit=100, workers=0, resume=True)
        assert dict(changed.enrolled) == {"id3": 1} and changed.skipped[ALREADY] == 19
    with Gallery.open(gallery) as g:
        assert g.n_templates == 21
        g.remove("id3")  # its content hashes go with its templates (same transaction)
    conn = sqlite3.connect(gallery / DB_FILE)
    try:
        assert conn.execute("SELECT COUNT(*) FROM template_sources").fetchone()[0] == 16
    finally:
        conn.close()


def test_a_bulk_run_killed_after_a_batch_resumes_without_duplicates(tmp_path, people, tiny_model_dir):
    gallery = tmp_path / "g"
    cmd = [sys.executable, "-m", "verikit.cli.main", "enroll", "--from-folder", str(people), "-m", str(tiny_model_dir),
           "-g", str(gallery), "--batch-commit", "5", "--workers", "0", "--batch-size", "5", "-q", "--format", "json"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**ENV, "VERIKIT_TEST_STOP_AT": "write-committed"})
    for line in child.stderr:  # stops itself right after its first batch committed
        if line.strip() == "verikit-marker: write-committed":
            break
    else:
        pytest.fail("the bulk enroll never committed a batch")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    with Gallery.open(gallery) as g:
        first = g.n_templates
    assert 5 <= first < 20
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 4, r.stderr  # finished, with the two files it cannot enroll listed
    out = json.loads(r.stdout)
    assert out["templates"] == 20 - first and out["skipped"][ALREADY]["count"] == first
    assert "skipped 1 file(s): unreadable image" in r.stderr
    with Gallery.open(gallery) as g:
        assert g.n_templates == 20 and {i.n_templates for i in g.identities()} == {4}


def test_bulk_mode_refuses_what_it_cannot_do_in_one_line(tmp_path, people, tiny_model_dir):
    base = [sys.executable, "-m", "verikit.cli.main", "enroll", "-m", str(tiny_model_dir), "-g", str(tmp_path / "g")]
    r = subprocess.run(base + ["--from-folder", str(people), "--resume", "--detector", "haar"], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "embeds whole images" in r.stderr
    r = subprocess.run(base + ["alice", str(people / "id0" / "0.png"), "--batch-commit", "10"], capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.returncode == 2 and "enrolls --from-folder DIR only" in r.stderr
    assert not (tmp_path / "g" / DB_FILE).exists()


def test_each_file_is_read_once_its_hash_is_of_the_bytes_decoded_and_a_batch_is_one_plain_tensor(
        tmp_path, people, orl, tiny_model_dir):
    import hashlib

    import torch
    from torch.utils.data import DataLoader

    from verikit.io import load_image, load_image_bytes
    from verikit.models.preprocess import to_tensor_transform
    from verikit.pipeline.bulk import _collate, _Decoded
    from verikit.structures import InputSpec

    for path in (orl / "s1" / "1.pgm", people / "id0" / "0.png"):  # a real photo and a synthetic PNG
        data, image = load_image_bytes(path)
        assert data == path.read_bytes()
        assert np.array_equal(np.asarray(image), np.asarray(load_image(path)))
    # What the main process receives per loader batch: the good files stacked into one plain tensor
    # (not a torchvision subclass), in file order, and the unusable files with their reasons.
    transform = to_tensor_transform(InputSpec(size=(32, 32)))
    batches = list(DataLoader(_Decoded(people, transform), batch_size=8, num_workers=2, collate_fn=_collate))
    assert sum(b.files for b in batches) == 22
    assert sorted(r for b in batches for r, _ in b.skipped) == sorted(["not an image file", UNREADABLE])
    for b in batches:
        assert type(b.inputs) is torch.Tensor and b.inputs.shape == (len(b.names), 3, 32, 32)
        for name, path, digest, x in zip(b.names, b.paths, b.digests, b.inputs):
            assert torch.equal(x, transform(load_image(path)).as_subclass(torch.Tensor))
            assert digest == hashlib.sha256(open(path, "rb").read()).hexdigest() and path.startswith(str(people / name))
    with _service(tmp_path / "g", tiny_model_dir) as svc:
        svc.enroll_bulk(people, batch_commit=100, workers=0)
    conn = sqlite3.connect(tmp_path / "g" / DB_FILE)
    try:
        stored = conn.execute("SELECT t.source, s.sha256 FROM templates t JOIN template_sources s "
                              "ON s.template_id = t.id").fetchall()
    finally:
        conn.close()
    assert len(stored) == 20 and all(h == hashlib.sha256(open(p, "rb").read()).hexdigest() for p, h in stored)


def test_a_named_pipe_among_the_images_is_skipped_never_waited_on(tmp_path, people, tiny_model_dir):
    from verikit.errors import ImageError
    from verikit.io import load_image_bytes

    fifo = people / "id2" / "9.png"
    os.mkfifo(fifo)  # no writer: any blocking open or read would hang the test (pytest-timeout ends it)
    with pytest.raises(ImageError, match="named pipe"):
        load_image_bytes(fifo)
    with _service(tmp_path / "g", tiny_model_dir) as svc:
        report = svc.enroll_bulk(people, batch_commit=100, workers=2, batch_size=4)
    assert sum(report.enrolled.values()) == 20 and report.skipped["not an image file"] == 2
    assert str(fifo) in report.examples["not an image file"]
