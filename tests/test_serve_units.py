"""verikit serve's parts on their own: micro-batching, API keys, where the server may listen."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

pytest.importorskip("fastapi")

from verikit.server.batching import MicroBatcher  # noqa: E402
from verikit.server.keys import KeysError, KeyStore, add_key, load_keys, revoke_key  # noqa: E402


class _Forward:
    """A forward pass that records its batch sizes; it can be held until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, images):
        self.started.set()
        self.release.wait()
        self.batches.append(len(images))
        return np.array([[float(i)] for i in images], np.float32)


def _run(coro):
    return asyncio.run(coro)


def test_a_full_batch_runs_at_once_and_every_request_gets_its_own_rows():
    forward = _Forward()

    async def main():
        b = MicroBatcher(forward, max_batch=6, max_wait=60.0)  # a full batch must not wait for the minute
        await b.start()
        out = await asyncio.gather(b.embed([1, 2]), b.embed([3]), b.embed([4, 5, 6]))
        await b.stop()
        return out
    out = _run(main())
    assert forward.batches == [6]
    assert [o[:, 0].tolist() for o in out] == [[1, 2], [3], [4, 5, 6]]


def test_requests_queue_behind_a_running_forward_and_share_the_next():
    forward = _Forward()
    forward.release.clear()

    async def main():
        b = MicroBatcher(forward, max_batch=8, max_wait=0.0)
        await b.start()
        first = asyncio.create_task(b.embed([0]))
        await asyncio.to_thread(forward.started.wait)  # the first forward (one image) is running, held
        rest = [asyncio.create_task(b.embed([i])) for i in range(1, 5)]
        while b._queue.qsize() < 4:  # all four queued behind it
            await asyncio.sleep(0)
        forward.release.set()
        out = await asyncio.gather(first, *rest)
        await b.stop()
        return out
    out = _run(main())
    assert forward.batches == [1, 4]
    assert [o[0, 0] for o in out] == [0, 1, 2, 3, 4]


def test_batch_size_one_and_oversized_requests_and_errors():
    forward = _Forward()

    async def main():
        b = MicroBatcher(forward, max_batch=1, max_wait=60.0)
        await b.start()
        await asyncio.gather(*(b.embed([i]) for i in range(3)), b.embed([7, 8, 9]))
        await b.stop()
    _run(main())
    assert sorted(forward.batches) == [1, 1, 1, 3]  # batching off; a larger request still runs, alone

    async def failing():
        def boom(images):
            raise RuntimeError("forward failed")
        b = MicroBatcher(boom, max_batch=4, max_wait=0.0)
        await b.start()
        with pytest.raises(RuntimeError, match="forward failed"):
            await b.embed([1])
        assert (await asyncio.gather(b.embed([1]), return_exceptions=True))[0].args == ("forward failed",)
        await b.stop()
    _run(failing())


def test_keys_are_stored_as_salted_hashes_checked_and_revoked(tmp_path):
    path = tmp_path / "keys.json"
    key, record = add_key(path, "kiosk", ["write", "read"])
    assert key.startswith(f"vk_{record.id}_") and record.scopes == ("read", "write")
    text = path.read_text()
    assert key not in text and key.split("_", 2)[2] not in text  # only the hash is stored
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = KeyStore(path)
    assert store.check(key).name == "kiosk"
    for wrong in ["", "vk_", key[:-1] + ("A" if key[-1] != "A" else "B"), key.replace(record.id, "0" * 12),
                  "Bearer " + key, key + "x"]:
        assert store.check(wrong) is None
    other, _ = add_key(path, "ops", ["admin"])
    assert store.check(other).scopes == ("admin",)  # the file changed: re-read
    revoke_key(path, "kiosk")
    assert store.check(key) is None and store.check(other) is not None
    with pytest.raises(KeysError, match="already has a key named 'ops'"):
        add_key(path, "ops", ["read"])
    with pytest.raises(KeysError, match="choose from read, write, admin"):
        add_key(path, "x", ["root"])


@pytest.mark.parametrize("content", ["", "[]", '{"version": 2, "keys": []}', '{"keys": [{"id": "zz"}]}', "{"])
def test_a_bad_keys_file_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(KeysError, match=f"keys file '{path}'") as err:
        load_keys(path)
    assert "\n" not in str(err.value)
    assert KeyStore(path).check("vk_0123456789ab_" + "a" * 43) is None  # refuses everything, never crashes


def _serve(*args, env=None):
    return subprocess.run([sys.executable, "-m", "verikit.cli.main", "serve", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_without_keys_the_server_refuses_to_listen_beyond_localhost(tmp_path):
    for host in ["0.0.0.0", "::", "192.0.2.1", "example.com"]:
        r = _serve("--host", host, "-g", str(tmp_path / "g"))
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: refusing to listen on {host} without API keys")


def test_keys_commands_show_the_key_once_and_list_without_it(tmp_path):
    keys = tmp_path / "keys.json"
    r = _serve("keys", "add", "ops", "--scope", "admin", "--keys", str(keys), "-f", "json")
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    r = _serve("keys", "list", "--keys", str(keys), "-f", "json")
    assert json.loads(r.stdout) == [{"name": "ops", "id": made["id"], "scopes": ["admin"],
                                     "created_at": json.loads(r.stdout)[0]["created_at"]}]
    assert made["key"] not in r.stdout + r.stderr
    r = _serve("keys", "revoke", "nobody", "--keys", str(keys))
    assert r.returncode == 1 and r.stderr.startswith("error: keys file") and "no key named 'nobody'" in r.stderr
    assert _serve("keys", "revoke", "ops", "--keys", str(keys)).returncode == 0
    assert load_keys(keys).keys == []
