"""verikit serve as a real process on 127.0.0.1, with an HTTP client against it: the CLI's JSON,
API keys, malformed requests, limits, metrics, several servers and CLI writers on one gallery, and
a bounded load test."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.serve_helpers import ServerProcess, make_gallery  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _png(size=(48, 48), seed=0) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype="uint8")).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir, synthetic_faces):
    from verikit.server.keys import add_key

    root = tmp_path_factory.mktemp("serve")
    gallery = make_gallery(tiny_model_dir, synthetic_faces, root / "g")
    keys = root / "keys.json"
    made = {scope: add_key(keys, scope, [scope])[0] for scope in ("read", "write", "admin")}
    return root, gallery, keys, made


@pytest.fixture(scope="module")
def server(setup):
    root, gallery, keys, _ = setup
    with ServerProcess("-g", str(gallery), "--keys", str(keys), "--threshold", "0.5", "--device", "cpu",
                       "--max-images", "4", "--max-pixels", "20000", "--max-request-mb", "1") as s:
        yield s


def _auth(key):
    return {"Authorization": f"Bearer {key}"}


def _one_line_error(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in r.text, r.text
    return body["error"]


def _files(field, *paths):
    return [(field, (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_verify_and_search_answer_with_the_clis_json(server, setup, synthetic_faces, tiny_model_dir):
    _, gallery, _, key = setup
    probe = synthetic_faces / "id2" / "3.png"
    with httpx.Client(base_url=server.url, headers=_auth(key["read"]), timeout=120) as c:
        got = c.post("/v1/verify", files=_files("image", probe), data={"claim": "id2"})
        assert got.status_code == 200, got.text
        found = c.post("/v1/search", files=_files("images", probe, synthetic_faces / "id0" / "1.png"),
                       data={"top_k": "2"})
        assert found.status_code == 200, found.text
    cli = subprocess.run([sys.executable, "-m", "verikit.cli.main", "verify", str(probe), "--claim", "id2", "-g",
                          str(gallery), "-t", "0.5", "-f", "json", "--device", "cpu"], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    expected = json.loads(cli.stdout)
    assert got.json() == {**expected, "probe": "3.png"}  # the CLI names the probe by its path, the server by its file name
    results = found.json()
    assert [r["probe"] for r in results] == ["3.png", "1.png"] and [r["identity"] for r in results] == ["id2", "id0"]
    assert all(r["threshold"] == 0.5 and len(r["hits"]) == 2 for r in results)


def test_api_keys_and_scopes(server, setup, synthetic_faces):
    root, _, keys, key = setup
    probe = _files("image", synthetic_faces / "id1" / "0.png")
    with httpx.Client(base_url=server.url, timeout=120) as c:
        assert "no API key" not in c.get("/healthz").text and c.get("/healthz").status_code == 200  # probes: no key
        r = c.post("/v1/verify", files=probe, data={"claim": "id1"})
        assert "API key is required" in _one_line_error(r, 401) and r.headers["www-authenticate"] == "Bearer"
        for bad in [key["read"][:-2], "vk_" + "0" * 12 + "_" + "a" * 43, "not-a-key", key["read"] + "x"]:
            _one_line_error(c.post("/v1/verify", files=probe, data={"claim": "id1"}, headers=_auth(bad)), 401)
        r = c.get("/v1/identities", headers={"Authorization": f"Basic {key['admin']}"})
        _one_line_error(r, 401)
        # read: verify, search, list; not enroll, not curation, not metrics
        assert c.post("/v1/verify", files=probe, data={"claim": "id1"}, headers=_auth(key["read"])).status_code == 200
        assert c.get("/v1/identities", headers=_auth(key["read"])).status_code == 200
        assert "lacks the 'write' scope" in _one_line_error(
            c.post("/v1/enroll", files=_files("images", synthetic_faces / "id1" / "0.png"), data={"name": "x"},
                   headers=_auth(key["read"])), 403)
        _one_line_error(c.delete("/v1/identities/id1", headers=_auth(key["read"])), 403)
        _one_line_error(c.get("/metrics", headers=_auth(key["read"])), 403)
        # write: curation, not verification
        _one_line_error(c.post("/v1/verify", files=probe, data={"claim": "id1"}, headers=_auth(key["write"])), 403)
        assert c.get("/metrics", headers=_auth(key["admin"])).status_code == 200
        # A key revoked while the server runs is refused from its next request on.
        from verikit.server.keys import add_key, revoke_key
        temp, _ = add_key(keys, "temp", ["read"])
        assert c.get("/v1/gallery", headers=_auth(temp)).status_code == 200
        revoke_key(keys, "temp")
        _one_line_error(c.get("/v1/gallery", headers=_auth(temp)), 401)


def test_malformed_requests_get_one_line_4xx_and_change_nothing(server, setup, synthetic_faces, tmp_path):
    _, _, _, key = setup
    good = (synthetic_faces / "id1" / "0.png").read_bytes()
    truncated = good[: len(good) // 2]
    with httpx.Client(base_url=server.url, headers=_auth(key["admin"]), timeout=120) as c:
        before = c.get("/v1/gallery").json()

        def verify(files, data=None, **kw):
            return c.post("/v1/verify", files=files, data={"claim": "id1"} if data is None else data, **kw)
        assert "not an image" in _one_line_error(verify({"image": ("notes.txt", b"hello, not an image")}), 422)
        assert "truncated" in _one_line_error(verify({"image": ("half.png", truncated)}), 422)
        assert "exceeds the limit of 20000" in _one_line_error(verify({"image": ("big.png", _png((200, 200)))}), 422)
        assert "empty" in _one_line_error(verify({"image": ("empty.png", b"")}), 422)
        assert "claim" in _one_line_error(verify({"image": ("a.png", good)}, data={}), 422)
        assert "is not enrolled" in _one_line_error(verify({"image": ("a.png", good)}, data={"claim": "nobody"}), 404)
        assert "image" in _one_line_error(c.post("/v1/verify", json={"claim": "id1", "image": "a.png"}), 422)
        r = c.post("/v1/verify", content=b"--xyz\r\nnot multipart at all",
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert r.status_code in (400, 422) and list(r.json()) == ["error"]
        assert "limit is 4" in _one_line_error(
            c.post("/v1/enroll", files=[("images", (f"{i}.png", good)) for i in range(5)], data={"name": "many"}), 413)
        assert "exceeds the limit" in _one_line_error(
            c.post("/v1/enroll", files=[("images", ("a.png", good + b"\0" * 1_100_000))], data={"name": "huge"}), 413)
        assert "not valid JSON" in _one_line_error(c.post(
            "/v1/enroll", files=[("images", ("a.png", good))], data={"name": "m", "metadata": "{oops"}), 422)
        # One bad image among good ones: the whole enroll is refused, nothing stored.
        assert "not an image" in _one_line_error(c.post(
            "/v1/enroll", files=[("images", ("a.png", good)), ("images", ("b.png", b"junk"))],
            data={"name": "half"}), 422)
        assert "invalid identity name" in _one_line_error(
            c.post("/v1/enroll", files=[("images", ("a.png", good))], data={"name": " padded"}), 409)
        r = c.patch("/v1/identities/id1", content=b"{not json", headers={"Content-Type": "application/json"})
        _one_line_error(r, 422)
        _one_line_error(c.patch("/v1/identities/id1", json={"name": "id2"}), 409)  # taken
        _one_line_error(c.patch("/v1/identities/id1", json={"metadata": {"a": 1}}), 422)
        _one_line_error(c.delete("/v1/identities/nobody"), 404)
        _one_line_error(c.post("/v1/search", files=[("images", ("a.png", good))], data={"top_k": "0"}), 422)
        _one_line_error(c.post("/v1/search", files=[("images", ("a.png", good))], data={"top_k": "1000"}), 422)
        _one_line_error(c.get("/v1/nothing-here"), 404)
        _one_line_error(c.put("/v1/verify"), 405)
        assert c.get("/v1/gallery").json() == before
        metrics = c.get("/metrics").text
        assert 'verikit_requests_rejected_total{limit="request_bytes"}' in metrics


def test_openapi_readiness_and_metrics(server, setup):
    _, _, _, key = setup
    with httpx.Client(base_url=server.url, timeout=120) as c:
        schema = c.get("/openapi.json").json()
        assert {"/v1/verify", "/v1/search", "/v1/enroll", "/v1/identities", "/v1/gallery", "/metrics"} <= set(schema["paths"])
        assert c.get("/readyz").json() == {"status": "ready", "gallery": True, "warnings": []}
        text = c.get("/metrics", headers=_auth(key["admin"])).text
    assert "verikit_batch_images_bucket" in text and "verikit_gallery_identities" in text


def test_bounded_load_loses_nothing(server, setup, synthetic_faces):
    """A fixed number of concurrent requests (enroll, verify, search): no errors, every enrollment kept."""
    _, _, _, key = setup
    people = sorted(p for p in synthetic_faces.iterdir() if p.is_dir())
    images = {p.name: sorted(p.glob("*.png")) for p in people}
    jobs = [("enroll", f"load{i:03d}", images[people[i % 4].name][:2]) for i in range(40)]
    jobs += [("verify", people[i % 4].name, images[people[i % 4].name][i % 4:i % 4 + 1]) for i in range(60)]
    jobs += [("search", None, images[people[i % 4].name][:2]) for i in range(60)]

    def call(job):
        kind, name, paths = job
        with httpx.Client(base_url=server.url, headers=_auth(key["admin"]), timeout=300) as c:
            if kind == "enroll":
                return c.post("/v1/enroll", files=_files("images", *paths), data={"name": name})
            if kind == "verify":
                return c.post("/v1/verify", files=_files("image", *paths), data={"claim": name})
            return c.post("/v1/search", files=_files("images", *paths), data={"top_k": "3"})
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, jobs))
    assert [r.status_code for r in answers] == [200] * len(jobs), [r.text for r in answers if r.status_code != 200][:3]
    with httpx.Client(base_url=server.url, headers=_auth(key["admin"]), timeout=120) as c:
        listed = {p["name"]: p["templates"] for p in c.get("/v1/identities").json()}
        info = c.get("/v1/gallery").json()
        batches = [l for l in c.get("/metrics").text.splitlines() if l.startswith("verikit_batch_images_count")]
    assert all(listed.get(f"load{i:03d}") == 2 for i in range(40))
    assert info["templates"] == info["indexed_vectors"] == sum(listed.values())
    assert batches and float(batches[0].split()[-1]) > 0


def test_several_servers_and_cli_writers_on_one_gallery_stay_consistent(server, setup, synthetic_faces):
    """Server A, server B (its own process on the same gallery) and CLI enrolls, all writing; each
    server's next answer reflects every committed change."""
    _, gallery, _, key = setup
    probe = synthetic_faces / "id3" / "0.png"
    with ServerProcess("-g", str(gallery), "--threshold", "0.5", "--device", "cpu") as b, \
            httpx.Client(base_url=server.url, headers=_auth(key["admin"]), timeout=300) as a, \
            httpx.Client(base_url=b.url, timeout=300) as bc:
        cli = [subprocess.Popen([sys.executable, "-m", "verikit.cli.main", "enroll", f"cli{i}", str(probe), "-g",
                                 str(gallery), "-q", "--device", "cpu"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda job: job[0].post("/v1/enroll", files=_files("images", probe),
                                                       data={"name": job[1]}),
                               [(a, "via-a1"), (bc, "via-b1"), (a, "via-a2"), (bc, "via-b2")]))
        assert [r.status_code for r in rs] == [200] * 4, [r.text for r in rs]
        assert [p.wait(600) for p in cli] == [0, 0], [p.stderr.read() for p in cli]
        expected = {"via-a1", "via-a2", "via-b1", "via-b2", "cli0", "cli1", "id3"}
        for client in (a, bc):  # both servers' searches see every twin of the probe, whoever wrote it
            hits = client.post("/v1/search", files=_files("images", probe), data={"top_k": "100"}).json()[0]["hits"]
            assert expected <= {h["identity"] for h in hits if h["score"] > 0.9999}
        assert bc.delete("/v1/identities/via-a1").status_code == 200
        hits = a.post("/v1/search", files=_files("images", probe), data={"top_k": "100"}).json()[0]["hits"]
        assert "via-a1" not in {h["identity"] for h in hits}
        info = a.get("/v1/gallery").json()
        assert info["templates"] == info["indexed_vectors"]
        assert b.stop() == 0


def _curl_commands() -> list[str]:
    import re

    text = (REPO / "docs" / "serve.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("curl ")]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_docs_curl_examples_run(server, setup):
    """docs/serve.md's curl examples run as written (from the repository root) against this server."""
    _, _, _, key = setup
    commands = _curl_commands()
    assert len(commands) >= 10
    env = {**os.environ, "VERIKIT_URL": server.url, "VERIKIT_KEY": key["admin"]}
    for command in commands:
        r = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
        if "/metrics" in command:
            assert "verikit_requests_total" in r.stdout
        else:
            json.loads(r.stdout)  # every other answer is JSON
