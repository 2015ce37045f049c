"""verikit's metrics against a second, independent implementation (pyeer) on real score sets.

The scores come from ORL faces (bundled) embedded by a small random-weight model, and, when the
shared data is present, from Extended Yale B: real score distributions with ties and overlap,
not synthetic Gaussians.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from verikit.evaluate.metrics import auc, eer, fmr_fnmr_at, threshold_at_fmr
from verikit.evaluate.pairs import all_pairs_scores
from verikit.io import scan_identity_folders
from verikit.models.inference import embed_files

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pyeer imports pkg_resources, which warns about itself
    eer_info = pytest.importorskip("pyeer.eer_info", reason="pyeer is a test-only dependency (pip install '.[test]')")


def real_scores(model, root, per_identity=None):
    scan = scan_identity_folders(root)
    items = [(n, p) for n, ps in scan.by_identity.items() for p in (ps[:per_identity] if per_identity else ps)]
    out = embed_files(model, [p for _, p in items], num_workers=0)
    label = {p: n for n, p in items}
    return all_pairs_scores(out.embeddings, [label[p] for p in out.paths])


def sets(tiny_model, orl, shared_data_or_none):
    yield "orl", real_scores(tiny_model, orl)
    if shared_data_or_none is not None and (shared_data_or_none / "cropped_yale_b").is_dir():
        yield "yale_b", real_scores(tiny_model, shared_data_or_none / "cropped_yale_b", per_identity=12)


@pytest.fixture()
def shared_data_or_none(request):
    try:
        return request.getfixturevalue("shared_data")
    except pytest.skip.Exception:
        return None


def test_auc_eer_and_fnmr_at_fmr_agree_with_pyeer(tiny_model, orl, shared_data_or_none):
    for name, (genuine, impostor) in sets(tiny_model, orl, shared_data_or_none):
        g64, i64 = genuine.astype(np.float64), impostor.astype(np.float64)
        stats = eer_info.get_eer_stats(g64.tolist(), i64.tolist())
        # AUC has one definition: it must agree to rounding.
        assert auc(g64, i64) == pytest.approx(stats.auc, abs=1e-6), name
        # EER: the two define the crossing differently in general (verikit: nearest observed operating
        # point); on real score sets they must agree to within one comparison of either class.
        ours, _ = eer(g64, i64)
        assert ours == pytest.approx(stats.eer, abs=1.0 / len(g64) + 1.0 / len(i64)), name
        # FNMR at FMR 1% and 0.1%: pyeer's operating points vs verikit's order-statistic threshold.
        step = 1.0 / len(g64)  # one genuine comparison either way
        for target, theirs in ((1e-2, stats.fmr100), (1e-3, stats.fmr1000)):
            fmr, fnmr = fmr_fnmr_at(g64, i64, threshold_at_fmr(i64, target))
            assert fmr <= target
            assert fnmr == pytest.approx(theirs, abs=step), (name, target)
