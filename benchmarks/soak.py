"""Soak benchmark: embed a large generated text file and watch resident memory over time.

    python benchmarks/soak.py --size-mb 100 [--backend auto] [--keep-sentences]

Generates a text file of random sentences (~12 tokens), writes a tiny random-weight model, runs
``elmo-fast embed --state zero`` on it in a subprocess, samples that process's resident memory
(VmRSS) every ``--interval`` seconds, and writes a JSON report (peak, samples, throughput) to
``benchmarks/results/``. By default ``--forget-sentences`` is passed: the sentence map is the one
structure that must grow with the input (it is written as a single JSON string); with
``--keep-sentences`` the report shows that growth.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from cases import TINY  # benchmarks/cases.py, beside this script

from elmo_fast.weights import random_weights, save_weights


def write_corpus(path: Path, size_mb: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 10))) for _ in range(20000)]
    target = int(size_mb * 1024 * 1024)
    written = lines = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < target:
            line = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 20))) + "\n"
            out.write(line)
            written += len(line)
            lines += 1
    return lines


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--keep-sentences", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="elmo-soak-"))
    corpus = work / "corpus.txt"
    lines = write_corpus(corpus, args.size_mb)
    save_weights(random_weights(TINY, seed=1), work / "weights.hdf5", work / "options.json")
    cmd = [
        sys.executable, "-m", "elmo_fast", "embed", str(corpus), str(work / "out.hdf5"),
        "--options", str(work / "options.json"), "--weights", str(work / "weights.hdf5"),
        "--state", "zero", "--batch-size", str(args.batch_size), "--backend", args.backend, "--quiet", "--top",
    ]
    if not args.keep_sentences:
        cmd.append("--forget-sentences")
    start = time.time()
    proc = subprocess.Popen(cmd)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        if value is not None:
            samples.append((round(time.time() - start, 2), round(value, 1)))
        time.sleep(args.interval)
    elapsed = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"embed failed with exit status {proc.returncode}")
    tokens = sum(len(line.split()) for line in open(corpus, encoding="utf-8"))
    steady = [v for t, v in samples if t > 0.1 * elapsed]
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "size_mb": args.size_mb,
        "sentences": lines,
        "tokens": tokens,
        "backend": args.backend,
        "batch_size": args.batch_size,
        "forget_sentences": not args.keep_sentences,
        "seconds": round(elapsed, 1),
        "sentences_per_s": round(lines / elapsed, 1),
        "tokens_per_s": round(tokens / elapsed, 1),
        "peak_rss_mb": max(v for _, v in samples) if samples else None,
        "rss_first_10pct_max_mb": max((v for t, v in samples if t <= 0.1 * elapsed), default=None),
        "rss_after_10pct_min_max_mb": [min(steady), max(steady)] if steady else None,
        "output_mb": round((work / "out.hdf5").stat().st_size / 2**20, 1),
        "samples": samples,
    }
    out = args.out or Path(__file__).parent / "results" / f"soak-{args.size_mb:g}mb-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
