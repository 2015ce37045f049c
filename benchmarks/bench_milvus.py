"""Milvus Lite (plugin verikit-milvus) against exact faiss flat, in one run, on the same vectors.

For N x D unit vectors and Q fresh queries (clustered: identity-like centres plus noise, as in
bench_ann.py): build time, queries/s (batched and one query at a time) and recall@k against the
exact answer, for

* raw ``faiss.IndexFlatIP`` (the baseline, exact by definition);
* the ``milvus`` backend as the gallery uses it (``verikit_milvus.MilvusIndex``, FLAT, a Lite file);
* ``Gallery.search`` on a ``--index milvus`` gallery (SQLite check + Milvus + name lookup) versus
  ``Gallery.search`` on a ``faiss:Flat`` gallery.

The figures are stated plainly whichever side wins. Run:
``.venv/bin/python benchmarks/bench_milvus.py`` (100k x 256, the issue's size: 1,000 queries in one
batch, the first ``--single`` 200 also one at a time; 10-20 min on a loaded 2-core machine, most of
it Milvus Lite's inserts and single queries) or ``--quick`` (10k x 64, under a minute). JSON goes
to ``benchmarks/results/milvus[-quick].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def clustered(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d), dtype=np.float32)
    x = c[rng.integers(0, centres, n)] + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def qps(search, queries: np.ndarray, k: int, *, one_by_one: bool) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    if one_by_one:
        ids = np.concatenate([search(queries[i:i + 1], k) for i in range(len(queries))])
    else:
        ids = search(queries, k)
    return len(queries) / (time.perf_counter() - start), ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k x 64, 200 queries")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200,
                    help="of the queries, how many are also sent one at a time (Milvus Lite at 100k: ~1 s each "
                         "on a loaded 2-core machine, so all 1,000 would take most of an hour)")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    if args.quick:
        args.n, args.dim, args.queries, args.single = 10_000, 64, 200, 200
    from verikit.index.gallery import Gallery

    try:
        from verikit_milvus import create
    except ImportError:
        raise SystemExit("bench_milvus: the verikit-milvus plugin is not installed "
                         "(pip install -e plugins/verikit-milvus); skipped")

    x = clustered(args.n, args.dim, max(10, args.n // 20), seed=0)
    q = clustered(args.queries, args.dim, max(10, args.n // 20), seed=0)[: args.queries]
    q = q + 0.05 * np.random.default_rng(1).standard_normal(q.shape, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ids = np.arange(1, args.n + 1, dtype=np.int64)
    args.single = min(args.single, args.queries)
    out: dict = {"n": args.n, "dim": args.dim, "queries": args.queries, "single_queries": args.single, "k": args.k,
                 "faiss_threads": faiss.omp_get_max_threads()}

    t = time.perf_counter()
    flat = faiss.IndexIDMap(faiss.IndexFlatIP(args.dim))
    flat.add_with_ids(x, ids)
    out["faiss_build_s"] = time.perf_counter() - t
    faiss_search = lambda qq, k: flat.search(qq, k)[1]  # noqa: E731
    truth = faiss_search(q, args.k)

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        m = create(dim=args.dim, gallery=tmp, uid="bench")
        m.add(ids, x)
        m.save(Path(tmp) / "pointer.json")  # flush: what a gallery save costs
        out["milvus_build_s"] = time.perf_counter() - t
        milvus_search = lambda qq, k: m.search(qq, k)[1]  # noqa: E731
        for name, fn in (("faiss", faiss_search), ("milvus", milvus_search)):
            out[f"{name}_qps_batch"], found = qps(fn, q, args.k, one_by_one=False)
            out[f"{name}_recall_batch"] = recall(found, truth)
            out[f"{name}_qps_single"], found = qps(fn, q[:args.single], args.k, one_by_one=True)
            out[f"{name}_recall_single"] = recall(found, truth[:args.single])
        m.close()

        names = [f"p{i}" for i in range(args.n // 10)]
        for spec in ("faiss:Flat", "milvus"):
            path = Path(tmp) / spec.replace(":", "_")
            with Gallery.create(path, dim=args.dim, fingerprint="bench", index=spec) as g:
                t = time.perf_counter()
                g.add_many({nm: (x[i * 10:(i + 1) * 10], None) for i, nm in enumerate(names)})
                out[f"gallery_{spec}_enroll_s"] = time.perf_counter() - t
                start = time.perf_counter()
                for i in range(args.single):
                    g.search(q[i:i + 1], args.k)
                out[f"gallery_{spec}_qps_single"] = args.single / (time.perf_counter() - start)

    out["load_average"] = list(os.getloadavg())
    out["milvus_vs_faiss_qps_batch"] = out["milvus_qps_batch"] / out["faiss_qps_batch"]
    out["milvus_vs_faiss_qps_single"] = out["milvus_qps_single"] / out["faiss_qps_single"]
    out["gallery_milvus_vs_faiss_qps_single"] = out["gallery_milvus_qps_single"] / out["gallery_faiss:Flat_qps_single"]
    for key, value in out.items():
        print(f"{key:>36}: {value:.4g}" if isinstance(value, float) else f"{key:>36}: {value}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    dest = RESULTS / ("milvus-quick.json" if args.quick else "milvus.json")
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {dest}")


if __name__ == "__main__":
    main()
