"""Approximate 1:N search (issue 12): verikit's managed indexes against exact flat search and raw
faiss with the same parameters, in one run.

For each managed spec (``faiss:ivf-flat``, ``faiss:ivf-sq8``, ``faiss:ivf-pq``, optionally
``faiss:hnsw``) at the target recall:

* the gallery is built through ``Gallery.add_many`` (SQLite inserts, training and recall tuning
  included in the build time, all done by the gallery itself);
* its queries/s and measured 10-recall@10 on fresh queries (never in the gallery; truth from
  exact search), against exact ``faiss.IndexFlatIP`` queries/s (target: >= 20x);
* raw faiss with the same layout, training size and nprobe/efSearch (and, for quantised layouts,
  the same widened shortlist re-ranked exactly from in-memory vectors): queries/s ratio target
  >= 0.9, same recall; batched (all queries in one call) and one query per call (the serving case);
* resident memory a fresh process adds by opening the gallery and answering one search, against
  one that reads the raw faiss index.

Data (``--data``, :mod:`ann_data`): ``structured`` (the default: identities of 5 templates each
whose centres lie near a 32-dimensional subspace, the shape of real face embeddings, checked
against real descriptors by ``bench_ann_data.py``) or ``isotropic`` (random centres on the
sphere: no neighbourhood structure any index can use; the hardest case). Queries are fresh
templates (never in the gallery) of enrolled identities.

By default the gallery is exact until its last batch (``min`` = n, a bulk load: trained and tuned
once at the full size, as raw faiss is); ``--min`` sets another size, and the gallery then also
retrains at each 4x growth on the way. HNSW rows compare with raw faiss reading the gallery's own
saved index (an HNSW graph is not rebuilt twice; its raw build time is not measured).

Run: ``.venv/bin/python benchmarks/bench_ann.py`` (1M x 256; tens of minutes and ~8 GB RAM on
2 cores), ``--quick`` (50k x 64, a minute). Add ``--specs hnsw`` etc. to choose. Results are
printed and written to ``benchmarks/results/ann-<data>.json`` (``ann-quick-<data>.json`` with
--quick). Where ``faiss.get_num_gpus() > 0`` the raw faiss and gallery rows are repeated on the GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import faiss
import numpy as np

from verikit.index.gallery import INDEX_FILE, Gallery

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann_data import make, make_queries  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / len(t) for f, t in zip(found, truth)]))


REOPEN_GALLERY = textwrap.dedent("""
    import json, sys, time, psutil, numpy as np
    from verikit.index.gallery import Gallery
    q = np.load(sys.argv[1])[:1]
    proc = psutil.Process(); rss0 = proc.memory_info().rss; t = time.perf_counter()
    g = Gallery.open(sys.argv[2]); g.search(q, 10)
    print(json.dumps({"seconds": time.perf_counter() - t, "rss_added": proc.memory_info().rss - rss0,
                      "rebuilt": g._index.rebuilds}))
""")
REOPEN_FAISS = textwrap.dedent("""
    import json, sys, time, psutil, numpy as np, faiss
    q = np.load(sys.argv[1])[:1]
    proc = psutil.Process(); rss0 = proc.memory_info().rss; t = time.perf_counter()
    index = faiss.read_index(sys.argv[2]); index.search(q, 10)
    print(json.dumps({"seconds": time.perf_counter() - t, "rss_added": proc.memory_info().rss - rss0}))
""")


def fresh(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def raw_same_parameters(tuning: dict, vectors: np.ndarray, train_n: int, seed: int):
    """Raw faiss with the gallery's layout, training-sample size and search parameter."""
    layout = tuning["layout"]
    index = faiss.index_factory(vectors.shape[1], layout, faiss.METRIC_INNER_PRODUCT)
    t = time.perf_counter()
    if not index.is_trained:
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), train_n, replace=False)]
        index.train(sample)
    index.add(vectors)
    build = time.perf_counter() - t
    if layout.startswith("HNSW"):
        index.hnsw.efSearch = tuning["value"]
    elif layout != "Flat":  # Flat: auto fell back to exact search
        faiss.extract_index_ivf(index).nprobe = tuning["value"]
    return index, build


def raw_search(index, vectors: np.ndarray, q: np.ndarray, k: int, width: int) -> np.ndarray:
    if not width:
        return index.search(q, k)[1]
    _, ids = index.search(q, k * width)  # the same widened shortlist, re-ranked exactly
    exact = np.einsum("qd,qsd->qs", q, vectors[np.maximum(ids, 0)])
    exact[ids < 0] = -np.inf
    order = np.argsort(-exact, axis=1)[:, :k]
    return np.take_along_axis(ids, order, 1)


def train_size(layout: str, n: int) -> int:
    if not layout.startswith("IVF"):
        return 0
    nlist = int(layout[3:].split(",")[0])
    want = 64 * nlist
    if "PQ" in layout:
        want = max(want, 256 * 39 if layout.endswith("x8") else 16 * 39)
    return min(n, want)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50k x 64: check that it works")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--dim", type=int, default=None)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--recall", type=float, default=0.95)
    ap.add_argument("--specs", nargs="+", default=["ivf-flat", "ivf-sq8", "ivf-pq"],
                    help="managed kinds to run (ivf-flat ivf-sq8 ivf-pq hnsw)")
    ap.add_argument("--data", choices=["structured", "isotropic"], default="structured")
    ap.add_argument("--min", type=int, default=None,
                    help="the gallery's min (size at which it trains); default n: a bulk load, trained once")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    args.n = args.n or (50_000 if args.quick else 1_000_000)
    args.dim = args.dim or (64 if args.quick else 256)
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="verikit-ann-") as tmp:
            run(args, Path(tmp))
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)


def run(args: argparse.Namespace, work: Path) -> None:
    k, n, d = 10, args.n, args.dim
    print(f"{n:,} x {d} {args.data} unit vectors, {args.queries} fresh queries, 10-recall@10 target "
          f"{args.recall}; GPUs: {faiss.get_num_gpus()}; work dir {work}", flush=True)
    vectors = make(args.data, n, d, 0)
    queries = make_queries(args.data, args.queries, d, n, 1)
    np.save(work / "queries.npy", queries)

    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    truth = flat.search(queries, k)[1]
    exact_qps = {}
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        exact_qps[threads] = args.queries / best_of(lambda: flat.search(queries, k), 2)
    del flat
    print(f"exact flat (raw faiss IndexFlatIP): {exact_qps[1]:.0f} q/s on 1 thread, {exact_qps[2]:.0f} on 2",
          flush=True)

    rows = []
    for kind in args.specs:
        spec = f"faiss:{kind},recall={args.recall},min={args.min or n}"
        path = work / kind
        t = time.perf_counter()
        with Gallery.create(path, dim=d, fingerprint="benchmark", index=spec) as g:
            for s in range(0, n, 100_000):
                g.add_many({f"{i}": (vectors[i:i + 1], None) for i in range(s, min(n, s + 100_000))})
            build_s = time.perf_counter() - t
            tuning = g.info()["approximate"]
        if tuning.get("fallback"):  # auto measured the approximate layout as not worth it: exact search
            print(f"{spec}: built in {build_s:.0f}s; fell back to exact search: {tuning['reason']}", flush=True)
            tuning = {**tuning, "param": None, "value": None, "rerank": 0}
        print(f"{spec}: built in {build_s:.0f}s, layout {tuning['layout']}, {tuning['param']}={tuning['value']}, "
              f"rerank x{tuning['rerank']}, measured recall {tuning['recall']} on {tuning['queries']} held-out",
              flush=True)
        if tuning["layout"].startswith("HNSW"):  # the gallery's own graph, read by raw faiss
            raw, raw_build = faiss.read_index(str(path / INDEX_FILE)), None
            faiss.downcast_index(faiss.downcast_index(raw).index).hnsw.efSearch = tuning["value"]
            with Gallery.open(path) as g:  # its ids are the templates' row ids: map them to vector rows
                first = int(g._conn.execute("SELECT MIN(id) FROM templates").fetchone()[0])
        else:
            raw, raw_build = raw_same_parameters(tuning, vectors, train_size(tuning["layout"], n), 0)
        faiss.write_index(raw, str(work / "raw.faiss"))
        row = {"spec": spec, "layout": tuning["layout"], "param": tuning["param"], "value": tuning["value"],
               "rerank": tuning["rerank"], "gallery_build_seconds": build_s, "raw_build_seconds": raw_build,
               "tuned_recall": tuning["recall"], "tuned_speedup": tuning.get("speedup"),
               "fallback": tuning.get("reason"), "tried": tuning.get("tried"), "threads": {}}
        with Gallery.open(path) as g:
            for threads in (1, 2):
                faiss.omp_set_num_threads(threads)
                gal_s = best_of(lambda: g.search(queries, k), 2)
                raw_s = best_of(lambda: raw_search(raw, vectors, queries, k, tuning["rerank"]), 2)
                row["threads"][threads] = {"gallery_qps": args.queries / gal_s, "raw_qps": args.queries / raw_s,
                                           "gallery_vs_raw": raw_s / gal_s,
                                           "gallery_vs_exact": args.queries / gal_s / exact_qps[threads]}
            faiss.omp_set_num_threads(1)  # one query per call, as a server answers them (the first 200)
            few = queries[:200]
            one = lambda fn: sum(best_of(lambda: fn(few[i:i + 1]), 1) for i in range(len(few)))  # noqa: E731
            gal_1 = min(one(lambda x: g.search(x, k)) for _ in range(2))
            raw_1 = min(one(lambda x: raw_search(raw, vectors, x, k, tuning["rerank"])) for _ in range(2))
            row["one_query_per_call"] = {"gallery_qps": len(few) / gal_1, "raw_qps": len(few) / raw_1,
                                         "gallery_vs_raw": raw_1 / gal_1}
            found = np.array([[int(h.identity) for h in hits] + [-1] * (k - len(hits)) for hits in g.search(queries, k)])
        row["gallery_recall"] = recall(found, truth)
        raw_found = raw_search(raw, vectors, queries, k, tuning["rerank"])
        row["raw_recall"] = recall(raw_found - (first if raw_build is None else 0), truth)
        if faiss.get_num_gpus() > 0:  # the same layout on the GPU: raw, and the gallery (it moves itself)
            gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, raw)
            row["gpu_raw_qps"] = args.queries / best_of(lambda: raw_search(gpu, vectors, queries, k, tuning["rerank"]), 2)
        del raw
        faiss.omp_set_num_threads(2)
        g_open = fresh(REOPEN_GALLERY, str(work / "queries.npy"), str(path))
        r_open = fresh(REOPEN_FAISS, str(work / "queries.npy"), str(work / "raw.faiss"))
        row.update({"gallery_reopen_seconds": g_open["seconds"], "gallery_rss_added_bytes": g_open["rss_added"],
                    "raw_reopen_seconds": r_open["seconds"], "raw_rss_added_bytes": r_open["rss_added"],
                    "reopen_rebuilt": g_open["rebuilt"], "index_file_bytes": (path / INDEX_FILE).stat().st_size})
        rows.append(row)
        shutil.rmtree(path)
        t1, t2 = row["threads"][1], row["threads"][2]
        print(f"  recall on fresh queries: gallery {row['gallery_recall']:.3f}, raw {row['raw_recall']:.3f}\n"
              f"  q/s 1 thread: gallery {t1['gallery_qps']:.0f}, raw {t1['raw_qps']:.0f} (ratio {t1['gallery_vs_raw']:.2f},"
              f" target >= 0.9), {t1['gallery_vs_exact']:.1f}x exact flat (target >= 20)\n"
              f"  q/s 2 threads: gallery {t2['gallery_qps']:.0f}, raw {t2['raw_qps']:.0f} (ratio {t2['gallery_vs_raw']:.2f}),"
              f" {t2['gallery_vs_exact']:.1f}x exact flat\n"
              f"  one query per call, 1 thread: gallery {row['one_query_per_call']['gallery_qps']:.0f}, raw "
              f"{row['one_query_per_call']['raw_qps']:.0f} q/s (ratio {row['one_query_per_call']['gallery_vs_raw']:.2f})\n"
              f"  build: gallery {build_s:.0f}s (SQLite + training + tuning) vs raw train+add "
              f"{'(not rebuilt)' if raw_build is None else f'{raw_build:.0f}s'}\n"
              f"  resident memory of a fresh open + 1 search: gallery {g_open['rss_added'] / 2**20:.0f} MiB, raw "
              f"{r_open['rss_added'] / 2**20:.0f} MiB (vectors: {n * d * 4 / 2**20:.0f} MiB); reopen "
              f"{g_open['seconds']:.2f}s vs {r_open['seconds']:.2f}s" +
              (f"\n  GPU raw q/s: {row['gpu_raw_qps']:.0f}" if "gpu_raw_qps" in row else ""), flush=True)

        write(args, n, d, k, exact_qps, rows)  # after every kind: a long run cut short keeps its rows
    print(f"written {write(args, n, d, k, exact_qps, rows)}")


def write(args: argparse.Namespace, n: int, d: int, k: int, exact_qps: dict, rows: list) -> Path:
    result = {"n": n, "dim": d, "data": args.data, "min": args.min or n, "queries": args.queries, "k": k, "target_recall": args.recall,
              "exact_flat_qps": exact_qps, "gpus": faiss.get_num_gpus(), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (("ann-quick" if args.quick else "ann") + f"-{args.data}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
