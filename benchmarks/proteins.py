"""Protein workloads: residues per second on SeqVec's size, and resident memory over a FASTA file.

    python benchmarks/proteins.py speed [--lengths 100,500,2000] [--budget 16384] [--variants ref:fp32,cpp:fp32,...]
    python benchmarks/proteins.py rss [--records 1000] [--mean-length 350]

``speed``: a random-weight model of the original ELMo size (SeqVec is one: a char-CNN and two biLSTM
layers of 4096 cells projected to 512, 1024-d output) reads protein-like sequences (single-letter
tokens over the 20 amino acids), ``state="zero"``, for each backend and weight precision: one
sequence of each length alone (batch 1), and one batch of ``budget // L`` such sequences (the
residue budget of ``--max-tokens``). One warm-up call on a short sequence, then ``--repeats`` timed
calls; the row keeps every time and reports residues/s from the fastest. Cases named by ``--skip``
(by default the reference's slowest) are listed as skipped.

``rss``: writes a FASTA file of ``--records`` sequences of about ``--mean-length`` residues (five of them
replaced by 5,000-residue ones, ``--long-records``/``--long-length``) and embeds
it with :func:`elmo_fast.jobs.fasta.run_embed_fasta` (per-residue, all layers) while a thread samples
the process's resident memory, each sample marked ``embed`` or ``merge`` (the merge's temporary file
exists); the model is the bundled one unless ``--config`` names a random-weight
size. Flat memory means the samples stop growing after the first segments.

Both write JSON under ``benchmarks/results/`` with the machine, the git commit and ``uptime``'s load
averages before and after (other jobs on a shared machine slow every row down).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import cases  # noqa: E402
from run import machine_info  # noqa: E402

from elmo_fast import ElmoEmbedder  # noqa: E402

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
RESULTS = Path(__file__).parent / "results"


def protein(rng: random.Random, length: int) -> list[str]:
    """A random protein-like sequence as tokens: one amino-acid letter per token."""
    return [rng.choice(AMINO_ACIDS) for _ in range(length)]


def _uptime() -> str:
    """``uptime``'s line (load averages over 1, 5 and 15 minutes)."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _time(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def speed(args: argparse.Namespace) -> dict:
    """Residues/s per (backend, precision, length, batch-1 or budget)."""
    rng = random.Random(0)
    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    options, weights = cases.model_files(args.config, model_dir)
    rows = []
    for variant in args.variants:
        backend, precision = variant.split(":")
        embedder = ElmoEmbedder(options, weights, state="zero", backend=backend, weight_precision=precision)
        embedder.embed_batch([protein(rng, 20)])
        for mode in ("batch1", "budget"):
            for length in args.lengths:
                count = 1 if mode == "batch1" else max(1, args.budget // length)
                batch = [protein(rng, length) for _ in range(count)]
                row = {"backend": backend, "weight_precision": precision, "mode": mode, "length": length, "rows": count}
                if {f"{variant}:{mode}", f"{variant}:{mode}:{length}"} & set(args.skip):
                    row["skipped"] = "--skip (too slow for a bounded run on this machine)"
                else:
                    row["load_before"] = _uptime()
                    row["seconds"] = _time(lambda: embedder.embed_batch(batch), args.repeats)
                    row["residues_per_s"] = count * length / min(row["seconds"])
                    row["load_after"] = _uptime()
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"config": args.config, "budget": args.budget, "threads": torch.get_num_threads(), "rows": rows}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss(args: argparse.Namespace) -> dict:
    """Resident memory sampled every ``--interval`` s while a FASTA file is embedded."""
    from elmo_fast.jobs.fasta import run_embed_fasta

    rng = random.Random(1)
    if args.config == "bundled":
        embedder = ElmoEmbedder(state="zero")
    else:
        options, weights = cases.model_files(args.config, Path(args.model_dir))
        embedder = ElmoEmbedder(options, weights, state="zero")
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    start = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        merging = Path(tmp) / ".out.h5.merging.tmp"

        def sample() -> None:
            while not done.wait(args.interval):
                phase = "merge" if merging.exists() else "embed"
                samples.append((round(time.perf_counter() - start, 2), round(_rss_mb(), 1), phase))

        fasta = Path(tmp) / "proteins.fa"
        lengths = [max(1, int(rng.gauss(args.mean_length, args.mean_length / 10))) for _ in range(args.records)]
        for i in range(args.long_records):
            lengths[(i + 1) * len(lengths) // (args.long_records + 1)] = args.long_length
        fasta.write_text("".join(f">prot{i} random\n{''.join(protein(rng, n))}\n" for i, n in enumerate(lengths)))
        before = _rss_mb()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        load_before = _uptime()
        run_embed_fasta(embedder, fasta, Path(tmp) / "out.h5", progress=False)
        done.set()
        thread.join()
        seconds = time.perf_counter() - start
        output_mb = (Path(tmp) / "out.h5").stat().st_size / 2**20
    tenth = samples[len(samples) // 10][1] if samples else None
    phases = {
        phase: {"min_mb": min(v), "max_mb": max(v), "first_mb": v[0], "last_mb": v[-1], "samples": len(v)}
        for phase in ("embed", "merge")
        if (v := [s[1] for s in samples if s[2] == phase])
    }
    return {
        "config": args.config,
        "records": args.records,
        "residues": sum(lengths),
        "longest": max(lengths),
        "seconds": round(seconds, 1),
        "output_mb": round(output_mb, 1),
        "rss_before_mb": round(before, 1),
        "rss_at_10pct_mb": tenth,
        "rss_max_mb": max(s[1] for s in samples) if samples else None,
        "rss_last_mb": samples[-1][1] if samples else None,
        "phases": phases,
        "samples": samples,
        "load_before": load_before,
        "load_after": _uptime(),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("speed", "rss"))
    parser.add_argument("--config", default=None, help="speed: a benchmarks/cases.py config (default original); rss: bundled (default) or a config")
    parser.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[100, 500, 2000])
    parser.add_argument("--budget", type=int, default=16_384, help="residues per batch in the budget rows")
    parser.add_argument("--variants", type=lambda s: s.split(","), default=["cpp:int8", "cpp:bf16", "cpp:fp32", "ref:fp32"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--skip",
        type=lambda s: s.split(","),
        default=["ref:fp32:budget", "ref:fp32:batch1:2000"],
        help="cases not run, as BACKEND:PRECISION:MODE[:LENGTH] (default: the reference's budget rows and its "
        "2,000-residue row, minutes each on 2 cores)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--mean-length", type=int, default=350)
    parser.add_argument("--long-records", type=int, default=5, help="rss: records replaced by --long-length ones, spread evenly")
    parser.add_argument("--long-length", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--model-dir", default=str(Path(tempfile.gettempdir()) / "elmo_fast_bench_models"))
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/proteins-PART_HOST_DATE.json)")
    args = parser.parse_args(argv)
    args.config = args.config or ("original" if args.part == "speed" else "bundled")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info(torch.device("cpu"))
    result = {"machine": info, "uptime_before": _uptime(), **(speed(args) if args.part == "speed" else rss(args))}
    result["uptime_after"] = _uptime()
    out = args.out or RESULTS / f"proteins-{args.part}_{info['host_kind']}_{info['date'][:10]}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
