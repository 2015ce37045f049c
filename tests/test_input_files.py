"""Hostile input files (issue 14): named pipes, names that are not UTF-8, symbolic link loops, deep
PGM/PNG files. Each case failed on the code before it: a hang, a crash, a wrong message or a
wrong picture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from verikit.errors import DataError, ImageError
from verikit.io import file_problem, is_image_file, list_images, load_image, path_text, scan_identity_folders

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
needs_bytes_names = pytest.mark.skipif(sys.platform in ("win32", "darwin"),
                                       reason="the file system must accept names that are not UTF-8")


def _face(orl: Path) -> np.ndarray:
    return np.asarray(Image.open(orl / "s1" / "1.pgm"))


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- named pipes -----------------------------------------------------------------------------------


@needs_fifo
@pytest.mark.timeout(60)  # the old folder scan blocked forever opening the pipe to sniff its type
def test_a_named_pipe_in_a_folder_is_skipped_never_opened(tmp_path, orl):
    (tmp_path / "ann").mkdir()
    Image.open(orl / "s1" / "1.pgm").save(tmp_path / "ann" / "1.png")
    os.mkfifo(tmp_path / "ann" / "pipe")        # no extension: the scan used to open it to sniff
    os.mkfifo(tmp_path / "ann" / "pipe.png")    # an image suffix does not make it a file
    images, skipped = list_images(tmp_path)
    assert images == [tmp_path / "ann" / "1.png"]
    assert skipped == [tmp_path / "ann" / "pipe", tmp_path / "ann" / "pipe.png"]
    assert not is_image_file(tmp_path / "ann" / "pipe") and not is_image_file(tmp_path / "ann" / "pipe.png")
    scan = scan_identity_folders(tmp_path)
    assert scan.identities == ["ann"] and len(scan.skipped) == 2


@needs_fifo
@pytest.mark.timeout(60)
def test_loading_a_named_pipe_is_refused_without_waiting(tmp_path):
    pipe = tmp_path / "probe.jpg"
    os.mkfifo(pipe)
    with pytest.raises(ImageError) as info:
        load_image(pipe)
    assert str(info.value) == f"cannot read image '{pipe}': a named pipe, not a regular file"


# -- symbolic links --------------------------------------------------------------------------------


def test_a_symlink_loop_is_called_a_loop(tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    with pytest.raises(ImageError) as info:
        load_image(loop)
    assert str(info.value) == f"cannot read image '{loop}': symbolic link loop"
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    assert file_problem(tmp_path / "a.png") == "symbolic link loop"


def test_a_dangling_symlink_says_where_it_points(tmp_path):
    link = tmp_path / "face.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match=r"'.*face.png': broken symbolic link \(to '.*gone.png'\)$"):
        load_image(link)
    assert file_problem(tmp_path / "missing.png") == "no such file"


def test_a_symlink_loop_in_a_folder_is_listed_and_reported_when_loaded(tmp_path, orl):
    (tmp_path / "ann").mkdir()
    Image.open(orl / "s1" / "1.pgm").save(tmp_path / "ann" / "1.png")
    (tmp_path / "ann" / "2.png").symlink_to(tmp_path / "ann" / "2.png")
    images, _ = list_images(tmp_path)
    assert tmp_path / "ann" / "2.png" in images  # so that enroll reports it with its reason


def test_a_pairs_file_naming_a_symlink_loop_says_so(tmp_path):
    from verikit.evaluate.protocols import read_pairs_csv

    (tmp_path / "a.png").symlink_to(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "pairs.csv").write_text("a.png,b.png,1\n")
    with pytest.raises(DataError, match=r"pairs.csv:1: image '.*a.png' cannot be read: symbolic link loop$"):
        read_pairs_csv(tmp_path / "pairs.csv")


# -- names that are not UTF-8 ----------------------------------------------------------------------


def test_path_text_escapes_undecodable_bytes_and_keeps_the_rest():
    assert path_text(os.fsdecode(b"d\xe9nise/\xff\xfe.pgm")) == "d\\xe9nise/\\xff\\xfe.pgm"
    assert path_text(Path(os.fsdecode(b"x\xff"))) == "x\\xff"
    assert path_text(b"caf\xc3\xa9") == path_text("café") == "café"
    assert path_text("bad \ud800 surrogate") == "bad \\ud800 surrogate"  # not from the file system
    assert path_text(os.fsdecode(b"\xff")) != path_text(os.fsdecode(b"\xfe"))  # different names stay different


@needs_bytes_names
def test_scan_names_identities_as_text(tmp_path, orl):
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9nise"))
    folder.mkdir()
    target = Path(os.fsdecode(os.fsencode(folder) + b"/\xff\xfe.pgm"))
    target.write_bytes((orl / "s1" / "1.pgm").read_bytes())
    scan = scan_identity_folders(tmp_path)
    assert scan.identities == ["d\\xe9nise"]
    assert scan.by_identity["d\\xe9nise"] == [target]  # the path itself still opens the file
    load_image(target)
    with pytest.raises(ImageError) as info:
        load_image(Path(os.fsdecode(os.fsencode(folder) + b"/\xfe\xfe.pgm")))
    info.value.args[0].encode("utf-8")  # the message is printable UTF-8
    assert "\\xfe\\xfe.pgm': no such file" in str(info.value)


@needs_bytes_names
@needs_fifo
@pytest.mark.slow
@pytest.mark.timeout(900)  # two CLI runs; a loaded 2-core machine is slow
def test_enroll_from_a_folder_with_bytes_names_and_a_pipe(tmp_path, orl, tiny_model_dir):
    """`verikit enroll --from-folder` crashed with UnicodeEncodeError (surrogates not allowed) on
    `d\\xe9nise/\\xff\\xfe.pgm`, and hung on a named pipe. Names are stored as path_text."""
    root = os.fsencode(tmp_path / "people")
    os.makedirs(root + b"/d\xe9nise")
    os.makedirs(root + b"/bob")
    for name, src in ((b"/d\xe9nise/\xff\xfe.pgm", "s1/1.pgm"), (b"/bob/1.pgm", "s2/1.pgm"), (b"/bob/\xe9.pgm", "s2/2.pgm")):
        with open(root + name, "wb") as f:
            f.write((orl / src).read_bytes())
    os.mkfifo(root + b"/bob/pipe")
    gallery = tmp_path / "g"
    # A UTF-8 terminal whose stream refuses what it cannot encode (not the C locale's surrogateescape).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONIOENCODING": "utf-8"}
    cli = [sys.executable, "-m", "verikit.cli.main"]
    out = subprocess.run([*cli, "enroll", "--from-folder", os.fsdecode(root), "--model", str(tiny_model_dir),
                          "--gallery", str(gallery), "--format", "json", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=400)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["enrolled"] == {"bob": 2, "d\\xe9nise": 1}
    assert "1 file(s) under" in out.stderr and "not regular files" in out.stderr
    from verikit.index.gallery import Gallery

    with Gallery.open(gallery) as g:
        assert g.identity("d\\xe9nise").sources == (path_text(os.fsdecode(root + b"/d\xe9nise/\xff\xfe.pgm")),)
        assert sorted(g.identity("bob").sources)[1].endswith("/bob/\\xe9.pgm")
    table = subprocess.run([*cli, "verify", os.fsdecode(root + b"/d\xe9nise/\xff\xfe.pgm"), "--claim", "bob",
                            "--gallery", str(gallery), "--threshold", "0.5"], capture_output=True, env=env, timeout=400)
    assert table.returncode == 0, table.stderr
    assert b"/d\\xe9nise/\\xff\\xfe.pgm vs 'bob'" in table.stdout  # the user's own argument, printed safely


def test_prepare_enrollment_stores_text_names(tiny_model, orl):
    from verikit.pipeline.operations import prepare_enrollment

    name = os.fsdecode(b"d\xe9nise")  # e.g. a command-line argument on a Latin-1 system
    prepared = prepare_enrollment(tiny_model, {name: [orl / "s1" / "1.pgm"]})
    assert list(prepared.templates) == ["d\\xe9nise"]


# -- deep grey files -------------------------------------------------------------------------------


def _pgm(path: Path, pixels: np.ndarray, maxval: int, *, little_endian: bool = False, plain: bool = False) -> Path:
    h, w = pixels.shape
    if plain:
        path.write_bytes(f"P2\n# a comment\n{w} {h}\n{maxval}\n".encode()
                         + "\n".join(" ".join(str(int(v)) for v in row) for row in pixels).encode() + b"\n")
        return path
    dtype = (("<" if little_endian else ">") + "u2") if maxval > 255 else np.uint8
    path.write_bytes(f"P5\n{w} {h}\n{maxval}\n".encode() + pixels.astype(dtype).tobytes())
    return path


@pytest.mark.parametrize("bits", [10, 12, 16])
def test_deep_pgm_is_the_same_face_as_at_8_bits(tmp_path, orl, tiny_model, bits):
    from verikit.models.inference import embed_images

    face = _face(orl)
    maxval = (1 << bits) - 1
    deep = np.rint(face.astype(np.float64) * maxval / 255)
    files = [_pgm(tmp_path / f"{bits}.pgm", deep, maxval), _pgm(tmp_path / f"{bits}p.pgm", deep, maxval, plain=True)]
    eight = orl / "s1" / "1.pgm"
    for f in files:
        assert np.abs(np.asarray(load_image(f)).astype(int) - np.asarray(load_image(eight)).astype(int)).max() <= 1
        assert abs(np.asarray(load_image(f)).mean() - face.mean()) < 0.5  # not "almost white"
    e = embed_images(tiny_model, [eight, *files])
    assert min(_cos(e[0], x) for x in e[1:]) >= 0.9999


@pytest.mark.parametrize("bits", [10, 12])
def test_deep_pgm_written_little_endian_is_refused(tmp_path, orl, bits):
    """Samples above maxval made Pillow's decoder return an almost white face (mean 239 for 95)."""
    maxval = (1 << bits) - 1
    p = _pgm(tmp_path / "le.pgm", np.rint(_face(orl).astype(np.float64) * maxval / 255), maxval, little_endian=True)
    with pytest.raises(ImageError, match=rf"le.pgm': sample value \d+ exceeds the header's "
                                         rf"maxval {maxval}"):
        load_image(p)


def test_deep_pgm_truncated_or_lying_is_refused(tmp_path, orl):
    face = np.rint(_face(orl).astype(np.float64) * 1023 / 255)
    data = _pgm(tmp_path / "ok.pgm", face, 1023).read_bytes()
    (tmp_path / "cut.pgm").write_bytes(data[:-10])
    with pytest.raises(ImageError, match="cut.pgm': file is truncated"):
        load_image(tmp_path / "cut.pgm")
    (tmp_path / "zero.pgm").write_bytes(b"P5\n92 112\n0\n" + b"\0" * 100)
    with pytest.raises(ImageError, match="maxval 0 is outside 1..65535"):
        load_image(tmp_path / "zero.pgm")
    (tmp_path / "big.pgm").write_bytes(b"P5\n99999 99999\n1023\n")
    with pytest.raises(ImageError, match="decompression bomb guard"):
        load_image(tmp_path / "big.pgm")


def test_low_maxval_and_deep_colour_ppm_scale_by_maxval(tmp_path):
    grey = np.array([[0, 50, 100]])
    assert np.asarray(load_image(_pgm(tmp_path / "low.pgm", grey, 100)))[0, :, 0].tolist() == [0, 128, 255]
    rgb = np.array([[[1000, 0, 500]]], ">u2")
    (tmp_path / "c.ppm").write_bytes(b"P6\n1 1\n1000\n" + rgb.tobytes())
    assert np.asarray(load_image(tmp_path / "c.ppm"))[0, 0].tolist() == [255, 0, 128]


def test_16_bit_png_is_the_same_face_as_at_8_bits(tmp_path, orl, tiny_model):
    from verikit.models.inference import embed_images

    face = _face(orl)
    noise = np.random.default_rng(0).integers(0, 257, face.shape)
    Image.fromarray((face.astype(np.uint16) * 257 + noise).clip(0, 65535).astype(np.uint16)).save(tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").mode == "I;16"
    deep = np.asarray(load_image(tmp_path / "f.png")).astype(int)
    assert np.abs(deep - np.asarray(load_image(orl / "s1" / "1.pgm")).astype(int)).max() <= 1
    e = embed_images(tiny_model, [orl / "s1" / "1.pgm", tmp_path / "f.png", Image.open(tmp_path / "f.png")])
    assert min(_cos(e[0], e[1]), _cos(e[0], e[2])) >= 0.9999


def test_deep_grey_with_no_nominal_range_is_refused_not_stretched(tmp_path):
    Image.fromarray(np.array([[-3.0, 7.5]], np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"f.tif': mode F values span \[-3, 7.5\]: no nominal range"):
        load_image(tmp_path / "f.tif")
    Image.fromarray(np.array([[0.0, np.nan]], np.float32), "F").save(tmp_path / "n.tif")
    with pytest.raises(ImageError, match="NaN"):
        load_image(tmp_path / "n.tif")
