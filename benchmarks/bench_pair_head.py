"""Does a learned pair head beat the plain cosine? All-pairs EER on unseen ORL people, one run.

Embedder trained on s1-s20 only (see bench_classify.TRAIN_COMMAND). The pair head (MLP on
[|a-b|, a*b]) is trained on the frozen embeddings of either
  * s21-s30: people the embedder never saw (the head learns how *new* faces spread), or
  * s1-s20: the embedder's own training people (embeddings there are over-fitted and tighter),
and both the head and the cosine are evaluated on every pair of s31-s40 (450 genuine, 4,500
impostor pairs), which neither the embedder nor the head saw. The head is trained with 3 seeds.

Run: ``.venv/bin/python benchmarks/bench_pair_head.py`` (trains the embedder first, about two
minutes; ``--model DIR`` reuses one). Writes ``benchmarks/results/pair_head.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_classify import RESULTS, TRAIN_COMMAND, embed_people, train_orl_embedder

HEAD_TRAIN_SETS = {"s21-s30": range(21, 31), "s1-s20": range(1, 21)}
EVAL_PEOPLE = [f"s{i}" for i in range(31, 41)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="an embedder trained on s1-s20 (default: train one now)")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()

    from verikit.evaluate.metrics import eer, tar_at_far
    from verikit.models.embedder import Embedder
    from verikit.evaluate.pairs import all_pairs
    from verikit.train.pair_head import PairHeadConfig, pair_head_scores, train_head

    model = Embedder.load(args.model or train_orl_embedder(Path(tempfile.mkdtemp()) / "orl-s1-s20"))
    ev_emb, ev_lab = embed_people(model, EVAL_PEOPLE)
    g, i = all_pairs(ev_emb, ev_lab, model.config.similarity)
    cosine = {"eer": float(eer(g, i)[0]), "tar_at_far_1e-2": float(tar_at_far(g, i, [1e-2])[0]),
              "genuine": len(g), "impostor": len(i)}
    print(f"ORL s31-s40 all pairs ({len(g)} genuine / {len(i)} impostor); embedder trained on s1-s20")
    print(f"  {model.config.similarity:>8}: EER {cosine['eer']:.2%}, TAR@FAR=1e-2 {cosine['tar_at_far_1e-2']:.2%}")
    heads = {}
    for name, people in HEAD_TRAIN_SETS.items():
        tr_emb, tr_lab = embed_people(model, [f"s{k}" for k in people])
        eers, tars, seconds = [], [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            head, _ = train_head(tr_emb, tr_lab, PairHeadConfig(seed=seed))
            seconds.append(time.perf_counter() - start)
            hg, hi = pair_head_scores(head, ev_emb, ev_lab)
            eers.append(float(eer(hg, hi)[0]))
            tars.append(float(tar_at_far(hg, hi, [1e-2])[0]))
        heads[name] = {"eer_mean": float(np.mean(eers)), "eer_per_seed": eers,
                       "tar_at_far_1e-2_mean": float(np.mean(tars)), "train_seconds_mean": float(np.mean(seconds))}
        print(f"  pair head trained on {name}: EER {np.mean(eers):.2%} (seeds {', '.join(f'{e:.2%}' for e in eers)}), "
              f"TAR@FAR=1e-2 {np.mean(tars):.2%}; EER ratio vs cosine {np.mean(eers) / max(cosine['eer'], 1e-9):.2f}")
    RESULTS.mkdir(exist_ok=True)
    out = {"protocol": "ORL all pairs of s31-s40", "embedder": {"people": "s1-s20", "training": TRAIN_COMMAND,
                                                               "fingerprint": model.fingerprint},
           "cosine": cosine, "pair_head": heads, "measured_at": time.strftime("%Y-%m-%d")}
    (RESULTS / "pair_head.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'pair_head.json'}")


if __name__ == "__main__":
    main()
