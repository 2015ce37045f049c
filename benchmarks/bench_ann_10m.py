"""Approximate search past RAM-sized exact scans: 10M x 128 from a memory-mapped file (issue 12).

What runs, exactly: the vectors (``--data structured`` by default, :mod:`ann_data`) are written once
to a float32 ``np.memmap`` on disk (5.1 GB at 10M x 128; the free disk is checked first) and never
held in RAM whole. The index is raw faiss in the layout verikit's managed spec picks for this size
(``ManagedIndex.layout_for``: ``faiss:ivf-pq`` -> ``IVF8192,PQ16x8`` at 10M x 128; ``--nlist``
overrides the list count where the k-means of 8192 lists is too slow for the machine), trained
on verikit's training-sample size, filled from the memmap in blocks, and tuned with verikit's
search-parameter sweep (``ManagedIndex.param_values``, shortlists widened 4x then 16x and
re-ranked exactly from the memmap, as the gallery re-ranks from its stored templates). It does
not go through a Gallery: 10M SQLite rows and their JSON names are another benchmark.

Baseline, in the same run: the exact flat scan (``faiss.IndexFlatIP``) over the memmap in blocks,
its search time summed (a flat scan is linear in n, so this is what one scan costs; the index
would not fit this machine's RAM beside the others), the queries as one BLAS product per block (as
verikit's gallery searches a batch), and one query at a time on 20 of them. Recall: 10-recall@10 against that exact
answer, tuned on half the fresh queries and reported on the other half. Memory: resident set
added by training and filling the index (the memmap's page cache is not resident set).

Run: ``.venv/bin/python benchmarks/bench_ann_10m.py`` (10M x 128; needs ~5.5 GB free disk under
``--dir``, default /tmp), ``--quick`` (500k x 128), ``--kind ivf-flat|ivf-sq8|ivf-pq``. Writes
``benchmarks/results/ann-10m-KIND.json`` (``ann-500k-KIND.json`` ...).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import psutil

from verikit.index.approximate import ManagedIndex, parse, pq_shape
from verikit.index.tuning import RERANK_WIDTHS, recall_at_k

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_data import BLOCK, make_queries, Structured, isotropic  # noqa: E402
from bench_ann import train_size  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def memmapped(path: Path, kind: str, n: int, d: int) -> np.memmap:
    """The n x d vectors of ``kind`` in ``path``, written once (a sidecar records what it holds)."""
    meta = path.with_suffix(".json")
    want = {"kind": kind, "n": n, "dim": d, "seed": 0, "version": 1}
    if path.is_file() and meta.is_file() and json.loads(meta.read_text()) == want:
        return np.memmap(path, np.float32, "r", shape=(n, d))
    need = n * d * 4
    free = shutil.disk_usage(path.parent).free
    if free < 1.2 * need:
        sys.exit(f"{path.parent}: {free / 2**30:.1f} GiB free, {need / 2**30:.1f} GiB needed for the memmap")
    started = time.perf_counter()
    out = np.memmap(path, np.float32, "w+", shape=(n, d))
    gen = Structured(d) if kind == "structured" else None
    for s in range(0, n, 10 * BLOCK):  # structured templates: identities in order, as a gallery enrols them
        m = min(10 * BLOCK, n - s)
        if gen is not None:
            rng = np.random.default_rng([0, s])
            out[s:s + m] = gen._draw(np.arange(s, s + m) // gen.per_identity, rng)
        else:
            out[s:s + m] = isotropic(m, d, s + 1, centres=max(100, n // 20))
    out.flush()
    meta.write_text(json.dumps(want))
    print(f"wrote {path} ({need / 2**30:.1f} GiB) in {time.perf_counter() - started:.0f}s", flush=True)
    return np.memmap(path, np.float32, "r", shape=(n, d))


def exact(vectors: np.memmap, q: np.ndarray, k: int, block: int, batched: bool = True) -> tuple[np.ndarray, float]:
    """Top-k row ids by a flat scan of the memmap in blocks; the summed search seconds. ``batched``:
    the queries as one BLAS product per block, else faiss's per-query kernel (one query at a time)."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    seconds = 0.0
    # The batch as one BLAS product, as verikit's gallery searches batches (faiss 1.15's default
    # would scan batches under 1,000 queries at 128-d one query at a time, ~10x slower).
    faiss.cvar.distance_compute_blas_threshold = 4 * q.shape[1] if batched else 2**31 - 1
    for s in range(0, len(vectors), block):
        flat = faiss.IndexFlatIP(q.shape[1])
        flat.add(np.ascontiguousarray(vectors[s:s + block]))
        t = time.perf_counter()
        scores, ids = flat.search(q, k)
        seconds += time.perf_counter() - t
        cs, ci = np.concatenate([best_s, scores], 1), np.concatenate([best_i, ids + s], 1)
        order = np.argsort(-cs, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cs, order, 1), np.take_along_axis(ci, order, 1)
    return best_i, seconds


def search(index, vectors: np.memmap, q: np.ndarray, k: int, width: int) -> np.ndarray:
    """The index's top-k; with ``width``, a k*width shortlist re-ranked exactly from the memmap."""
    if not width:
        return index.search(q, k)[1]
    _, ids = index.search(q, k * width)
    flat_ids = np.maximum(ids, 0).ravel()
    order = np.argsort(flat_ids)
    rows = np.empty((len(flat_ids), q.shape[1]), np.float32)
    rows[order] = vectors[flat_ids[order]]  # sorted reads: the memmap is read in file order
    exact_s = np.einsum("qd,qsd->qs", q, rows.reshape(len(q), -1, q.shape[1]))
    exact_s[ids < 0] = -np.inf
    return np.take_along_axis(ids, np.argsort(-exact_s, axis=1)[:, :k], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500k x 128")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--data", choices=["structured", "isotropic"], default="structured")
    ap.add_argument("--kind", choices=["ivf-flat", "ivf-sq8", "ivf-pq"], default="ivf-pq")
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: verikit's choice for n)")
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--recall", type=float, default=0.95)
    ap.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    n = args.n or (500_000 if args.quick else 10_000_000)
    d, k = args.dim, 10
    proc = psutil.Process()
    vectors = memmapped(args.dir / f"verikit-ann-{args.data}-{n}x{d}.f32", args.data, n, d)
    q = make_queries(args.data, args.queries, d, n, 1)
    tune_q, test_q = q[: len(q) // 2], q[len(q) // 2:]

    faiss.omp_set_num_threads(2)
    truth, _ = exact(vectors, q, k, 1_000_000)
    exact_qps = {}
    for threads in (1, 2):  # the page cache is warm now: time the scan itself
        faiss.omp_set_num_threads(threads)
        exact_qps[threads] = len(test_q) / exact(vectors, test_q, k, 1_000_000)[1]
    faiss.omp_set_num_threads(1)
    single = test_q[:20]
    exact_single_qps = len(single) / exact(vectors, single, k, 1_000_000, batched=False)[1]
    print(f"{n:,} x {d} {args.data} (memmap), exact flat scan, queries in one batch: {exact_qps[1]:.1f} q/s on "
          f"1 thread, {exact_qps[2]:.1f} on 2; one query at a time: {exact_single_qps:.2f} q/s on 1 thread",
          flush=True)

    managed = ManagedIndex(d, parse(f"{args.kind},recall={args.recall}"))
    layout = managed.layout_for(n)
    if args.nlist:
        layout = f"IVF{args.nlist}," + layout.split(",", 1)[1]
        if args.kind == "ivf-pq":
            m, bits = pq_shape(d, n)
            layout = f"IVF{args.nlist},PQ{m}x{bits}"
    faiss.omp_set_num_threads(2)
    rss0 = proc.memory_info().rss
    started = time.perf_counter()
    index = faiss.index_factory(d, layout, faiss.METRIC_INNER_PRODUCT)
    want = train_size(layout, n)
    rows = np.sort(np.random.default_rng(0).choice(n, want, replace=False))
    index.train(np.ascontiguousarray(vectors[rows]))
    trained = time.perf_counter() - started
    for s in range(0, n, 500_000):
        index.add(np.ascontiguousarray(vectors[s:s + 500_000]))
    build = time.perf_counter() - started
    rss_added = proc.memory_info().rss - rss0
    print(f"{layout}: trained on {want:,} in {trained:.0f}s, built in {build:.0f}s, resident memory "
          f"+{rss_added / 2**20:.0f} MiB (vectors {n * d * 4 / 2**20:.0f} MiB on disk)", flush=True)

    # verikit's sweep: the cheapest nprobe (then the next shortlist width) meeting the recall
    managed.layout = layout
    ivf = faiss.extract_index_ivf(index)
    chosen = None
    started = time.perf_counter()
    for width in (RERANK_WIDTHS if args.kind != "ivf-flat" else (0,)):
        for value in managed.param_values():
            ivf.nprobe = value
            r = recall_at_k(search(index, vectors, tune_q, k, width), truth[: len(tune_q)])
            if r >= args.recall:
                chosen = (value, width, r)
                break
        if chosen:
            break
    tuned_s = time.perf_counter() - started
    # not met: the largest setting tried, and the recall it reached on the tuning queries
    value, width, tuned_recall = chosen or (managed.param_values()[-1], RERANK_WIDTHS[-1], r)
    ivf.nprobe = value
    found = search(index, vectors, test_q, k, width)
    test_recall = recall_at_k(found, truth[len(tune_q):])
    qps = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        times = []
        for _ in range(2):
            t = time.perf_counter()
            search(index, vectors, test_q, k, width)
            times.append(time.perf_counter() - t)
        qps[threads] = len(test_q) / min(times)
    print(f"  nprobe={value}, shortlist x{width} re-ranked from the memmap: recall {tuned_recall:.3f} on the "
          f"{len(tune_q)} tuning queries (sweep {tuned_s:.0f}s), {test_recall:.3f} on the {len(test_q)} others\n"
          f"  q/s: {qps[1]:.0f} on 1 thread ({qps[1] / exact_qps[1]:.1f}x exact), {qps[2]:.0f} on 2 "
          f"({qps[2] / exact_qps[2]:.1f}x exact)", flush=True)
    out = {"n": n, "dim": d, "data": args.data, "source": "np.memmap float32 on disk", "layout": layout,
           "train_vectors": want, "train_seconds": trained, "build_seconds": build, "rss_added_bytes": rss_added,
           "nprobe": value, "rerank": width, "tuning_recall": tuned_recall, "test_recall": test_recall,
           "met": chosen is not None, "queries": len(q), "exact_qps": exact_qps,
           "exact_one_query_at_a_time_qps_1_thread": exact_single_qps, "qps": qps,
           "vs_exact": {t: qps[t] / exact_qps[t] for t in qps}, "target_recall": args.recall,
           "through": "raw faiss in verikit's layout and sweep (not a Gallery)"}
    RESULTS.mkdir(exist_ok=True)
    size = "10m" if n == 10_000_000 else f"{n // 1000}k"
    path = RESULTS / f"ann-{size}-{args.kind}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
