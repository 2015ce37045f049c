"""Training the pair head (:mod:`verikit.models.pair_head`) on a frozen embedder.

Every image is embedded once (no augmentation: the embedder is frozen, so its embeddings are
fixed); the head then trains full-batch on all pairs of the training identities with binary
cross-entropy, genuine pairs up-weighted to balance the far more numerous impostor pairs. Held-out
identities (``val_fraction``) give the threshold at ``target_fmr`` from all their pairs, so the
threshold is measured on people the head never saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import DataError
from ..models.pair_head import PairHead, SavedPairHead


@dataclass
class PairHeadConfig:
    hidden: int = 64
    steps: int = 300          # full-batch AdamW steps
    lr: float = 3e-3
    weight_decay: float = 1e-3
    val_fraction: float = 0.3  # identities held out to calibrate the threshold (0: no threshold)
    target_fmr: float = 1e-2
    seed: int = 0


def all_pair_indices(labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, same) for every unordered pair i < j."""
    lab = np.asarray(list(labels))
    i, j = np.triu_indices(len(lab), 1)
    return i, j, (lab[i] == lab[j]).astype(np.float32)


def train_head(embeddings: np.ndarray, labels: Sequence[Any], cfg: PairHeadConfig) -> tuple[PairHead, list[float]]:
    """Fit a PairHead on all pairs of ``embeddings``; returns it and the loss every 50 steps."""
    torch.manual_seed(cfg.seed)
    i, j, same = all_pair_indices(labels)
    n_pos = float(same.sum())
    if n_pos == 0 or n_pos == len(same):
        raise DataError("the pair head needs genuine and impostor pairs: two or more identities, "
                        "one with two or more images")
    emb = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32)
    a, b, y = emb[i], emb[j], torch.as_tensor(same)
    head = PairHead(emb.shape[1], cfg.hidden)
    # Balance the classes: otherwise predicting "different" for everything is ~90% right.
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(same) - n_pos) / n_pos))
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = []
    for step in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(head(a, b), y)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            history.append(loss.item())
    head.eval()
    return head, history


def pair_head_scores(head: PairHead, embeddings: np.ndarray, labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) head scores of every pair i < j (the all-pairs protocol)."""
    i, j, same = all_pair_indices(labels)
    emb = np.asarray(embeddings)
    s = head.scores(emb[i], emb[j])
    return s[same == 1], s[same == 0]


def fit_pair_head(model: Any, data_dir: str | Path, cfg: PairHeadConfig,
                  progress: Callable[[int], None] | None = None) -> tuple[SavedPairHead, dict[str, Any]]:
    """Embed the dataset with the frozen ``model``, train on some identities, calibrate on the rest."""
    from ..evaluate.metrics import eer, threshold_at_fmr
    from ..io import scan_identity_folders
    from ..models.inference import embed_files
    from .data import identity_split

    split = identity_split(scan_identity_folders(data_dir, min_images=2), cfg.val_fraction, cfg.seed)
    items = split.train + split.val
    out = embed_files(model, [p for _, p in items], progress=progress)
    label_of = {p: n for n, p in items}
    held = set(split.val_identities)
    rows = [(k, label_of[p]) for k, p in enumerate(out.paths)]
    tr = [k for k, n in rows if n not in held]
    head, history = train_head(out.embeddings[tr], [rows[k][1] for k in tr], cfg)
    report: dict[str, Any] = {"config": asdict(cfg), "train_identities": len(split.train_identities),
                              "train_images": len(tr), "loss_history": history,
                              "failures": [f"{p}: {r}" for p, r in out.failures]}
    threshold = None
    va = [k for k, n in rows if n in held]
    if va:
        genuine, impostor = pair_head_scores(head, out.embeddings[va], [rows[k][1] for k in va])
        if len(genuine) and len(impostor):
            threshold = float(threshold_at_fmr(impostor, cfg.target_fmr))
            report.update(val_identities=len(held), val_eer=float(eer(genuine, impostor)[0]),
                          val_genuine=len(genuine), val_impostor=len(impostor))
    report["threshold"] = threshold
    return SavedPairHead(head, model.fingerprint, threshold, report), report
