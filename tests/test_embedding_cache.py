"""The embedding cache is written chunk by chunk, atomically, so an interrupted benchmark resumes.

The resume test kills a real benchmark process: a child runs ``run_pairs`` on ORL with a cache and
chunks of 16 files, through an embedder that stops (blocks on its stdin) when asked for its
second chunk and says so on stdout. The test waits for that line -- the first chunk's part file
is on disk by then -- kills the child with SIGKILL, and reruns the benchmark from the command
line: it must read those 16 embeddings from the cache and give the same figures as a run
without any cache.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from verikit.errors import DataError
from verikit.evaluate.embedding_cache import EmbeddingCache

REPO = Path(__file__).resolve().parents[1]


def _files(tmp_path: Path, n: int) -> list[Path]:
    out = []
    for k in range(n):
        p = tmp_path / "img" / f"{k}.bin"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes([k]) * 10)
        out.append(p)
    return out


def test_parts_are_written_per_flush_and_folded_into_the_main_file(tmp_path):
    files = _files(tmp_path, 6)
    cache = EmbeddingCache(tmp_path / "c", "f" * 64)
    cache.add(files[:2], np.eye(2, 3, dtype=np.float32))
    first = cache.flush()
    cache.add_no_face(files[2:3])
    cache.add(files[3:4], np.ones((1, 3), np.float32), fallback="whole")
    second = cache.flush()
    assert cache.flush() is None  # nothing new
    assert first.is_file() and second.is_file() and not cache.path.exists()
    assert not list((tmp_path / "c").glob(".*.tmp.npz"))  # atomic: no temporary file left behind
    # a new process sees both parts
    again = EmbeddingCache(tmp_path / "c", "f" * 64)
    look = again.lookup(files, fallback=None)
    assert sorted(look.found) == [0, 1] and look.no_face == [2, 3] and look.missing == [4, 5]
    look = again.lookup(files, fallback="whole")
    assert sorted(look.found) == [0, 1, 3] and look.fallback == [3] and look.missing == [2, 4, 5]
    assert again.lookup(files, fallback="center").missing == [2, 3, 4, 5]
    # save: one main file, no parts
    again.save()
    assert again.path.is_file() and not list((tmp_path / "c").glob("*.part-*.npz"))
    final = EmbeddingCache(tmp_path / "c", "f" * 64).lookup(files, fallback="whole")
    assert sorted(final.found) == [0, 1, 3] and np.array_equal(final.found[1], np.eye(2, 3)[1])
    # an edited file is embedded again
    files[0].write_bytes(b"changed")
    assert 0 in EmbeddingCache(tmp_path / "c", "f" * 64).lookup(files).missing


def test_two_runs_sharing_a_cache_keep_each_others_entries(tmp_path):
    files = _files(tmp_path, 4)
    a, b = EmbeddingCache(tmp_path / "c", "f" * 64), EmbeddingCache(tmp_path / "c", "f" * 64)
    a.add(files[:2], np.ones((2, 3), np.float32))
    b.add(files[2:], np.zeros((2, 3), np.float32))
    b.flush()
    a.save()  # folds b's part in too
    b.save()
    assert sorted(EmbeddingCache(tmp_path / "c", "f" * 64).lookup(files).found) == [0, 1, 2, 3]


def test_a_part_of_another_model_is_refused(tmp_path):
    files = _files(tmp_path, 1)
    other = EmbeddingCache(tmp_path / "c", "e" * 64)
    other.add(files, np.ones((1, 3), np.float32))
    part = other.flush()
    part.rename(tmp_path / "c" / part.name.replace("eeeeeeeeeeeeeeee", "ffffffffffffffff"))
    with pytest.raises(DataError, match="belongs to model eeeeeeeeeeee"):
        EmbeddingCache(tmp_path / "c", "f" * 64)


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from verikit.evaluate.benchmark import run_pairs
    from verikit.evaluate.protocols import folder_pairs
    from verikit.models.embedder import Embedder
    from verikit.pipeline.files import FileEmbedder

    class StopsAtTheSecondChunk:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0
            self.fingerprint, self.cache_key = inner.fingerprint, inner.cache_key
            self.pipeline_record, self.measure = inner.pipeline_record, inner.measure

        def embed(self, paths, progress=None):
            self.calls += 1
            if self.calls == 2:  # the first chunk's part is on disk: say so, then wait to be killed
                print("second chunk", flush=True)
                sys.stdin.read()
            return self.inner.embed(paths, progress)

    model, data, cache = sys.argv[1:4]
    embedder = StopsAtTheSecondChunk(FileEmbedder(Embedder.load(model, device="cpu")))
    run_pairs(embedder, folder_pairs(data), cache_dir=cache, n_boot=0, chunk_size=16)
    print("finished", flush=True)
""")


def test_a_killed_benchmark_resumes_from_the_chunks_it_cached(tmp_path, orl, tiny_model_dir):
    data = tmp_path / "people"
    for s in range(1, 6):
        shutil.copytree(orl / f"s{s}", data / f"s{s}")
    cache = tmp_path / "cache"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_model_dir), str(data), str(cache)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert child.stdout.readline().strip() == "second chunk"  # the signal: waits for it, no sleep
        parts = list(cache.glob("*.part-*.npz"))
        assert len(parts) == 1 and [p for p in cache.glob("embeddings-*.npz") if ".part-" not in p.name] == []
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdin.close()
        child.stdout.close()
    from verikit.cli.main import app

    runner = CliRunner()
    args = ["benchmark", "folder", str(data), "-m", str(tiny_model_dir), "--bootstrap", "0", "-f", "json", "-q"]
    r = runner.invoke(app, args + ["--cache", str(cache)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    resumed = json.loads(r.stdout)
    assert resumed["embedding"]["from_cache"] == 16 and resumed["embedding"]["files"] == 50
    fresh = json.loads(runner.invoke(app, args, catch_exceptions=False).stdout)
    assert resumed["verification"]["tar_at_far"] == fresh["verification"]["tar_at_far"]
    assert resumed["verification"]["eer"] == fresh["verification"]["eer"]
    # the finished run folded the parts into one file; a third run embeds nothing
    assert not list(cache.glob("*.part-*.npz"))
    again = json.loads(runner.invoke(app, args + ["--cache", str(cache)], catch_exceptions=False).stdout)
    assert again["embedding"]["from_cache"] == 50
