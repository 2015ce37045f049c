"""Data-parallel training computes what one process computes on the global batch.

Two gloo processes on CPU (``torchrun --standalone --nproc_per_node 2``) each take half of every
global batch of 8; one process takes the whole batch. For the two to be the same computation:

- the batch-hard miner and the triplet loss must see the global batch (the loop gathers it with
  pytorch-metric-learning's distributed wrappers): with half a batch each process would mine
  among 2 identities instead of 4 and pick other triplets;
- nothing may depend on per-process batch statistics: torch has no SyncBatchNorm on CPU, so
  batch-norm runs on its running statistics here (``--freeze-batchnorm``);
- no augmentation (each process draws its own) and SGD (Adam's normalisation would amplify
  float rounding in near-zero gradients).

The weights after 2 epochs x 3 steps must then agree to float rounding, while having moved far
from their starting point. With a proxy loss (ProxyAnchor: one learned proxy per identity, in the
loss module, outside the DDP-wrapped model; its value is not a mean over samples, so averaging
two half-batch losses would be a different loss) the learned proxies must agree too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import pattern_people

pytestmark = pytest.mark.slow

ARGS = ["--backbone", "timm:test_resnet", "--embedding-size", "16", "--image-size", "32", "--epochs", "2",
        "--batch-size", "8", "--m-per-class", "2", "--miner", "batch_hard",
        "--optimizer", "sgd", "--lr", "0.05", "--warmup-epochs", "0", "--augment", "none",
        "--freeze-batchnorm", "--val-fraction", "0", "--device", "cpu", "--seed", "3", "--quiet"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:{r.stdout}\nstderr:{r.stderr[-3000:]}"
    return r


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(model_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def six_people(tmp_path_factory) -> Path:
    return pattern_people(tmp_path_factory.mktemp("six"), 6, 4, size=32)


def _loss_state(out_dir: Path) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """The loss module's parameters and their SGD momentum buffers (the optimizer's third group)."""
    states = torch.load(out_dir / "checkpoint" / "state.pt", weights_only=True)
    opt = states["optimizer"]
    groups = opt["param_groups"]
    momenta = [opt["state"][i]["momentum_buffer"] for i in groups[2]["params"]] if len(groups) > 2 else []
    return states["loss"], momenta


@pytest.mark.parametrize("loss", ["triplet", "proxy_anchor"])
def test_two_gloo_processes_train_the_same_weights_as_one(six_people, tmp_path, loss):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*ARGS, "--loss", loss]
    _run([sys.executable, "-m", "verikit.cli.main", "train", str(six_people), "--out", str(one), *args])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "verikit.cli.main", "train", str(six_people), "--out", str(two), *args])

    single, parallel = _weights(one), _weights(two)
    assert single.keys() == parallel.keys()
    for k in single:
        torch.testing.assert_close(parallel[k], single[k], rtol=1e-4, atol=1e-5, msg=k)
    (proxies_one, momenta_one), (proxies_two, momenta_two) = _loss_state(one), _loss_state(two)
    assert proxies_one.keys() == proxies_two.keys() and (loss != "proxy_anchor" or "proxies" in proxies_one)
    for k in proxies_one:
        torch.testing.assert_close(proxies_two[k], proxies_one[k], rtol=1e-4, atol=1e-5, msg=f"loss {k}")
    assert len(momenta_one) == len(momenta_two) == len(proxies_one)
    for m1, m2 in zip(momenta_one, momenta_two):  # the proxies' accumulated gradients agree too ...
        torch.testing.assert_close(m2, m1, rtol=1e-4, atol=1e-5)
        assert m1.abs().max() > 1e-3  # ... and are not zero: the proxies did train

    from verikit.models.embedder import Embedder
    from verikit.train.loop import seed_everything

    seed_everything(3)  # the loop seeds, then builds: these are the starting weights of both runs
    start = Embedder.build("timm:test_resnet", embedding_size=16,
                           input_spec=Embedder.load(one).input_spec).state_dict()
    moved = max((single[k] - start[k]).abs().max().item() for k in single if single[k].is_floating_point())
    assert moved > 1e-2, "training barely moved the weights: the comparison above would prove nothing"
    # Only rank 0 writes: one CSV with one row per epoch.
    assert len((two / "train_log.csv").read_text().strip().splitlines()) == 1 + 2
