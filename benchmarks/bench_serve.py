"""verikit serve: verify latency through the server against one `verikit verify` command, and
throughput at 16 concurrent clients with micro-batching against batch size 1, in one run.

A real model is trained first (`verikit train` on ORL s1-s25, calibrated on s26-s30 with
`verikit calibrate`), s31-s40 are enrolled (images 1-5) and their images 6-10 are the probes.

* latency: one client, one verify at a time, through a server with micro-batching on (p50, p99),
  against the wall time of `verikit verify` commands (process start, torch import, model load,
  one forward): target server >= 50x faster per request;
* throughput: 16 clients, each sending verify requests back to back, against a server with
  `--max-batch 32` and then one with `--max-batch 1` on the same gallery: target >= 2x;
* what the bare network alone gains from batching: its time per image at batch size 1 against at
  the batch size the server reached (its own metrics), timed in the same run. On a CPU this is
  small; the server can gain somewhat more, since each forward call also has fixed costs (thread
  hand-offs, Python per layer) that a batch shares.

Both servers and the CLI run on this machine as separate processes (the clients too, on asyncio in
this process). Prints ratios and writes benchmarks/results/serve.json.

Run: ``.venv/bin/python benchmarks/bench_serve.py`` (full: 300 latency requests, 960 throughput
requests, 6 epochs of training), or ``--quick`` to check that it works.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

# The servers run through the CLI, which lets idle OpenMP threads sleep; the bare network timed
# in this process must run the same way (set before torch is imported, in forward_ceiling).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
ORL = REPO / "data" / "orl_faces"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def verikit(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "verikit.cli.main", *args], capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        raise SystemExit(f"verikit {' '.join(args)} failed:\n{r.stderr}")
    return r


def people(work: Path, names: list[str], images: list[int], folder: str) -> Path:
    root = work / folder
    for n in names:
        (root / n).mkdir(parents=True)
        for k in images:
            shutil.copy(ORL / n / f"{k}.pgm", root / n / f"{k}.pgm")
    return root


def prepare(work: Path, epochs: int, backbone: str, size: int,
            trained: Path | None) -> tuple[Path, Path, list[tuple[Path, str]]]:
    val = people(work, [f"s{i}" for i in range(26, 31)], list(range(1, 11)), "val")
    enroll = people(work, [f"s{i}" for i in range(31, 41)], list(range(1, 6)), "enroll")
    model, gallery = work / "model", work / "gallery"
    if trained is not None:  # a model trained earlier (e.g. by a previous run with --keep-model)
        shutil.copytree(trained, model)
    else:
        train = people(work, [f"s{i}" for i in range(1, 26)], list(range(1, 11)), "train")
        t = time.perf_counter()
        verikit("train", str(train), "--out", str(model), "--backbone", backbone, "--image-size", str(size),
                "--channels", "1", "--epochs", str(epochs), "--val-fraction", "0", "--quiet", "--device", "cpu")
        print(f"trained {backbone} at {size} px for {epochs} epoch(s) in {time.perf_counter() - t:.0f} s", flush=True)
    verikit("calibrate", str(val), "--model", str(model), "--target-fmr", "0.01", "--quiet", "--device", "cpu")
    verikit("enroll", "--from-folder", str(enroll), "--model", str(model), "--gallery", str(gallery), "--quiet",
            "--device", "cpu")
    probes = [(ORL / f"s{i}" / f"{k}.pgm", f"s{i}") for i in range(31, 41) for k in range(6, 11)]
    return model, gallery, probes


class Server:
    """`verikit serve` as a subprocess; ready when it prints its listening line."""

    def __init__(self, gallery: Path, *extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "verikit.cli.main", "serve", "-g", str(gallery),
                                      "--port", "0", "--device", "cpu", *extra],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=ENV)
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise SystemExit(f"the server exited ({self.proc.wait()}) before listening")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # keep draining

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(120)


def cli_verify_seconds(gallery: Path, probes: list[tuple[Path, str]], runs: int) -> list[float]:
    out = []
    for path, claim in probes[:runs]:
        t = time.perf_counter()
        verikit("verify", str(path), "--claim", claim, "-g", str(gallery), "-f", "json", "--device", "cpu")
        out.append(time.perf_counter() - t)
    return out


def startup_breakdown(model: Path, runs: int) -> dict[str, float]:
    """Where a `verikit verify` command's time goes: a bare interpreter, importing torch, and
    importing torch plus loading the model (each a fresh process, median of ``runs``)."""
    def seconds(code: str) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=ENV)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    return {"python_s": seconds("pass"), "import_torch_s": seconds("import torch"),
            "import_and_load_model_s": seconds(f"from verikit.models.embedder import Embedder; "
                                               f"Embedder.load({str(model)!r}, device='cpu')")}


async def _verify(client: httpx.AsyncClient, path: Path, claim: str, payload: dict[Path, bytes]) -> float:
    t = time.perf_counter()
    r = await client.post("/v1/verify", files={"image": (path.name, payload[path])}, data={"claim": claim})
    if r.status_code != 200:
        raise SystemExit(f"verify failed: {r.status_code} {r.text}")
    return time.perf_counter() - t


async def sequential_latencies(url: str, probes: list[tuple[Path, str]], n: int) -> list[float]:
    payload = {p: p.read_bytes() for p, _ in probes}
    async with httpx.AsyncClient(base_url=url, timeout=300) as c:
        for p, claim in probes[:5]:  # warm-up
            await _verify(c, p, claim, payload)
        return [await _verify(c, *probes[i % len(probes)], payload) for i in range(n)]


async def throughput(url: str, probes: list[tuple[Path, str]], clients: int, per_client: int) -> float:
    payload = {p: p.read_bytes() for p, _ in probes}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
        await asyncio.gather(*(_verify(c, p, claim, payload) for p, claim in probes[:clients]))  # warm-up

        async def one(k: int) -> None:
            for j in range(per_client):
                await _verify(c, *probes[(k * per_client + j) % len(probes)], payload)
        t = time.perf_counter()
        await asyncio.gather(*(one(k) for k in range(clients)))
        return clients * per_client / (time.perf_counter() - t)


async def batch_counts(url: str) -> tuple[float, float]:
    """(images, forward passes) so far, from the server's own Prometheus metrics."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        text = (await c.get("/metrics")).text
    values = dict(line.split(" ", 1) for line in text.splitlines() if line.startswith("verikit_batch_images_"))
    return float(values["verikit_batch_images_sum"]), float(values["verikit_batch_images_count"])


def forward_ceiling(model: Path, batch: int, seconds: float = 3.0) -> dict[str, float]:
    """What the bare network alone gains from batching on this CPU: its time per image at batch
    size 1 against at the batch size the server reached (same threads as the server: torch's
    default). Not a strict bound on the server's ratio: a forward call through the server also has
    fixed costs (thread hand-offs, Python per layer) that batching shares."""
    import torch

    from verikit.models.embedder import Embedder

    net = Embedder.load(str(model), device="cpu").eval()
    spec = net.input_spec
    per_image = {}
    for bs in sorted({1, batch}):
        x = torch.randn(bs, spec.channels, *spec.size)
        with torch.inference_mode():
            for _ in range(3):
                net(x)
            n, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds:
                net(x)
                n += 1
        per_image[bs] = (time.perf_counter() - t) / (n * bs)
    return {"batch": batch, "ms_per_image_batch_1": per_image[1] * 1e3,
            "ms_per_image_batched": per_image[batch] * 1e3, "ratio": per_image[1] / per_image[batch],
            "threads": torch.get_num_threads()}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: check that it works")
    ap.add_argument("--backbone", default="timm:resnet18")
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--epochs", type=int, help="training epochs (default 1 with --quick, else 6)")
    ap.add_argument("--model", type=Path, help="use this trained model (trained on ORL s1-s25 only!) instead of "
                                               "training one")
    ap.add_argument("--keep-model", type=Path, help="copy the trained model here, for --model next time")
    args = ap.parse_args()
    epochs, latency_n, per_client, cli_runs = (1, 40, 4, 2) if args.quick else (6, 300, 60, 5)
    epochs = args.epochs or epochs
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model, gallery, probes = prepare(Path(tmp), epochs, args.backbone, args.image_size, args.model)
        if args.keep_model is not None and args.model is None:
            shutil.copytree(model, args.keep_model, dirs_exist_ok=True)
        cli = cli_verify_seconds(gallery, probes, cli_runs)
        print(f"verikit verify (whole command): median {statistics.median(cli):.2f} s over {len(cli)} runs", flush=True)
        breakdown = startup_breakdown(model, cli_runs)
        print("of which: " + ", ".join(f"{k} {v:.2f}" for k, v in breakdown.items()), flush=True)
        batched = Server(gallery, "--max-batch", "32", "--max-wait-ms", str(args.max_wait_ms))
        try:
            lat = asyncio.run(sequential_latencies(batched.url, probes, latency_n))
            before = asyncio.run(batch_counts(batched.url))
            tput_batched = asyncio.run(throughput(batched.url, probes, args.clients, per_client))
            after = asyncio.run(batch_counts(batched.url))  # the throughput run's batches only (warm-up included)
            batch = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        finally:
            batched.stop()
        single = Server(gallery, "--max-batch", "1")
        try:
            tput_single = asyncio.run(throughput(single.url, probes, args.clients, per_client))
        finally:
            single.stop()
        ceiling = forward_ceiling(model, max(1, round(batch)))
    p50, p99 = pct(lat, 50), pct(lat, 99)
    result = {
        "model": {"backbone": args.backbone, "image_size": args.image_size, "channels": 1,
                  "epochs": None if args.model else epochs, "reused": str(args.model) if args.model else None,
                  "trained_on": "ORL s1-s25", "calibrated_on": "ORL s26-s30", "gallery": "ORL s31-s40, images 1-5",
                  "probes": "ORL s31-s40, images 6-10"},
        "quick": args.quick, "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "cli_verify_seconds": {"median": statistics.median(cli), "runs": cli, "breakdown": breakdown},
        "server_verify_latency_ms": {"p50": p50 * 1e3, "p99": p99 * 1e3, "mean": statistics.mean(lat) * 1e3,
                                     "requests": len(lat)},
        "latency_ratio_cli_over_server_p50": statistics.median(cli) / p50,
        "throughput_rps": {"clients": args.clients, "requests": args.clients * per_client,
                           "micro_batching": tput_batched, "batch_size_1": tput_single,
                           "max_batch": 32, "max_wait_ms": args.max_wait_ms,
                           "mean_images_per_forward": batch},
        "throughput_ratio": tput_batched / tput_single,
        "forward_ceiling": ceiling,
        "targets": {"latency_ratio": 50, "throughput_ratio": 2},
    }
    print(f"server verify latency: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms over {len(lat)} requests -> "
          f"{result['latency_ratio_cli_over_server_p50']:.0f}x faster than one `verikit verify` (target >= 50x)")
    print(f"throughput at {args.clients} clients: micro-batching {tput_batched:.1f} req/s, batch size 1 "
          f"{tput_single:.1f} req/s -> {result['throughput_ratio']:.2f}x (target >= 2x); "
          f"{batch:.1f} images per forward on average")
    print(f"the bare network alone: {ceiling['ms_per_image_batch_1']:.1f} ms per image at batch 1, "
          f"{ceiling['ms_per_image_batched']:.1f} ms at batch {ceiling['batch']} ({ceiling['threads']} threads) -> "
          f"{ceiling['ratio']:.2f}x from batching (the server also shares each forward call's fixed costs)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("serve_quick.json" if args.quick else "serve.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
