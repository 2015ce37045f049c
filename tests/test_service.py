"""The application layer (verikit.service): the checks every entry point gets, and a long-lived
Service that follows other processes' changes to its gallery."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import verikit
from verikit.errors import DataError, FingerprintMismatchError, VerikitWarning
from verikit.service import PipelineRequest, Service

from tests.serve_helpers import make_gallery


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, tiny_model_dir, synthetic_faces):
    return make_gallery(tiny_model_dir, synthetic_faces, tmp_path_factory.mktemp("svc") / "g")


def _other_model(tmp_path):
    import torch

    from verikit.models.embedder import Embedder
    from verikit.structures import InputSpec

    torch.manual_seed(1)
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval()
    model.save(tmp_path / "other")
    return Embedder.load(tmp_path / "other")


def _calibration(model, **data):
    from verikit.calibrate.threshold import calibrate

    rng = np.random.default_rng(0)
    return calibrate(rng.uniform(0.6, 1, 50), rng.uniform(-1, 0.7, 500), 0.05, model.fingerprint, data)


def test_python_api_refuses_another_models_gallery_and_calibration(tmp_path, gallery, tiny_model, synthetic_faces):
    probe = synthetic_faces / "id1" / "0.png"
    other = _other_model(tmp_path)
    with verikit.Gallery.open(gallery) as g:  # opened without a fingerprint: the operations must check it
        with pytest.raises(FingerprintMismatchError, match="was enrolled with model"):
            verikit.verify(other, g, probe, "id1", threshold=0.5)
        with pytest.raises(FingerprintMismatchError, match="was enrolled with model"):
            verikit.search(other, g, [probe], threshold=0.5)
        n = g.n_templates
        with pytest.raises(FingerprintMismatchError):
            verikit.enroll(other, g, {"intruder": [probe]})
        assert g.n_templates == n and "intruder" not in g
        # A calibration made for another model is in other score units: refused, never used.
        with pytest.raises(FingerprintMismatchError, match="calibration was made for model"):
            verikit.verify(tiny_model, g, probe, "id1", calibration=_calibration(other))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.5", True])
def test_a_threshold_that_is_not_a_finite_number_is_refused(gallery, tiny_model, synthetic_faces, bad):
    with verikit.Gallery.open(gallery) as g:
        with pytest.raises(DataError, match="threshold must be a (finite )?number"):
            verikit.verify(tiny_model, g, synthetic_faces / "id1" / "0.png", "id1", threshold=bad)
        with pytest.raises(DataError, match="threshold must be a (finite )?number"):
            verikit.search(tiny_model, g, [synthetic_faces / "id1" / "0.png"], threshold=bad)
    with pytest.raises(DataError, match="threshold must be a (finite )?number"):
        Service.open(gallery, threshold=bad)


def test_python_api_warns_like_the_cli(gallery, tiny_model, synthetic_faces):
    probe = synthetic_faces / "id2" / "1.png"
    # Calibrated through a detector pipeline, but this gallery embeds whole images: warned, still answered.
    cal = _calibration(tiny_model, pipeline={"detector": "haar", "options": {}, "crop_margin": 0.2})
    with verikit.Gallery.open(gallery) as g:
        with pytest.warns(VerikitWarning, match="calibrated on detector haar.*probes go through whole images"):
            decision = verikit.verify(tiny_model, g, probe, "id2", calibration=cal)
        assert decision.threshold == pytest.approx(cal.threshold)
        with pytest.warns(VerikitWarning, match="no threshold"):
            results, _ = verikit.search(tiny_model, g, [probe])
        assert results[0].threshold is None
        with warnings.catch_warnings():
            warnings.simplefilter("error", VerikitWarning)  # a matching calibration warns about nothing
            verikit.verify(tiny_model, g, probe, "id2", calibration=_calibration(tiny_model, pipeline=None))


def test_service_loads_the_gallerys_model_and_answers_as_the_operations_do(gallery, tiny_model, synthetic_faces):
    probe = synthetic_faces / "id3" / "2.png"
    with Service.open(gallery, threshold=0.5, device="cpu") as svc:  # no model given: the one the gallery records
        assert svc.model.fingerprint == tiny_model.fingerprint
        decision = svc.verify(probe, "id3")
        results, failures = svc.search([probe], top_k=2)
        info = svc.info()
    with verikit.Gallery.open(gallery) as g:
        assert decision == verikit.verify(tiny_model, g, probe, "id3", threshold=0.5)
        assert results == verikit.search(tiny_model, g, [probe], top_k=2, threshold=0.5)[0]
    assert not failures and results[0].identity == "id3" and info["templates"] == 16 and info["pipeline"] is None


def test_pipeline_options_merge_with_the_recorded_ones(gallery):
    from verikit.service.pipelines import PipelineOptionsError, merge_pipeline
    from verikit.pipeline.settings import PipelineSettings

    recorded = PipelineSettings("haar", {"min_neighbors": 3}, 0.3)
    assert merge_pipeline(PipelineRequest(), recorded) is None
    assert merge_pipeline(PipelineRequest(crop_margin=0.5), recorded) == PipelineSettings("haar", {"min_neighbors": 3}, 0.5)
    with pytest.raises(PipelineOptionsError, match="need --detector"):
        merge_pipeline(PipelineRequest(crop_margin=0.5), None)
    # A gallery enrolled on whole images refuses a probe pipeline (the gallery's binding, through the service).
    with pytest.raises(verikit.GalleryError, match="enrolled without a detector"):
        Service.open(gallery, pipeline=PipelineRequest(segmenter="lefthalf"), device="cpu")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "verikit.cli.main", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_long_lived_service_sees_other_processes_enroll_and_remove(tmp_path, tiny_model_dir, synthetic_faces):
    g = make_gallery(tiny_model_dir, synthetic_faces, tmp_path / "g")
    probe = synthetic_faces / "id0" / "0.png"
    with Service.open(g, threshold=0.5, device="cpu") as svc:
        assert svc.search([probe], top_k=1)[0][0].identity == "id0"
        # Another process enrolls a new identity from the same photo; it finishes (our signal) before we look.
        r = _cli("enroll", "twin", str(probe), "-g", str(g), "-q", "--device", "cpu")
        assert r.returncode == 0, r.stderr
        hits = svc.search([probe], top_k=2)[0][0].hits
        assert {h.identity for h in hits} == {"id0", "twin"} and min(h.score for h in hits) > 0.9999
        # ... and removes the original: our next search must neither fail nor name it.
        r = _cli("gallery", "remove", "id0", "-g", str(g), "-y")
        assert r.returncode == 0, r.stderr
        assert svc.search([probe], top_k=3)[0][0].hits[0].identity == "twin"
        assert "id0" not in {p.name for p in svc.identities()}
        # Our own enroll now lands in an index that holds the other process's change too.
        svc.enroll({"late": [str(synthetic_faces / "id1" / "3.png")]})
    r = _cli("gallery", "info", "-g", str(g), "-f", "json")
    info = json.loads(r.stdout)
    assert info["templates"] == info["indexed_vectors"] == 16 - 4 + 1 + 1
