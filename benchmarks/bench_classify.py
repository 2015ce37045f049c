"""Closed-set identification on ORL: SVM (linear, rbf) on embeddings versus 1-nearest-neighbour,
on the same split, in one run.

Honest protocol: the embedder is trained on people s1-s20 only; the SVM and 1-NN see people
s21-s40, 5 images per person to train and the other 5 to test (the standard ORL 5/5 protocol),
repeated over several random 5/5 splits. The embedder never saw s21-s40.

Run: ``.venv/bin/python benchmarks/bench_classify.py`` (trains the s1-s20 embedder first, about
two minutes on 2 CPU cores; ``--model DIR`` reuses one). Writes ``benchmarks/results/classify.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ORL = REPO / "data" / "orl_faces"
RESULTS = REPO / "benchmarks" / "results"
EMBEDDER_PEOPLE = [f"s{i}" for i in range(1, 21)]
TRAIN_COMMAND = ("verikit train <s1-s20> --backbone timm:resnet18 --backbone-option channels=[32,64,128,256] "
                 "--loss normalized_softmax --augment strong --image-size 64 --channels 1 --epochs 30 --val-fraction 0")


def people_dir(people: list[str], root: Path) -> Path:
    """A folder of symlinks to the chosen ORL people (the dataset is not copied)."""
    root.mkdir(parents=True, exist_ok=True)
    for p in people:
        link = root / p
        if not link.exists():
            link.symlink_to(ORL / p, target_is_directory=True)
    return root


def train_orl_embedder(out: Path, seed: int = 0) -> Path:
    """The embedder of both ORL benchmarks: trained on s1-s20 only (settings: TRAIN_COMMAND)."""
    from verikit.train.config import TrainConfig
    from verikit.train.loop import train

    data = people_dir(EMBEDDER_PEOPLE, Path(tempfile.mkdtemp()) / "s1-s20")
    cfg = TrainConfig(backbone="timm:resnet18", backbone_options={"channels": [32, 64, 128, 256]},
                      loss="normalized_softmax", augment="strong", image_size=(64, 64), channels=1, epochs=30,
                      val_fraction=0, seed=seed)
    start = time.perf_counter()
    result = train(data, cfg)
    result.model.save(out)
    print(f"trained the s1-s20 embedder in {time.perf_counter() - start:.0f}s -> {out}")
    return out


def embed_people(model, people: list[str]) -> tuple[np.ndarray, list[str]]:
    from verikit.models.inference import embed_files

    paths = [p for person in people for p in sorted((ORL / person).glob("*.pgm"))]
    out = embed_files(model, paths, num_workers=0)
    return out.embeddings, [p.parent.name for p in out.paths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an embedder trained on s1-s20 (default: train one now)")
    ap.add_argument("--splits", type=int, default=10, help="random 5/5 splits to average over")
    ap.add_argument("--C", type=float, nargs="+", default=[1.0, 10.0])
    args = ap.parse_args()

    from verikit.classify.protocol import evaluate
    from verikit.models.embedder import Embedder

    model_dir = args.model or train_orl_embedder(Path(tempfile.mkdtemp()) / "orl-s1-s20")
    model = Embedder.load(model_dir)
    emb, labels = embed_people(model, [f"s{i}" for i in range(21, 41)])
    lab = np.array(labels)
    runs: dict[str, list[float]] = {}
    for split in range(args.splits):
        rng = np.random.default_rng(split)
        test = np.zeros(len(lab), bool)
        for person in sorted(set(labels)):
            idx = np.flatnonzero(lab == person)
            test[rng.choice(idx, 5, replace=False)] = True
        for kernel in ("linear", "rbf"):
            for c in args.C:
                start = time.perf_counter()
                _, rep = evaluate(emb[~test], lab[~test].tolist(), emb[test], lab[test].tolist(), kernel=kernel,
                                  C=c, measure=model.config.similarity)
                runs.setdefault(f"svm_{kernel}_C{c:g}", []).append(rep.svm_accuracy)
                runs.setdefault(f"svm_{kernel}_C{c:g}_fit_s", []).append(time.perf_counter() - start)
        runs.setdefault("nn_1", []).append(rep.nn_accuracy)
    summary = {k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}
               for k, v in runs.items()}
    nn = summary["nn_1"]["mean"]
    print(f"ORL s21-s40, 5 train / 5 test per person, {args.splits} random splits; embedder trained on s1-s20")
    print(f"  1-NN ({model.config.similarity}): {nn:.2%}")
    for k, v in summary.items():
        if k.startswith("svm") and not k.endswith("_fit_s"):
            print(f"  {k}: {v['mean']:.2%} (min {v['min']:.2%}, max {v['max']:.2%}), "
                  f"{v['mean'] - nn:+.2%} vs 1-NN")
    RESULTS.mkdir(exist_ok=True)
    out = {"protocol": "ORL s21-s40, 5/5 per person, random splits", "splits": args.splits,
           "embedder": {"people": "s1-s20", "training": TRAIN_COMMAND, "fingerprint": model.fingerprint},
           "accuracy": summary, "measured_at": time.strftime("%Y-%m-%d")}
    (RESULTS / "classify.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'classify.json'}")


if __name__ == "__main__":
    main()
