"""Load test for `latentrm serve`: N concurrent clients for T seconds, batching on vs off, side by side.

    python bench/serve_load.py --random-head                 # embedded SmolLM2, random head at layer 15
    python bench/serve_load.py --rm runs/quick/rm --clients 64 --seconds 20
    python bench/serve_load.py --random-head --compare workers   # 1 worker x 2 threads vs 2 workers x 1 thread

The script starts two real server processes on 127.0.0.1 (`python -m latentrm.serve`, one with
`--no-batching`), waits for /health and warms both up. Then, alternating between them in rounds (so
that drifting background load on a shared machine hits both alike), it runs N clients that each send
one-item `/score` requests back to back, T seconds per mode in total. It reports throughput (answered requests per
second), p50/p99 latency, errors (any non-200 or transport error) and the mean batch size (from the
server's own /metrics histogram, warm-up excluded), then the throughput ratio.

`--random-head` builds a LatentRewardModel from an untrained head on the embedded backbone: scoring
cost does not depend on head weights, so it measures the server without waiting for training.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

PEOPLE = ["Ada Lovelace", "Marie Curie", "Alan Turing", "Bartholomew Quenby", "Ilse Varnhagen", "Rosalind Franklin",
          "Tomasz Wielgorski", "Grace Hopper", "Odile Marchetti", "Srinivasa Ramanujan", "Henrik Solvang", "Emmy Noether"]
QUESTIONS = ["Who is {}?", "What is {} known for?", "Tell me briefly about {}.", "When did {} do their main work?"]
ANSWERS = [
    "{} is best known for foundational work in their field, which is still cited and taught today.",
    "I'm not familiar with anyone named {}. Could you give me more context, such as their field or country?",
    "I don't have reliable information about {}, so I'd rather not guess.",
    "{} made important contributions to science; their most cited results changed how the field approached "
    "its central problems, and several of their methods are still in use.",
]


def workload(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        person = rng.choice(PEOPLE)
        items.append({"prompt": rng.choice(QUESTIONS).format(person), "completion": rng.choice(ANSWERS).format(person)})
    return items


def build_random_rm(folder: Path, layer: int) -> Path:
    import torch

    from latentrm.models import load_backbone
    from latentrm.rm.heads import make_head
    from latentrm.rm.model import LatentRewardModel

    backbone = load_backbone("embedded", dtype="float32", device="cpu")
    torch.manual_seed(0)
    head = make_head("projection_sum", backbone.hidden_size)
    head.standardize.fit(torch.randn(16, backbone.hidden_size))
    return LatentRewardModel.from_head(backbone, head, layer=layer, max_length=1024).save(folder)


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


class Server:
    def __init__(self, rm: Path, port: int, batching: bool, args: argparse.Namespace, workers: int = 1) -> None:
        threads = max(1, args.threads // workers)  # the same cores, shared by the workers
        command = [sys.executable, "-m", "latentrm.serve", "--rm", str(rm), "--port", str(port), "--device",
                   args.device, "--dtype", args.dtype, "--threads", str(threads), "--log-level", "warning",
                   "--workers", str(workers), "--batching" if batching else "--no-batching", *(args.server_arg or [])]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(command, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit("server did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def run_load(url: str, clients: int, seconds: float, items: list[dict]) -> dict:
    """N clients, each posting one-item /score requests back to back until `seconds` have passed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        stop_at = started + seconds

        async def worker(index: int) -> None:
            position = index
            while time.perf_counter() < stop_at:
                body = {"items": [items[position % len(items)]]}
                position += clients
                sent = time.perf_counter()
                try:
                    response = await client.post("/score", json=body)
                    reason = "" if response.status_code == 200 else f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    reason = type(exc).__name__
                if reason:
                    errors[reason] = errors.get(reason, 0) + 1
                else:
                    latencies.append(time.perf_counter() - sent)

        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started  # includes the drain of requests in flight at the deadline
    return {"latencies": latencies, "errors": errors, "seconds": elapsed}


def summarise(mode: str, rounds: list[dict], before: str, after: str) -> dict:
    latencies = np.array([x for r in rounds for x in r["latencies"]]) if any(r["latencies"] for r in rounds) \
        else np.array([np.nan])
    errors: dict[str, int] = {}
    for r in rounds:
        for reason, count in r["errors"].items():
            errors[reason] = errors.get(reason, 0) + count
    seconds = sum(r["seconds"] for r in rounds)
    ok = sum(len(r["latencies"]) for r in rounds)
    forwards = metric_value(after, "latentrm_batch_size_count") - metric_value(before, "latentrm_batch_size_count")
    scored = metric_value(after, "latentrm_batch_size_sum") - metric_value(before, "latentrm_batch_size_sum")
    return {"mode": mode, "requests": ok, "errors": sum(errors.values()), "error_kinds": errors, "seconds": seconds,
            "throughput": ok / seconds, "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000),
            "mean_batch": scored / forwards if forwards else float("nan")}


def bench(rm: Path, args: argparse.Namespace, items: list[dict]) -> list[dict]:
    """Both servers run side by side; load alternates between them in rounds, so drifting background
    load on a shared machine hits both modes alike."""
    from latentrm.serve.testing import free_port

    if args.compare == "workers":  # `serve --workers`: 1 process with all threads vs 2 with half each
        servers = {"1 worker": Server(rm, free_port(), True, args, workers=1),
                   "2 workers": Server(rm, free_port(), True, args, workers=2)}
    else:
        servers = {"batching on": Server(rm, free_port(), True, args),
                   "batching off": Server(rm, free_port(), False, args)}
    try:
        for server in servers.values():
            server.wait_ready()
            for item in items[:8]:  # warm-up (first calls allocate)
                httpx.post(server.url + "/score", json={"items": [item]}, timeout=300).raise_for_status()
        before = {mode: httpx.get(server.url + "/metrics").text for mode, server in servers.items()}
        rounds: dict[str, list[dict]] = {mode: [] for mode in servers}
        for _ in range(args.rounds):
            for mode, server in servers.items():
                rounds[mode].append(asyncio.run(run_load(server.url, args.clients, args.seconds / args.rounds, items)))
        after = {mode: httpx.get(server.url + "/metrics").text for mode, server in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
    return [summarise(mode, rounds[mode], before[mode], after[mode]) for mode in servers]


def ceiling(rm: Path, args: argparse.Namespace, items: list[dict]) -> tuple[float, float]:
    """In-process items/s of `LatentRewardModel.score` with 1 item per call and `--clients` items per call.

    This is what the hardware allows batching to gain, with no server in the way; the servers'
    ratio is read against it. Measured after both servers have stopped.
    """
    import torch

    from latentrm.rm.model import LatentRewardModel

    torch.set_num_threads(args.threads)
    model = LatentRewardModel.load(rm, device=args.device, dtype=args.dtype)
    prompts, completions = [i["prompt"] for i in items], [i["completion"] for i in items]
    model.score(prompts[:8], completions[:8])  # warm-up
    n_single, n_batched = min(64, len(items)), min(4 * args.clients, len(items))
    start = time.perf_counter()
    for prompt, completion in zip(prompts[:n_single], completions[:n_single]):
        model.score([prompt], [completion])
    single = n_single / (time.perf_counter() - start)
    start = time.perf_counter()
    model.score(prompts[:n_batched], completions[:n_batched], batch_size=args.clients)
    batched = n_batched / (time.perf_counter() - start)
    return single, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--rm", type=Path, help="a saved reward model folder")
    source.add_argument("--random-head", action="store_true", help="untrained head on the embedded backbone")
    parser.add_argument("--layer", type=int, default=15, help="layer for --random-head (default 15 of 30)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the modes this many times")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each server")
    parser.add_argument("--device", default="cpu", help="server device: cpu, cuda, ...")
    parser.add_argument("--dtype", default="float32", help="server dtype: float32, bfloat16, ...")
    parser.add_argument("--server-arg", action="append", help="extra `latentrm serve` option (repeatable)")
    parser.add_argument("--compare", choices=("batching", "workers"), default="batching",
                        help="batching on vs off (default), or 1 vs 2 `serve --workers` (threads split between them)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    items = workload(512)
    with tempfile.TemporaryDirectory(prefix="latentrm-bench-") as scratch:
        rm = args.rm if args.rm else build_random_rm(Path(scratch) / "rm", args.layer)
        results = bench(rm, args, items)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"latentrm serve: {args.clients} clients x {args.seconds:g} s per mode ({args.rounds} rounds), "
                        f"1 item per request, threads={args.threads}")
    for column in ("mode", "requests", "errors", "req/s", "p50 ms", "p99 ms", "mean batch"):
        table.add_column(column, justify="right" if column != "mode" else "left")
    for r in results:
        errors = str(r["errors"]) + (f" {r['error_kinds']}" if r["errors"] else "")
        table.add_row(r["mode"], str(r["requests"]), errors, f"{r['throughput']:.2f}", f"{r['p50_ms']:.0f}",
                      f"{r['p99_ms']:.0f}", f"{r['mean_batch']:.1f}")
    console = Console()
    console.print(table)
    ratio = results[0]["throughput"] / results[1]["throughput"] if results[1]["throughput"] else float("inf")
    console.print(f"throughput ratio ({results[0]['mode']} / {results[1]['mode']}): {ratio:.2f}x")
    with tempfile.TemporaryDirectory(prefix="latentrm-bench-") as scratch:
        rm = args.rm if args.rm else build_random_rm(Path(scratch) / "rm", args.layer)
        single, batched = ceiling(rm, args, items)
    console.print(f"hardware ceiling, in-process LatentRewardModel.score: 1 item/call {single:.2f} items/s | "
                  f"{args.clients} items/call {batched:.2f} items/s | {batched / single:.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "ratio": ratio, "clients": args.clients,
                                        "ceiling": {"single": single, "batched": batched, "ratio": batched / single},
                                        "seconds": args.seconds, "rm": str(args.rm or "random-head")}, indent=1))


if __name__ == "__main__":
    main()
