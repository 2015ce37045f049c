"""A tiny trainable segmenter registered in-process by the segment CLI tests (also from a subprocess,
so importing this module imports nothing heavy)."""

from __future__ import annotations

NORM = dict(mean=(0.5,) * 3, std=(0.25,) * 3)


def network():
    import torch

    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 1, 1))


def tiny(*, weights=None, input_size=48, threshold=None, context=0.2):
    """A trainable segmenter factory, as a plugin would register it."""
    from verikit.segment.base import TorchMaskSegmenter
    from verikit.segment.weights import load_weights

    net = network()
    if weights:
        load_weights(net, weights)
    return TorchMaskSegmenter(net, input_size=input_size, context=context, threshold=threshold, **NORM)


def _train(argument=None, *, options=None, size=None, **kwargs):
    from verikit.segment.training import fit_segmenter

    return fit_segmenter(network, spec="tiny", options=dict(options or {}), size=size or 48, **NORM, **kwargs)


tiny.train = _train
