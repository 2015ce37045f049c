"""N-way one-shot classification in the layout of Lake's Omniglot task: make runs, read them, score them.

Lake, Salakhutdinov & Tenenbaum (Science 2015) score one-shot learning with *runs*: 20 characters
of one alphabet, one image of each drawn by one person (the one-shot examples), and 20 queries --
the same 20 characters drawn by another person. Each query is classified as the example it is
most similar to; the error of a run is the share of queries misclassified, and the task's figure
is that error averaged over the runs. We report accuracy, ``1 - mean error``.

A run is a folder in the official layout::

    runNN/training/classNN.png   the one-shot examples (the candidates)
    runNN/test/itemNN.png        the queries
    runNN/class_labels.txt       one line per query: "test/itemNN.png training/classMM.png"

(the official files prefix both paths with the run folder, ``run01/test/item01.png ...``; both
forms are read). :func:`make_runs` writes runs of this layout from a background-style folder
``<Alphabet>/<character>/<id>_<drawer>.png``, so the same :func:`read_runs` / :func:`score_runs`
score official runs and runs built on held-out background alphabets alike.

Scoring uses the model's own similarity measure (:mod:`verikit.similarity`); the 95% interval
of the mean accuracy is a percentile bootstrap over runs (a run, not a query, is the unit: the
queries of a run share an alphabet and two drawers), next to the Wilson interval over all
queries taken as independent trials, which is narrower and optimistic.

Only numpy and Pillow at import time; torch is imported only by :func:`model_embed_fn`.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DataError
from ..io import is_image_file
from ..similarity import parse_measure
from .bootstrap import _draws, _percentile_ci
from .metrics import wilson_interval

LABELS_FILE = "class_labels.txt"
SOURCE_FILE = "source.json"   # written by make_runs: where each image came from (not read when scoring)
_DRAWER = re.compile(r"_(\d+)$")

EmbedFn = Callable[[Sequence[Path]], np.ndarray]


@dataclass(frozen=True)
class OneShotRun:
    """One N-way run: candidate examples, queries, and the index of each query's true example."""

    name: str
    examples: tuple[Path, ...]    # training/ images, sorted by name
    queries: tuple[Path, ...]     # in class_labels.txt order
    answers: tuple[int, ...]      # answers[k]: index into ``examples`` of query k's character

    @property
    def way(self) -> int:
        return len(self.examples)


@dataclass(frozen=True)
class OneShotResult:
    """Accuracy per run, its mean (= 1 - Lake's mean error) and two 95% intervals."""

    runs: tuple[str, ...]
    accuracy_per_run: tuple[float, ...]
    correct: int
    trials: int
    mean_accuracy: float
    bootstrap_ci: tuple[float, float]   # percentile bootstrap over runs
    wilson_ci: tuple[float, float]      # all queries as independent trials (optimistic)
    similarity: str
    n_boot: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"runs": len(self.runs), "trials": self.trials, "correct": self.correct,
                "mean_accuracy": self.mean_accuracy, "mean_error": 1.0 - self.mean_accuracy,
                "bootstrap_ci": list(self.bootstrap_ci), "wilson_ci": list(self.wilson_ci),
                "interval_unit": "run", "confidence": self.confidence, "n_boot": self.n_boot,
                "similarity": self.similarity,
                "per_run": [{"run": r, "accuracy": a} for r, a in zip(self.runs, self.accuracy_per_run)]}


# -- making runs ---------------------------------------------------------------------------------
def _drawer_of(path: Path) -> str:
    m = _DRAWER.search(path.stem)
    if not m:
        raise DataError(f"cannot tell the drawer of '{path}': expected a name like 0683_07.png")
    return m.group(1)


def _characters(root: Path, alphabet: str) -> dict[str, dict[str, Path]]:
    """character folder name -> drawer -> image, for one alphabet."""
    folder = root / alphabet
    if not folder.is_dir():
        raise DataError(f"alphabet folder not found: '{folder}'")
    out: dict[str, dict[str, Path]] = {}
    for char in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in char.iterdir() if p.is_file() and is_image_file(p))
        if images:
            out[char.name] = {_drawer_of(p): p for p in images}
    return out


def make_runs(root: str | Path, alphabets: Sequence[str], n_runs: int, out: str | Path, *, way: int = 20,
              seed: int = 0) -> list[Path]:
    """Write ``n_runs`` Lake-style within-alphabet runs into ``out/run01 ... runNN``; return their folders.

    ``root`` holds ``<Alphabet>/<character>/<id>_<drawer>.png``. Alphabets with at least ``way``
    characters take turns (a seeded shuffled round robin, so each is used about equally often);
    each run draws ``way`` of its characters and two distinct drawers who drew all of them: the
    first drawer's images become ``training/class01..`` (the one-shot examples), the second's
    ``test/item01..`` (the queries, in shuffled order). ``source.json`` in each run records the
    alphabet, characters and drawers. The same ``seed`` gives the same runs.
    """
    if n_runs < 1 or way < 2:
        raise DataError(f"need n_runs >= 1 and way >= 2, got n_runs={n_runs}, way={way}")
    root, out = Path(root), Path(out)
    pool = {a: _characters(root, a) for a in sorted(alphabets)}
    usable = [a for a, chars in pool.items() if len(chars) >= way]
    if not usable:
        raise DataError(f"no alphabet among {', '.join(sorted(alphabets)) or '(none)'} has {way} characters")
    rng = random.Random(seed)
    order: list[str] = []
    runs: list[Path] = []
    for r in range(1, n_runs + 1):
        if not order:
            order = rng.sample(usable, len(usable))
        alphabet = order.pop()
        chars = rng.sample(sorted(pool[alphabet]), way)
        common = sorted(set.intersection(*(set(pool[alphabet][c]) for c in chars)))
        if len(common) < 2:
            raise DataError(f"fewer than two drawers drew all {way} chosen characters of '{alphabet}'")
        example_drawer, query_drawer = rng.sample(common, 2)
        order_of_queries = rng.sample(range(way), way)
        run = out / f"run{r:02d}"
        if run.exists():
            shutil.rmtree(run)
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for k, c in enumerate(chars, 1):
            shutil.copyfile(pool[alphabet][c][example_drawer], run / "training" / f"class{k:02d}.png")
        for k, ci in enumerate(order_of_queries, 1):
            shutil.copyfile(pool[alphabet][chars[ci]][query_drawer], run / "test" / f"item{k:02d}.png")
            lines.append(f"test/item{k:02d}.png training/class{ci + 1:02d}.png")
        (run / LABELS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (run / SOURCE_FILE).write_text(json.dumps({
            "alphabet": alphabet, "characters": chars, "example_drawer": example_drawer,
            "query_drawer": query_drawer, "seed": seed}, indent=2) + "\n", encoding="utf-8")
        runs.append(run)
    return runs


# -- reading runs --------------------------------------------------------------------------------
def _resolve(run: Path, rel: str, where: str) -> Path:
    p = Path(rel)
    if p.is_absolute():
        raise DataError(f"{where}: path '{rel}' must be relative to the run folder")
    if not (run / p).is_file() and p.parts and p.parts[0] == run.name:  # official "run01/test/item01.png"
        p = Path(*p.parts[1:])
    if not (run / p).is_file():
        raise DataError(f"{where}: file '{run / p}' not found")
    return (run / p).resolve()


def read_run(run: str | Path) -> OneShotRun:
    """Parse one run folder; every problem is a one-line :class:`DataError` naming the file and line."""
    run = Path(run)
    labels = run / LABELS_FILE
    if not labels.is_file():
        raise DataError(f"'{run}' is not a one-shot run: it has no {LABELS_FILE}")
    training = run / "training"
    if not training.is_dir():
        raise DataError(f"'{run}' is not a one-shot run: it has no training/ folder of one-shot examples")
    examples = sorted(p.resolve() for p in training.iterdir()
                      if p.is_file() and not p.name.startswith(".") and is_image_file(p))
    if len(examples) < 2:
        raise DataError(f"'{training}' holds {len(examples)} image(s); a run needs at least 2 one-shot examples")
    index = {p: i for i, p in enumerate(examples)}
    queries: list[Path] = []
    answers: list[int] = []
    try:
        text = labels.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read '{labels}': {exc}") from exc
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{labels}:{n}"
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'test/itemNN.png training/classMM.png', got {line.strip()!r}")
        query, example = _resolve(run, parts[0], where), _resolve(run, parts[1], where)
        if example not in index:
            raise DataError(f"{where}: '{parts[1]}' is not an image in {training}")
        if query in index:
            raise DataError(f"{where}: query '{parts[0]}' is itself one of the one-shot examples")
        if query in queries:
            raise DataError(f"{where}: query '{parts[0]}' is listed twice")
        queries.append(query)
        answers.append(index[example])
    if not queries:
        raise DataError(f"'{labels}' lists no queries")
    return OneShotRun(run.name, tuple(examples), tuple(queries), tuple(answers))


def read_runs(folder: str | Path) -> list[OneShotRun]:
    """One run folder, or a folder of run folders (each with ``class_labels.txt``), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"runs folder not found: '{folder}'")
    if (folder / LABELS_FILE).is_file():
        return [read_run(folder)]
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / LABELS_FILE).is_file())
    if not subs:
        raise DataError(f"no one-shot runs under '{folder}': expected run folders holding {LABELS_FILE}")
    return [read_run(p) for p in subs]


# -- scoring -------------------------------------------------------------------------------------
def score_runs(embed_fn: EmbedFn, runs: Sequence[OneShotRun], *, similarity: str = "cosine", n_boot: int = 1000,
               seed: int = 0, confidence: float = 0.95) -> OneShotResult:
    """Classify each query as its most similar one-shot example; accuracy per run, mean, 95% intervals.

    ``embed_fn`` maps a list of image paths to an ``(n, d)`` array in the same order (all images
    of all runs are embedded in one call). ``similarity`` is a :mod:`verikit.similarity` spec --
    pass the model's ``config.similarity``. A tie goes to the example listed first.
    """
    if not runs:
        raise DataError("no runs to score")
    if n_boot < 1:
        raise DataError(f"n_boot must be >= 1, got {n_boot}")
    measure = parse_measure(similarity)
    paths = list(dict.fromkeys(p for r in runs for p in (*r.examples, *r.queries)))
    emb = np.asarray(embed_fn(paths), dtype=np.float64)
    if emb.ndim != 2 or len(emb) != len(paths):
        raise DataError(f"embed_fn returned shape {emb.shape} for {len(paths)} images; expected ({len(paths)}, d)")
    row = {p: i for i, p in enumerate(paths)}
    acc, correct, trials = [], 0, 0
    for r in runs:
        s = measure.scores(emb[[row[p] for p in r.queries]], emb[[row[p] for p in r.examples]])
        hits = int((s.argmax(axis=1) == np.asarray(r.answers)).sum())
        acc.append(hits / len(r.queries))
        correct, trials = correct + hits, trials + len(r.queries)
    a = np.asarray(acc)
    boot = (_draws(len(a), n_boot, seed) @ a) / len(a)  # mean accuracy of each resample of runs
    return OneShotResult(tuple(r.name for r in runs), tuple(float(x) for x in a), correct, trials, float(a.mean()),
                         _percentile_ci(boot, confidence), wilson_interval(correct, trials, confidence),
                         measure.spec, n_boot, confidence)


def pixel_embed_fn(size: int = 28) -> EmbedFn:
    """A raw-pixel baseline: each image as its ``size`` x ``size`` grey ink (1 - brightness), flattened.

    Scored with cosine this is nearest neighbour on downsampled pixels."""
    from PIL import Image

    from ..io import load_image

    def embed(paths: Sequence[Path]) -> np.ndarray:
        rows = [1.0 - np.asarray(load_image(p).convert("L").resize((size, size), Image.BILINEAR),
                                 np.float64).ravel() / 255.0 for p in paths]
        return np.stack(rows) + 1e-9  # an empty image would have no direction
    return embed


def model_embed_fn(model: Any, *, batch_size: int = 64, progress: Callable[[int], None] | None = None) -> EmbedFn:
    """An :class:`~verikit.models.embedder.Embedder` as an ``embed_fn``; an unreadable image is an error."""
    from ..models.inference import embed_files

    def embed(paths: Sequence[Path]) -> np.ndarray:
        out = embed_files(model, paths, batch_size=batch_size, num_workers=0, progress=progress)
        if out.failures:
            path, reason = out.failures[0]
            raise DataError(f"cannot embed '{path}': {reason}")
        return out.embeddings
    return embed
