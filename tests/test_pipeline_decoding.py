"""A batch of image files decoded on a few threads (verikit.pipeline.decoding) gives exactly what
the serial path gives: the same pixels, the same one-line errors, in input order, on real FDDB
photos and ORL faces mixed with unreadable, empty and missing files and in-memory images; the
pool is reused; Pillow's warning filters survive threads decoding at once; and the detector's
file paths (``crops_of_files``, ``embed_files_through``) give what they gave with serial decoding."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from PIL import Image

from verikit.errors import ImageError
from verikit.image_input import to_image
from verikit.io import quiet_pillow
from verikit.pipeline import decoding
from verikit.pipeline.decoding import decode_batch


def _serial(inputs):
    out = []
    for x in inputs:
        try:
            out.append(to_image(x))
        except ImageError as exc:
            out.append(exc)
    return out


def _same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w)
        if isinstance(w, ImageError):
            assert str(g) == str(w)
        else:
            assert g.mode == w.mode == "RGB" and g.size == w.size
            assert np.array_equal(np.asarray(g), np.asarray(w))


@pytest.fixture(scope="module")
def photos(shared_data):
    folds = shared_data / "fddb" / "FDDB-folds"
    if not folds.is_dir():
        pytest.skip(f"FDDB not found under {shared_data}")
    names = (folds / "FDDB-fold-02.txt").read_text().split()[:10]
    return [shared_data / "fddb" / "originalPics" / f"{n}.jpg" for n in names]


@pytest.fixture()
def mixed(photos, orl, tmp_path):
    """Real photos and faces with every kind of failure in between."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:2000])
    faces = sorted((orl / "s1").glob("*.pgm"))[:4]
    return [photos[0], empty, *photos[1:5], garbage, faces[0], tmp_path / "missing.png", faces[1],
            truncated, tmp_path, *photos[5:], *faces[2:]]


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_parallel_decode_equals_serial_image_for_image_and_error_for_error(mixed, workers):
    want = _serial(mixed)
    assert sum(isinstance(w, ImageError) for w in want) == 5  # empty, garbage, missing, truncated, a folder
    assert "file is empty" in str(want[1]) and "missing.png" in str(want[8])
    _same(decode_batch(mixed, workers=workers), want)
    _same(decode_batch(mixed, workers=1), want)


def test_in_memory_images_keep_their_place_among_files(photos, tmp_path):
    pil = Image.open(photos[2])  # lazily opened: loaded in the calling thread
    array = np.asarray(to_image(photos[3]))
    inputs = [photos[0], pil, photos[1], photos[4].read_bytes(), array, pil, b"", photos[5], np.zeros((4, 4, 2))]
    want = _serial(inputs)
    assert [isinstance(w, ImageError) for w in want] == [False] * 6 + [True, False, True]
    _same(decode_batch(inputs, workers=4), want)


def test_the_pool_is_reused_not_made_per_batch(photos):
    def decoders():
        return {t for t in threading.enumerate() if t.name.startswith("verikit-pool-2_")}

    decode_batch(photos, workers=2)
    first = decoders()
    for _ in range(3):
        decode_batch(photos, workers=2)
    assert decoders() == first and 1 <= len(first) <= 2


def test_default_workers_follow_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert decoding.decode_workers() == 1
        torch.set_num_threads(2)
        assert decoding.decode_workers() == 2
    finally:
        torch.set_num_threads(before)


def test_quiet_pillow_entered_and_left_interleaved_by_two_threads():
    """A enters, B enters, A leaves, B is still decoding (Pillow's warnings must still be off),
    B leaves: the filters are back as they were. ``warnings.catch_warnings`` alone fails this."""
    before = list(warnings.filters)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with quiet_pillow():
            a_in.set()
            b_in.wait()
        a_out.set()

    def b():
        a_in.wait()
        with quiet_pillow():
            b_in.set()
            a_out.wait()
            with warnings.catch_warnings(record=True) as caught:
                warnings.warn_explicit("Corrupt EXIF data", UserWarning, "TiffImagePlugin.py", 1, module="PIL")
            seen["after_a_left"] = len(caught)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["after_a_left"] == 0
    assert warnings.filters == before


def test_crops_of_files_as_with_serial_decoding(photos, tmp_path):
    from verikit.pipeline.detection import FaceCropper
    from verikit.pipeline.settings import FacePolicy, PipelineSettings

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    files = [photos[0], empty, *photos[1:7]]
    cropper = FaceCropper(PipelineSettings("haar"), FacePolicy("all"))
    batches = list(cropper.crops_of_files(files, batch_size=4))
    # the serial reference: each file read on its own, then the same batches through the detector
    want_crops, want_failures = [], []
    for start in (0, 4):
        batch = files[start:start + 4]
        good = [p for p in batch if p != empty]
        if empty in batch:
            want_failures.append((empty, f"cannot read image '{empty}': file is empty"))
        for p, got in zip(good, cropper.crops_of_images([to_image(p) for p in good], good)):
            if isinstance(got, ImageError):
                want_failures.append((p, str(got)))
            else:
                want_crops.extend(got)
    crops = [c for got, _ in batches for c in got]
    assert [f for _, got in batches for f in got] == want_failures
    assert len(crops) == len(want_crops) > 0
    for c, w in zip(crops, want_crops):
        assert (c.source, c.face, c.of, c.box, c.score) == (w.source, w.face, w.of, w.box, w.score)
        assert np.array_equal(np.asarray(c.image), np.asarray(w.image))


def test_embed_files_through_as_with_serial_decoding(photos, tiny_model, tmp_path, monkeypatch):
    from verikit.pipeline.files import embed_files_through
    from verikit.pipeline.settings import PipelineSettings

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 broken")
    files = [*photos[:3], broken, *photos[3:8]]
    pipeline = PipelineSettings("haar")
    runs = []
    for workers in (1, 4):
        monkeypatch.setattr(decoding, "decode_workers", lambda w=workers: w)
        runs.append(embed_files_through(tiny_model, files, pipeline, batch_size=4, fallback="center"))
    serial, parallel = runs
    assert parallel.paths == serial.paths and len(serial.paths) == len(files) - 1
    assert np.array_equal(parallel.embeddings, serial.embeddings)
    assert parallel.failures == serial.failures == [(broken, serial.failures[0][1])]
    assert serial.failures[0][1].startswith(f"cannot read image '{broken}'")
    assert parallel.no_face == serial.no_face and parallel.fallback == serial.fallback
