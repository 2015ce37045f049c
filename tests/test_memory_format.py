"""Eager CPU inference in channels-last layout (verikit.models.memory_format).

Oracle: the same model run by plain PyTorch in the contiguous layout. Templates must agree to a
cosine of at least 0.9999 on real photos for every built-in backbone; the layout must change
nothing a user can see (weights, fingerprint, saved bytes, training afterwards); a network that
cannot run channels-last falls back to the contiguous layout with one warning.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from verikit.io import list_images
from verikit.models import memory_format
from verikit.models.backend import run_network
from verikit.models.embedder import Embedder
from verikit.models.inference import embed_files
from verikit.structures import InputSpec

SMALL = InputSpec(size=(48, 48))


def _converted(model: torch.nn.Module) -> bool | None:
    return model.__dict__.get("_verikit_channels_last")


def _orl_files(shared_data, n: int = 12) -> list:
    files, _ = list_images(shared_data / "orl_faces")
    return files[:: max(1, len(files) // n)][:n]


@pytest.mark.parametrize("backbone", ["timm:resnet18", "mobilenet", "inception", "xception", "dilated_resnet"])
def test_templates_match_the_contiguous_forward_on_real_photos(backbone, shared_data):
    torch.manual_seed(0)
    model = Embedder.build(backbone, input_spec=SMALL).eval()
    files = _orl_files(shared_data)
    got = embed_files(model, files, batch_size=6, num_workers=0).embeddings  # through run_network
    assert _converted(model) is True
    fresh = Embedder.build(backbone, input_spec=SMALL).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.inference_mode():
        from verikit.image_input import to_image
        from verikit.models.preprocess import to_tensor_transform
        t = to_tensor_transform(fresh.input_spec)
        ref = fresh(torch.stack([t(to_image(f)) for f in files])).numpy()
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.9999, cos.min()


def test_the_layout_changes_nothing_a_user_sees(tmp_path):
    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval()
    before = model.fingerprint
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():
        run_network(model, torch.randn(3, 3, 32, 32))
    conv = next(p for p in model.parameters() if p.dim() == 4)
    assert _converted(model) is True and conv.is_contiguous(memory_format=torch.channels_last)
    assert not conv.is_inference()  # converted outside inference mode: still trainable
    model._fingerprint = None
    assert model.fingerprint == before  # saved bytes are contiguous whatever the layout
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    model.save(tmp_path / "m")
    assert Embedder.load(tmp_path / "m").fingerprint == before
    model.train()  # training runs in the contiguous layout again, and works
    assert _converted(model) is None and conv.is_contiguous()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    opt.step()
    assert not torch.equal(conv.detach(), weights[next(k for k, v in weights.items() if v.dim() == 4)])


def test_a_training_model_and_other_inputs_are_left_alone():
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32)))
    assert memory_format.prepare(model.train(), torch.randn(2, 3, 32, 32)) is False
    assert memory_format.prepare(model.eval(), torch.randn(2, 3)) is False
    assert _converted(model) is None


class _Mlp(torch.nn.Sequential):
    channels_last_inference = True


def test_a_network_without_convolutions_is_not_converted():
    mlp = _Mlp(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4)).eval()
    with torch.inference_mode():
        out = run_network(mlp, torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 4) and _converted(mlp) is False


def test_only_networks_that_ask_for_it_are_converted():
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval()  # e.g. a detector's own network
    with torch.inference_mode():
        run_network(plain, torch.randn(2, 3, 8, 8))
    assert _converted(plain) is None and plain[0].weight.is_contiguous()


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(memory_format.ENV, "0")
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval()
    with torch.inference_mode():
        run_network(model, torch.randn(2, 3, 32, 32))
    assert _converted(model) is False
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous()


class _ViewsItsInput(torch.nn.Module):
    """A third-party style network whose ``.view()`` only works on contiguous tensors."""

    channels_last_inference = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.view(y.shape[0], -1)


def test_a_network_that_fails_in_channels_last_falls_back_once(caplog):
    torch.manual_seed(0)
    net = _ViewsItsInput().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        ref = net(x)
        with caplog.at_level(logging.WARNING, logger="verikit.models.backend"):
            got = run_network(net, x)
            again = run_network(net, x)
    assert torch.allclose(got, ref) and torch.allclose(again, ref)
    assert _converted(net) is False and net.conv.weight.is_contiguous()
    assert sum("channels-last" in r.getMessage() for r in caplog.records) == 1
    memory_format.release(net)  # what Embedder.train(True) calls: a model that gave up stays given up
    assert _converted(net) is False


def test_an_error_that_is_not_the_layouts_fault_keeps_the_layout():
    torch.manual_seed(0)
    model = Embedder.build("timm:test_resnet", embedding_size=16, input_spec=InputSpec(size=(32, 32))).eval()
    with torch.inference_mode():
        run_network(model, torch.randn(2, 3, 32, 32))
        with pytest.raises(RuntimeError):
            run_network(model, torch.randn(2, 5, 32, 32))  # wrong channel count: fails in any layout
    assert _converted(model) is True
    assert next(p for p in model.parameters() if p.dim() == 4).is_contiguous(memory_format=torch.channels_last)
