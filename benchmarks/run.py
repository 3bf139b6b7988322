"""Throughput of elmo_fast per model config, batch size and backend: prints a table, writes JSON.

    python benchmarks/run.py [--configs small,original] [--batches 1,8,32] [--backends ref,...]
                             [--device cpu|cuda] [--repeats N] [--threads N] [--out FILE] [--quick]

Rows per config and batch: ``embed`` (the whole model through ``ElmoEmbedder``) and ``lstm``
(``elmo_fast.ops.lstmp`` over every biLSTM layer) for every backend that resolves on the device,
plus the ``lstm`` anchor ``torch.nn.LSTM(proj_size=P)`` — an approximation with the same shapes that
cannot clip. Models are random-weight files in the original bilm-tf layout, loaded through the
public path. Each case is warmed up outside the timed region, then run several times; the table
shows the median and the minimum. See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402

import elmo_fast  # noqa: E402
from elmo_fast import _backends  # noqa: E402
from elmo_fast.reference.quantize import WEIGHT_PRECISIONS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SCHEMA = 1
ANCHOR_NOTE = (
    f"{cases.ANCHOR}: torch.nn.LSTM(input_size=P, hidden_size=C, proj_size=P, num_layers=L), run once per "
    "direction on the LSTM part only (torch's default kernel: oneDNN has no proj_size). An approximation "
    "with the same shapes: no cell/projection clipping, no residual, every row runs the padded width."
)


def _time_case(case: cases.Case, repeats: int | None, budget_s: float, min_runs: int, max_runs: int, warmup: int) -> list[float]:
    """Warm up ``warmup`` times (untimed), then time ``repeats`` calls (or as many as fit ``budget_s``,
    within ``[min_runs, max_runs]``); seconds per call."""
    last = 0.0
    for _ in range(warmup):
        start = time.perf_counter()
        case.fn()
        case.sync()
        last = time.perf_counter() - start
    runs = repeats if repeats is not None else max(min_runs, min(max_runs, math.ceil(budget_s / max(last, 1e-9))))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        case.fn()
        case.sync()
        times.append(time.perf_counter() - start)
    return times


def _peak_memory_mb(case: cases.Case) -> float | None:
    """Peak CUDA memory allocated during one call (weights included), measured apart from speed; None on CPU."""
    if case.device.type != "cuda":
        return None
    case.sync()
    torch.cuda.reset_peak_memory_stats(case.device)
    case.fn()
    case.sync()
    return torch.cuda.max_memory_allocated(case.device) / 2**20


def _git_commit() -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine distorts timings."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(device: torch.device) -> dict[str, object]:
    """Where and with what the numbers were measured."""
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "elmo_fast": elmo_fast.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "git": _git_commit(),
        "load_average": _load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    info["host_kind"] = host_kind(info)
    return info


def host_kind(info: dict[str, object]) -> str:
    """A short file-name-safe label: the GPU name, or the CPU model and core count."""
    label = info["gpu"] or f"{info['cpu_model']} {info['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", str(label).lower()).strip("-")


def _row(
    config: str, batch: int, part: str, backend: str, case: cases.Case, times: list[float], precision: str = "fp32"
) -> dict[str, object]:
    median, best = statistics.median(times), min(times)
    return {
        "config": config,
        "batch": batch,
        "part": part,
        "backend": backend,
        "weight_precision": precision,
        "tokens": case.tokens,
        "runs": len(times),
        "times_ms": [t * 1e3 for t in times],
        "median_ms": median * 1e3,
        "min_ms": best * 1e3,
        "tokens_per_s": case.tokens / median,
        "tokens_per_s_best": case.tokens / best,
        "peak_memory_mb": _peak_memory_mb(case),
        "load_average_1m": (_load_average() or [None])[0],
    }


def _split(value: str, kind=str) -> list:
    return [kind(v) for v in value.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` only changes the defaults of options left unset."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", type=_split, default=None, help="comma list of small, medium, original (default small,original)")
    parser.add_argument("--batches", type=lambda v: _split(v, int), default=None, help="sentences per batch (default 1,8,32)")
    parser.add_argument("--backends", type=_split, default=None, help="comma list (default: every backend usable on the device)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default: as many as fit --budget, 3 to 15)")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timed runs per case when --repeats is unset (default 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/HOST_DATE.json)")
    parser.add_argument("--no-anchor", action="store_true", help=f"skip the {cases.ANCHOR} anchor rows")
    parser.add_argument(
        "--weight-precisions",
        type=_split,
        default=["fp32"],
        help="comma list of fp32, bf16, int8 (default fp32): reduced-precision rows also report their error against fp32",
    )
    parser.add_argument("--quick", action="store_true", help="a sub-minute smoke run: small config, few repeats")
    args = parser.parse_args(argv)
    args.configs = args.configs or (["small"] if args.quick else ["small", "original"])
    args.batches = args.batches or [1, 8, 32]
    args.budget = args.budget if args.budget is not None else (0.5 if args.quick else 4.0)
    args.max_runs = 3 if args.quick else 15
    unknown = [c for c in args.configs if c not in cases.BENCH_CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(cases.BENCH_CONFIGS)}")
    bad = [p for p in args.weight_precisions if p not in WEIGHT_PRECISIONS]
    if bad or "fp32" not in args.weight_precisions:
        parser.error(f"--weight-precisions takes {', '.join(WEIGHT_PRECISIONS)} and must include fp32 (the error baseline)")
    if any(b < 1 for b in args.batches) or (args.repeats is not None and args.repeats < 1):
        parser.error("--batches and --repeats must be positive")
    return args


def select_backends(requested: list[str] | None, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The backends to measure: the requested ones (each must resolve, or this raises), or every usable one."""
    if requested is None:
        return cases.usable_backends(device)
    return list(dict.fromkeys(_backends.resolve(b, device) for b in requested)), {}


def run_config(config: str, args: argparse.Namespace, backends: list[str], device: torch.device, workdir: Path) -> list[dict]:
    """Every row of one model config; prints each as it is measured."""
    files = cases.model_files(config, workdir)
    options = cases.BENCH_CONFIGS[config]
    warmup = 2 if device.type == "cuda" else 1
    timing = dict(repeats=args.repeats, budget_s=args.budget, min_runs=3, max_runs=args.max_runs, warmup=warmup)
    variants = [(b, p) for b in backends for p in args.weight_precisions]
    embedders = {(b, p): cases.load_embedder(files, b, device, p) for b, p in variants}
    rows = []
    for batch in args.batches:
        measured = [("embed", b, p, cases.setup_embed(embedders[b, p], batch)) for b, p in variants]
        measured += [("lstm", b, p, cases.setup_lstm(embedders[b, p].elmo_bilm.weights(), batch, b, device, p)) for b, p in variants]
        if not args.no_anchor:
            measured.append(("lstm", cases.ANCHOR, "fp32", cases.setup_anchor(options, batch, device)))
        for part, backend, precision, case in measured:
            rows.append(_row(config, batch, part, backend, case, _time_case(case, **timing), precision))
            if part == "embed" and precision != "fp32":
                rows[-1].update(cases.precision_error(embedders[backend, precision], embedders[backend, "fp32"], batch))
            print_row(rows[-1])
    return rows


HEADER = (
    f"{'config':9s} {'batch':>5s}  {'part':6s} {'backend':15s} {'weights':7s} {'tokens/s':>10s} {'ms/batch':>10s} "
    f"{'min ms':>10s} {'runs':>4s} {'rel err':>8s}"
)


def print_row(row: dict) -> None:
    """One table line (the anchor is starred; see the footnote)."""
    backend = row["backend"] + ("*" if row["backend"] == cases.ANCHOR else "")
    err = f"{row['rel_err']:8.1e}" if "rel_err" in row else ""
    print(
        f"{row['config']:9s} {row['batch']:5d}  {row['part']:6s} {backend:15s} {row.get('weight_precision', 'fp32'):7s} "
        f"{row['tokens_per_s']:10.1f} {row['median_ms']:10.2f} {row['min_ms']:10.2f} {row['runs']:4d} {err}",
        flush=True,
    )


def default_out(info: dict[str, object], quick: bool) -> Path:
    """``benchmarks/results/<host kind>_<date>[_quick].json``."""
    date = str(info["date"])[:10]
    return RESULTS_DIR / f"{info['host_kind']}_{date}{'_quick' if quick else ''}.json"


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark; returns what it wrote to the JSON file."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends, skipped = select_backends(args.backends, device)
    info = machine_info(device)
    print(
        f"elmo_fast {info['elmo_fast']} | torch {info['torch']} | {info['cpu_model']} ({info['cores']} cores) | "
        f"threads {info['threads']} | device {device}{' (' + str(info['gpu']) + ')' if info['gpu'] else ''}"
    )
    print(f"backends: {', '.join(backends)}" + "".join(f"\n  skipped {b}: {why}" for b, why in skipped.items()))
    print(f"sentences: {cases.MEAN_TOKENS - 4}-{cases.MEAN_TOKENS + 4} random words (seed {cases.SENTENCE_SEED}); "
          "tokens/s = real tokens / median time\n")
    print(HEADER)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="elmo_fast_bench_") as workdir:
        for config in args.configs:
            rows.extend(run_config(config, args, backends, device, Path(workdir)))
    if not args.no_anchor:
        print("\n" + textwrap.fill(f"* {ANCHOR_NOTE}", width=100, subsequent_indent="  "))
    info["load_average_after"] = _load_average()
    result = {
        "schema": SCHEMA,
        "machine": info,
        "settings": {
            "configs": {c: cases.BENCH_CONFIGS[c].to_json_dict() for c in args.configs},
            "batches": args.batches,
            "backends": backends,
            "weight_precisions": args.weight_precisions,
            "skipped_backends": skipped,
            "repeats": args.repeats,
            "budget_s": args.budget,
            "quick": args.quick,
            "sentence_seed": cases.SENTENCE_SEED,
            "state": "zero",
            "parts": {
                "embed": "ElmoEmbedder.batch_to_embeddings: char ids, token encoder, all biLSTM layers, boundary removal",
                "lstm": "elmo_fast.ops.lstmp over every biLSTM layer on random inputs of the same shapes",
            },
            "anchor": None if args.no_anchor else ANCHOR_NOTE,
        },
        "results": rows,
    }
    out = args.out or default_out(info, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
