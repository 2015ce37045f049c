"""The closed-set protocol: split every identity's images into train/test, embed them once, fit
the SVM on the train part and report its accuracy next to nearest neighbour (1-NN under the
model's own similarity measure) on exactly the same split.

The split is per identity (each keeps ``n * test_fraction`` test images, rounded half up, and at least one
training image), so every test image's identity was seen in training: closed-set identification.
For an honest figure the embedder must not have been trained on these images (e.g. train it on
other identities); nothing here can check that.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError
from ..similarity import parse_measure
from .svm import SvmClassifier


@dataclass
class ClosedSetReport:
    """Accuracies on the held-out images (None without a test part)."""

    kernel: str
    C: float
    measure: str
    identities: int
    n_train: int
    n_test: int
    svm_accuracy: float | None
    nn_accuracy: float | None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_per_identity(by_identity: dict[str, list[Path]], test_fraction: float, seed: int = 0
                       ) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(train, test) items; each identity's images shuffled with ``seed``, ``n * test_fraction`` held out."""
    if not 0 <= test_fraction < 1:
        raise DataError(f"test fraction must be in [0, 1), got {test_fraction}")
    rng = random.Random(seed)
    train, test = [], []
    for name in sorted(by_identity):
        paths = sorted(by_identity[name])
        rng.shuffle(paths)
        n_test = min(len(paths) - 1, int(len(paths) * test_fraction + 0.5))  # half rounds up
        test += [(name, p) for p in paths[:n_test]]
        train += [(name, p) for p in paths[n_test:]]
    return train, test


def nearest_neighbour(train_emb: np.ndarray, train_labels: Sequence[str], test_emb: np.ndarray,
                      measure: str = "cosine") -> list[str]:
    """1-NN: each test row takes the label of its highest-scoring training row under ``measure``."""
    best = parse_measure(measure).scores(test_emb, train_emb).argmax(axis=1)
    return [train_labels[i] for i in best]


def accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


def evaluate(train_emb: np.ndarray, train_labels: Sequence[str], test_emb: np.ndarray, test_labels: Sequence[str],
             *, kernel: str = "linear", C: float = 1.0, measure: str = "cosine", model_fingerprint: str = "",
             seed: int = 0) -> tuple[SvmClassifier, ClosedSetReport]:
    """Fit the SVM on the train part; accuracies of it and of 1-NN on the test part."""
    clf = SvmClassifier.fit(train_emb, train_labels, kernel=kernel, C=C, model_fingerprint=model_fingerprint,
                            seed=seed)
    svm_acc = nn_acc = None
    if len(test_labels):
        svm_acc = accuracy(clf.predict(test_emb)[0], test_labels)
        nn_acc = accuracy(nearest_neighbour(train_emb, train_labels, test_emb, measure), test_labels)
    report = ClosedSetReport(kernel, C, parse_measure(measure).spec, len(set(train_labels)), len(train_labels),
                             len(test_labels), svm_acc, nn_acc)
    clf.report = report.to_dict()
    return clf, report


def fit_folder(model: Any, data_dir: str | Path, *, kernel: str = "linear", C: float = 1.0,
               test_fraction: float = 0.5, seed: int = 0, batch_size: int = 64,
               progress: Callable[[int], None] | None = None) -> tuple[SvmClassifier, ClosedSetReport]:
    """Embed a folder-per-identity dataset with ``model`` and run :func:`evaluate` on its split.

    Unreadable images are skipped and listed in the report's ``failures``.
    """
    from ..io import scan_identity_folders
    from ..models.inference import embed_files

    train, test = split_per_identity(scan_identity_folders(data_dir).by_identity, test_fraction, seed)
    items = train + test
    out = embed_files(model, [p for _, p in items], batch_size=batch_size, progress=progress)
    row = {p: i for i, p in enumerate(out.paths)}

    def part(pairs: list[tuple[str, Path]]) -> tuple[np.ndarray, list[str]]:
        kept = [(n, p) for n, p in pairs if p in row]
        emb = out.embeddings[[row[p] for _, p in kept]] if kept else np.zeros((0, model.embedding_size))
        return emb, [n for n, _ in kept]

    (tr_emb, tr_lab), (te_emb, te_lab) = part(train), part(test)
    clf, report = evaluate(tr_emb, tr_lab, te_emb, te_lab, kernel=kernel, C=C, measure=model.config.similarity,
                           model_fingerprint=model.fingerprint, seed=seed)
    report.failures = [f"{p}: {reason}" for p, reason in out.failures]
    clf.report = report.to_dict()
    return clf, report
