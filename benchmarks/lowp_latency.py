"""Reduced-precision products on the CPU: batch-1 latency (warm and cold cache), long sequences, threads.

    python benchmarks/lowp_latency.py --out FILE [--rounds 3] [--long 500,1000,2000] [--long-batches 1,8]
                                      [--precisions fp32,bf16,int8] [--quick]

The original model (random weights, cpp backend, ``state="zero"``, token cache off), whole-model
``ElmoEmbedder.batch_to_embeddings``, per weight precision (products in that precision, see
elmo_fast.reference.lowp):

- ``batch32``: the benchmark batch of 32 sentences of ~20 tokens (benchmarks/cases.py), tokens/s;
- ``batch1_warm``: one 20-token sentence, repeated (weights in the last-level cache when they fit);
- ``batch1_cold``: the same after 96 MiB of other data went through the caches before every call;
- ``long``: one timed call per sentence length and batch (``--long``, ``--long-batches``), with the
  process's peak RSS after it (ru_maxrss: it only grows, so it bounds every case before it);
- ``threads``: batch32 and batch1_warm with 1 and with 2 threads.
Rounds interleave the precisions, so a change in machine load hits all of them alike; the JSON keeps
every time and the 1-minute load average at each row (the development machine is shared).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
import run  # noqa: E402

EVICT_BYTES = 96 << 20


def long_sentences(batch: int, tokens: int, seed: int = 7) -> list[list[str]]:
    """``batch`` sentences of exactly ``tokens`` random lowercase words."""
    rng = random.Random(seed + tokens)
    vocab = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    return [[rng.choice(vocab) for _ in range(tokens)] for _ in range(batch)]


def timed(fn, evict: numpy.ndarray | None = None) -> float:
    """Seconds for one ``fn()``; with ``evict``, first write it (pushes the weights out of L3)."""
    if evict is not None:
        evict += 1
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--long", default="500,1000,2000")
    parser.add_argument("--long-batches", default="1,8")
    parser.add_argument("--quick", action="store_true", help="small config, one round, short 'long' sequences")
    args = parser.parse_args()
    config = "small" if args.quick else "original"
    precisions = args.precisions.split(",")
    long_cases = [(b, t) for b in map(int, args.long_batches.split(",")) for t in map(int, args.long.split(","))]
    if args.quick:
        args.rounds, long_cases = 1, [(1, 50)]
    threads = torch.get_num_threads()
    evict = numpy.zeros(EVICT_BYTES // 8)
    result = {"machine": run.machine_info(torch.device("cpu")), "config": config, "rounds": args.rounds,
              "evict_bytes": EVICT_BYTES, "kernels": list(torch.ops.elmo_fast.cpu_kernels()), "rows": []}
    rows = result["rows"]

    def add(**row) -> None:
        row["load_average_1m"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        times = row.get("times_ms", [])
        print(json.dumps({k: v for k, v in row.items() if k != "times_ms"}) + (f" median {statistics.median(times):.1f} ms" if times else ""), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="elmo_fast_lowp_") as workdir:
        files = cases.model_files(config, Path(workdir))
        embedders = {p: cases.load_embedder(files, "cpp", torch.device("cpu"), p) for p in precisions}
        batch32, one = cases.sentences(32), long_sentences(1, 20)
        with torch.no_grad():
            base = cases.embed_output(embedders["fp32"], 32) if "fp32" in embedders else None
            for p, e in embedders.items():
                e.batch_to_embeddings(batch32)
                e.batch_to_embeddings(one)
                if base is not None and p != "fp32":
                    add(case="error_vs_fp32", weight_precision=p, **cases.output_error(cases.embed_output(e, 32), base))
            for n_threads in sorted({1, threads}, reverse=True):
                torch.set_num_threads(n_threads)
                times: dict[tuple, list[float]] = {}
                for _ in range(args.rounds):
                    for p, e in embedders.items():
                        times.setdefault(("batch32", p), []).append(timed(lambda: e.batch_to_embeddings(batch32)))
                        for _ in range(3):
                            times.setdefault(("batch1_warm", p), []).append(timed(lambda: e.batch_to_embeddings(one)))
                            if n_threads == threads:
                                times.setdefault(("batch1_cold", p), []).append(timed(lambda: e.batch_to_embeddings(one), evict))
                for (case, p), ts in times.items():
                    tokens = sum(map(len, batch32)) if case == "batch32" else 20
                    add(case=case, weight_precision=p, threads=n_threads, tokens=tokens, times_ms=[t * 1e3 for t in ts],
                        median_ms=statistics.median(ts) * 1e3, tokens_per_s=tokens / statistics.median(ts))
            torch.set_num_threads(threads)
            for batch, tokens in long_cases:
                sentences = long_sentences(batch, tokens)
                for p, e in embedders.items():
                    t = timed(lambda: e.batch_to_embeddings(sentences))
                    add(case="long", weight_precision=p, threads=threads, batch=batch, tokens_per_sentence=tokens, times_ms=[t * 1e3],
                        tokens_per_s=batch * tokens / t, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
