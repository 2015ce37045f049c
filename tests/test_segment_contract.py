"""Every registered segmenter passes verikit.testing.check_segmenter (parametrised over the registry,
like tests/test_plugins_contract.py does for the other kinds)."""

from __future__ import annotations

import pytest
import torch

from verikit import testing
from verikit.registry import segmenters

@pytest.mark.parametrize("name", segmenters.names())
def test_segmenter_contract(name):
    spec, options = segmenters.example(name)  # the factory's declared small build
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        testing.check_segmenter(segmenters.create(spec, **options))
    finally:
        torch.set_num_threads(before)
