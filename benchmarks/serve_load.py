"""Load test of ``elmo-fast serve`` on loopback: throughput and latency per number of concurrent clients.

    python benchmarks/serve_load.py [--models bundled,original] [--concurrency 1,4,16,64]
                                    [--requests-per-client 2] [--min-requests 16] [--level-seconds 120]
                                    [--rounds 2] [--out FILE]

Per model (``bundled``: the default model shipped in the package; ``original``: a random-weight model
of the original ELMo size, P=512, C=4096, written by ``cases.model_files``), the same pool of
seeded ~20-token sentences (``cases.sentences``) is embedded three ways:

* ``sequential``: this process, ``ElmoEmbedder.embed_sentence`` per sentence, one after another
  (the first ``--sequential-sentences`` of the pool, in one worker thread like the server's model,
  after an untimed pass);
* ``batched``: an ``elmo-fast serve`` subprocess with the default batching (``--max-batch-tokens
  2048 --max-wait-ms 5``), C clients each sending one-sentence requests back to back;
* ``unbatched``: the same server with ``--max-batch-tokens 1``, so every sentence is a forward of
  its own (the control: same HTTP path, no batching).

Each concurrency level sends ``max(min_requests, C * requests_per_client)`` requests (binary
``Accept: application/x-npy`` answers, so JSON encoding does not hide the model) and stops issuing
new ones after ``--level-seconds``. Both servers run side by side and the levels are interleaved
(round by round, batched then unbatched at each level); the summary takes medians over rounds. Latency is per request, client side. The clients run as asyncio
tasks in this process, on the same machine as the server: they take CPU from it. Load averages
before and after each model go into the JSON: this machine is shared and the numbers are noisy.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
from run import RESULTS_DIR, machine_info  # noqa: E402

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.default_model import default_model_files  # noqa: E402

SCHEMA = 1
MODES = {"batched": [], "unbatched": ["--max-batch-tokens", "1"]}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def sequential(options: Path, weights: Path, pool: list[list[str]]) -> dict:
    """The baseline: every sentence through ``embed_sentence`` in turn, after one untimed pass.

    It runs in one worker thread, as the server's model does: on this machine (2 cores, loaded) the
    main thread with 2 intra-op threads measured 10-30x slower for the bundled model than a worker
    thread, which would flatter the server. The untimed pass fills the token cache, as the repeated
    pool fills the servers' caches.
    """
    embedder = ElmoEmbedder(options, weights, state="zero")

    def one_pass() -> float:
        start = time.perf_counter()
        for sentence in pool:
            embedder.embed_sentence(sentence)
        return time.perf_counter() - start

    with ThreadPoolExecutor(1) as worker:
        worker.submit(one_pass).result()
        seconds = worker.submit(one_pass).result()
    tokens = sum(len(s) for s in pool)
    return {"sentences": len(pool), "tokens": tokens, "seconds": round(seconds, 3), "thread": "worker",
            "sentences_per_s": round(len(pool) / seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


class Server:
    """An ``elmo-fast serve`` subprocess on a free loopback port."""

    def __init__(self, options: Path, weights: Path, extra: list[str]) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "elmo_fast", "serve", "--options", str(options), "--weights", str(weights),
                   "--port", str(self.port), "--max-request-sentences", "64", "--log-level", "warning", *extra]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout_s: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("server did not come up")

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(120)


async def _load(url: str, pool: list[list[str]], clients: int, requests: int, limit_s: float) -> dict:
    import httpx

    latencies: list[float] = []
    sent = 0
    errors = 0
    deadline = time.perf_counter() + limit_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent, errors
        while sent < requests and time.perf_counter() < deadline:
            sentence = pool[sent % len(pool)]
            sent += 1
            start = time.perf_counter()
            response = await http.post("/embed", json={"sentences": [sentence]}, headers={"accept": "application/x-npy"})
            latencies.append(time.perf_counter() - start)
            errors += response.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - start
    done = len(latencies)
    tokens = sum(len(pool[i % len(pool)]) for i in range(done))
    return {"requests": done, "errors": errors, "seconds": round(seconds, 3),
            "sentences_per_s": round(done / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "p50_ms": round(1000 * _percentile(latencies, 50), 1), "p99_ms": round(1000 * _percentile(latencies, 99), 1)}


def measure(server: Server, mode: str, pool: list[list[str]], clients: int, args: argparse.Namespace) -> dict:
    """One concurrency level against one server; forwards and mean batch size from its /metrics."""
    import httpx

    requests = max(args.min_requests, clients * args.requests_per_client)
    before = httpx.get(server.url + "/metrics").text
    row = asyncio.run(_load(server.url, pool, clients, requests, args.level_seconds))
    after = httpx.get(server.url + "/metrics").text
    forwards = _metric(after, "elmo_serve_batch_sentences_count") - _metric(before, "elmo_serve_batch_sentences_count")
    embedded = _metric(after, "elmo_serve_sentences_total") - _metric(before, "elmo_serve_sentences_total")
    return {"mode": mode, "concurrency": clients, **row, "forwards": int(forwards),
            "mean_batch_sentences": round(embedded / forwards, 2) if forwards else None}


def run_servers(options: Path, weights: Path, pool: list[list[str]], args: argparse.Namespace) -> list[dict]:
    """A batched and an unbatched server side by side; rounds x levels x modes, interleaved."""
    servers = {mode: Server(options, weights, extra) for mode, extra in MODES.items()}
    rows = []
    try:
        for server in servers.values():
            server.wait_ready()
        for round_ in range(args.rounds):
            for clients in args.concurrency:
                for mode, server in servers.items():
                    row = {"round": round_, **measure(server, mode, pool, clients, args)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    finally:
        for mode, server in servers.items():
            if (status := server.stop()) != 0:
                print(f"{mode} server exit status {status}", file=sys.stderr)
    return rows


def gains(rows: list[dict], base: dict) -> list[dict]:
    """Per concurrency, medians over rounds: throughput, latency, batched over unbatched and over sequential."""
    def median(mode: str, clients: int, key: str) -> float:
        return float(np.median([r[key] for r in rows if r["mode"] == mode and r["concurrency"] == clients]))

    out = []
    for clients in sorted({r["concurrency"] for r in rows}):
        batched, unbatched = median("batched", clients, "sentences_per_s"), median("unbatched", clients, "sentences_per_s")
        out.append({"concurrency": clients, "batched_sentences_per_s": batched, "unbatched_sentences_per_s": unbatched,
                    "batched_p50_ms": median("batched", clients, "p50_ms"), "batched_p99_ms": median("batched", clients, "p99_ms"),
                    "unbatched_p50_ms": median("unbatched", clients, "p50_ms"), "unbatched_p99_ms": median("unbatched", clients, "p99_ms"),
                    "batched_over_unbatched": round(batched / unbatched, 2),
                    "batched_over_sequential": round(batched / base["sentences_per_s"], 2)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bundled,original", help="comma list of bundled, original")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma list of concurrent clients")
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--sequential-sentences", type=int, default=32, help="sentences of the in-process baseline")
    parser.add_argument("--min-requests", type=int, default=16)
    parser.add_argument("--level-seconds", type=float, default=120.0, help="stop issuing requests after this")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the summary takes medians")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    pool_size = max(args.min_requests, max(args.concurrency) * args.requests_per_client)
    pool = cases.sentences(pool_size)
    info = machine_info(torch.device("cpu"))
    report = {"schema": SCHEMA, "machine": info, "settings": {**vars(args), "out": str(args.out)}, "models": {}}
    out = args.out or RESULTS_DIR / f"serve-load_{info['host_kind']}_{time.strftime('%Y-%m-%d')}.json"
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            options, weights = default_model_files() if model == "bundled" else cases.model_files(model, Path(tmp))
            load_before = [round(x, 2) for x in os.getloadavg()]
            base = sequential(options, weights, pool[: args.sequential_sentences])
            print(json.dumps({"model": model, "sequential": base}), flush=True)
            rows = run_servers(options, weights, pool, args)
            report["models"][model] = {"sequential": base, "rows": rows, "gain": gains(rows, base),
                                       "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()]}
            out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({m: r["gain"] for m, r in report["models"].items()}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
