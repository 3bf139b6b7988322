"""Soak benchmark: embed a large generated text file and watch resident memory over time.

    python benchmarks/soak.py --size-mb 100 [--backend auto] [--keep-sentences]

Generates a text file of random sentences (~12 tokens), writes a tiny random-weight model, runs
``elmo-fast embed --state zero`` on it in a subprocess, samples that process's resident memory
(VmRSS) every ``--interval`` seconds, and writes a JSON report to ``benchmarks/results/``: peak RSS,
the RSS growth from the first to the last quarter of the run, throughput, the machine's load average
(the machine may be shared), every sample, and a verdict line:

    memory: flat (last-quarter peak RSS - first-quarter peak RSS = +3.1 MB <= threshold 32.0 MB)

The threshold is ``max(--flat-mb, --flat-pct % of the first-quarter peak)`` (default 16 MB or 10 %).
Quarter peaks are compared (not single samples) so the one-off start-up growth inside the first
quarter (imports, model load, first batches) does not count as growth, while anything that grows
with the input shows up as a later, higher peak. By default ``--forget-sentences`` is passed: the
sentence map is the one structure that must grow with the input (it is written as a single JSON
string); with ``--keep-sentences`` the report shows that growth.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
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


def quarter_peaks(samples: list[tuple[float, float]], elapsed: float) -> tuple[float | None, float | None]:
    """Peak RSS among the samples of the first and of the last quarter of the run."""
    first = [v for t, v in samples if t <= 0.25 * elapsed]
    last = [v for t, v in samples if t >= 0.75 * elapsed]
    return (max(first) if first else None, max(last) if last else None)


def verdict(first: float | None, last: float | None, flat_mb: float, flat_pct: float) -> tuple[str, float | None, str]:
    """("flat" | "growing" | "unknown", threshold in MB, the human line)."""
    if first is None or last is None:
        return "unknown", None, "memory: unknown (too few samples; lower --interval or use a larger file)"
    threshold = max(flat_mb, flat_pct / 100 * first)
    growth = last - first
    word = "flat" if growth <= threshold else "growing"
    sign = "<=" if word == "flat" else ">"
    line = (
        f"memory: {word} (last-quarter peak RSS - first-quarter peak RSS = {growth:+.1f} MB {sign} threshold "
        f"{threshold:.1f} MB = max({flat_mb:g} MB, {flat_pct:g} % of {first:.1f} MB))"
    )
    return word, round(threshold, 1), line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=100.0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--keep-sentences", action="store_true")
    parser.add_argument("--flat-mb", type=float, default=16.0, help="absolute growth allowed for 'flat' (MB)")
    parser.add_argument("--flat-pct", type=float, default=10.0, help="relative growth allowed for 'flat' (%% of the first-quarter peak)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the embed process (default: torch's own)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where corpus and output go (default: a new temp dir, removed after)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="elmo-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.txt"
    lines = write_corpus(corpus, args.size_mb)
    tokens = sum(len(line.split()) for line in open(corpus, encoding="utf-8"))
    save_weights(random_weights(TINY, seed=1), work / "weights.hdf5", work / "options.json")
    output = work / "out.hdf5"
    output.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "elmo_fast", "embed", str(corpus), str(output),
        "--options", str(work / "options.json"), "--weights", str(work / "weights.hdf5"),
        "--state", "zero", "--batch-size", str(args.batch_size), "--backend", args.backend, "--quiet", "--top",
        "--overwrite",
    ]
    if not args.keep_sentences:
        cmd.append("--forget-sentences")
    load_before = [round(x, 2) for x in os.getloadavg()]
    start = time.time()
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    proc = subprocess.Popen(cmd, env=env)
    samples: list[tuple[float, float]] = []
    loads: list[tuple[float, float]] = []
    while proc.poll() is None:
        value = rss_mb(proc.pid)
        now = round(time.time() - start, 2)
        if value is not None:
            samples.append((now, round(value, 1)))
        if not loads or now - loads[-1][0] >= 30:
            loads.append((now, round(os.getloadavg()[0], 2)))
        time.sleep(args.interval)
    elapsed = time.time() - start
    load_after = [round(x, 2) for x in os.getloadavg()]
    if proc.returncode != 0:
        raise SystemExit(f"embed failed with exit status {proc.returncode}")
    first_peak, last_peak = quarter_peaks(samples, elapsed)
    word, threshold, line = verdict(first_peak, last_peak, args.flat_mb, args.flat_pct)
    import torch

    import elmo_fast

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {"elmo_fast": elmo_fast.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "load_average_1m_every_30s": loads,
        "load_note": "the machine is shared: a load average above cpu_count means other processes competed for the cores",
        "command": " ".join(cmd[1:]).replace(str(work), "$WORK"),
        "model": "tiny random-weight (benchmarks/cases.py TINY: P=16, C=32, 3 filters, 1 highway), seed 1",
        "size_mb": args.size_mb,
        "corpus_bytes": corpus.stat().st_size,
        "sentences": lines,
        "tokens": tokens,
        "backend": args.backend,
        "batch_size": args.batch_size,
        "threads": args.threads if args.threads is not None else f"torch default ({torch.get_num_threads()})",
        "forget_sentences": not args.keep_sentences,
        "seconds": round(elapsed, 1),
        "sentences_per_s": round(lines / elapsed, 1),
        "tokens_per_s": round(tokens / elapsed, 1),
        "input_mb_per_s": round(corpus.stat().st_size / 2**20 / elapsed, 3),
        "peak_rss_mb": max(v for _, v in samples) if samples else None,
        "rss_first_quarter_peak_mb": first_peak,
        "rss_last_quarter_peak_mb": last_peak,
        "rss_growth_mb": round(last_peak - first_peak, 1) if first_peak is not None and last_peak is not None else None,
        "flat_threshold_mb": threshold,
        "flat_rule": f"flat when last-quarter peak - first-quarter peak <= max({args.flat_mb:g} MB, {args.flat_pct:g} % of the first-quarter peak)",
        "memory_verdict": word,
        "verdict": line,
        "output_mb": round(output.stat().st_size / 2**20, 1),
        "interval_s": args.interval,
        "samples": samples,
    }
    out = args.out or Path(__file__).parent / "results" / f"soak-{args.size_mb:g}mb-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("samples", "load_average_1m_every_30s")}, indent=1))
    print(line)
    print(f"wrote {out}")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
