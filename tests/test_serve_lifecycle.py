"""verikit serve stopping: SIGTERM lets an enroll in progress finish; SIGKILL in the middle of one
leaves the old or the new gallery. The server is stopped on the line it prints at a named point
of the enroll (VERIKIT_TEST_HOOK), never after a delay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.serve_helpers import ServerProcess, make_gallery  # noqa: E402


@pytest.fixture()
def gallery(tmp_path, tiny_model_dir, synthetic_faces):
    return make_gallery(tiny_model_dir, synthetic_faces, tmp_path / "g")


def _enroll_in_background(url, probe, name):
    out = {}

    def go():
        with httpx.Client(base_url=url, timeout=600) as c:
            try:
                out["response"] = c.post("/v1/enroll", files=[("images", (probe.name, probe.read_bytes()))],
                                         data={"name": name})
            except httpx.HTTPError as exc:  # the SIGKILL cases: the connection just drops
                out["error"] = exc
    t = threading.Thread(target=go)
    t.start()
    return t, out


def _gallery_state(gallery):
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "info", "-g", str(gallery), "-f", "json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    names = subprocess.run([sys.executable, "-m", "verikit.cli.main", "gallery", "list", "-g", str(gallery), "-f",
                            "json"], capture_output=True, text=True, timeout=600)
    return json.loads(r.stdout), {p["name"] for p in json.loads(names.stdout)}


def test_sigterm_finishes_the_enroll_in_progress_then_exits_0(gallery, synthetic_faces, tmp_path):
    release = tmp_path / "release"
    env = {"VERIKIT_TEST_HOOK": "enroll_before_commit", "VERIKIT_TEST_HOOK_RELEASE": str(release)}
    with ServerProcess("-g", str(gallery), "--device", "cpu", env=env) as s:
        thread, out = _enroll_in_background(s.url, synthetic_faces / "id1" / "0.png", "late-comer")
        s.wait_for("VERIKIT-HOOK enroll_before_commit")  # the request is inside the enroll, before its commit
        s.proc.send_signal(signal.SIGTERM)
        s.wait_for("Shutting down")                      # the server has begun to stop, with the request in flight
        release.touch()
        thread.join(600)
        assert s.proc.wait(600) == 0
    assert out["response"].status_code == 200, out
    assert out["response"].json()["enrolled"] == {"late-comer": 1}
    info, names = _gallery_state(gallery)
    assert "late-comer" in names and info["templates"] == info["indexed_vectors"] == 17


@pytest.mark.parametrize("point, kept", [("enroll_before_commit", False), ("enroll_after_commit", True)])
def test_sigkill_during_an_enroll_leaves_the_old_or_the_new_gallery(gallery, synthetic_faces, point, kept):
    with ServerProcess("-g", str(gallery), "--device", "cpu", env={"VERIKIT_TEST_HOOK": point}) as s:
        thread, out = _enroll_in_background(s.url, synthetic_faces / "id2" / "0.png", "interrupted")
        s.wait_for(f"VERIKIT-HOOK {point}")
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(600)
        thread.join(600)
    assert "error" in out  # the client saw no answer
    info, names = _gallery_state(gallery)
    # Before the commit: the old gallery; after it (index not yet saved): the new one, index caught up.
    assert ("interrupted" in names) is kept
    assert info["templates"] == info["indexed_vectors"] == 16 + kept
    assert info["identities"] == 4 + kept
    assert not [p for p in os.listdir(gallery) if p.endswith(".tmp")]
