"""Throughput of elmo_fast per model config, batch size and backend: prints a table, writes JSON.

    python benchmarks/run.py [--configs small,original] [--batches 1,8,32] [--backends ref,...]
                             [--device cpu|cuda] [--dtypes float32,bfloat16] [--repeats N]
                             [--threads N] [--out FILE] [--quick] [--onnx] [--compile]

Rows per config and batch: ``embed`` (the whole model through ``ElmoEmbedder``) and ``lstm``
(``elmo_fast.ops.lstmp`` over every biLSTM layer) for every backend that resolves on the device,
plus the ``lstm`` anchor ``torch.nn.LSTM(proj_size=P)`` — an approximation with the same shapes that
cannot clip. ``--onnx`` adds an ``embed`` row for the model exported to ONNX and run by ONNX Runtime
(CPU), ``--compile`` one per backend for the biLM under ``torch.compile(fullgraph=True)``
(``deploy_cases.py``); config ``default`` is the bundled model. Models are random-weight files in the original bilm-tf layout, loaded through the
public path. ``--dtypes`` adds rows with the model (and the anchor) moved to bfloat16; reduced-precision
embed rows carry their error against a float32 baseline. Each case is warmed up outside the timed
region, then run several times; the table shows the median and the minimum. The JSON file is
rewritten after every row, so a run cut short keeps the rows measured so far. See benchmarks/README.md.
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
import deploy_cases  # noqa: E402

import elmo_fast  # noqa: E402
from elmo_fast import _backends  # noqa: E402
from elmo_fast.reference.quantize import WEIGHT_PRECISIONS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SCHEMA = 1
ANCHOR_NOTE = (
    f"{cases.ANCHOR}: torch.nn.LSTM(input_size=P, hidden_size=C, proj_size=P, num_layers=L), run once per "
    "direction on the LSTM part only (cuDNN on CUDA; on CPU torch's default kernel: oneDNN has no proj_size), "
    "in the row's dtype. An approximation "
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


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# The instruction sets the cpp kernels choose between (a "model name" such as "AMD EPYC" alone does
# not tell a Zen 4 from a Zen 5: family 25 is Zen 3/4, 26 is Zen 5, and only Zen 5 has avx_vnni).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def _cpu_id() -> dict[str, object]:
    """Vendor family / model / stepping and the kernel-relevant ISA flags from /proc/cpuinfo ({} elsewhere)."""
    fields = _cpuinfo()
    if not fields:
        return {}
    flags = set(fields.get("flags", "").split())
    return {"family": fields.get("cpu family"), "model": fields.get("model"), "stepping": fields.get("stepping"),
            "isa": [f for f in ISA_FLAGS if f in flags]}


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
        "cpu_id": _cpu_id(),
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
    if device.type == "cpu" and _backends.probe("cpp")[0]:
        # which micro-kernels ran (depends on the CPU and on ELMO_FAST_DISABLE_AVX512 / _AVX2)
        info["cpu_kernels"] = list(torch.ops.elmo_fast.cpu_kernels())
    info["host_kind"] = host_kind(info)
    return info


def host_kind(info: dict[str, object]) -> str:
    """A short file-name-safe label: the GPU name, or the CPU model and core count."""
    label = info["gpu"] or f"{info['cpu_model']} {info['cores']}c"
    return re.sub(r"[^a-z0-9]+", "-", str(label).lower()).strip("-")


def _row(
    config: str,
    batch: int,
    part: str,
    backend: str,
    case: cases.Case,
    times: list[float],
    precision: str = "fp32",
    dtype: str = "float32",
) -> dict[str, object]:
    median, best = statistics.median(times), min(times)
    return {
        "config": config,
        "batch": batch,
        "part": part,
        "backend": backend,
        "weight_precision": precision,
        "dtype": dtype,
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
    parser.add_argument(
        "--dtypes",
        "--dtype",
        type=_split,
        default=["float32"],
        help="comma list of float32, bfloat16 (default float32): bfloat16 moves the model with .to(torch.bfloat16)",
    )
    parser.add_argument("--quick", action="store_true", help="a sub-minute smoke run: small config, few repeats")
    parser.add_argument("--onnx", action="store_true", help="add embed rows for ONNX Runtime (CPU; pip install 'elmo_fast[onnx]')")
    parser.add_argument("--compile", action="store_true", help="add embed rows for each backend under torch.compile(fullgraph=True)")
    parser.add_argument(
        "--freezing",
        action="store_true",
        help="--compile rows with inductor's freezing option (weights as constants)",
    )
    args = parser.parse_args(argv)
    args.configs = args.configs or (["small"] if args.quick else ["small", "original"])
    args.batches = args.batches or [1, 8, 32]
    args.budget = args.budget if args.budget is not None else (0.5 if args.quick else 4.0)
    args.max_runs = 3 if args.quick else 15
    unknown = [c for c in args.configs if c not in cases.BENCH_CONFIGS and c != deploy_cases.DEFAULT]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(cases.BENCH_CONFIGS)}, {deploy_cases.DEFAULT}")
    if args.onnx and torch.device(args.device).type != "cpu":
        parser.error("--onnx rows run ONNX Runtime's CPU provider: use --device cpu")
    bad = [p for p in args.weight_precisions if p not in WEIGHT_PRECISIONS]
    if bad or "fp32" not in args.weight_precisions:
        parser.error(f"--weight-precisions takes {', '.join(WEIGHT_PRECISIONS)} and must include fp32 (the error baseline)")
    bad = [d for d in args.dtypes if d not in cases.DTYPES]
    if bad or "float32" not in args.dtypes:
        parser.error(f"--dtypes takes {', '.join(cases.DTYPES)} and must include float32 (the error baseline)")
    if any(b < 1 for b in args.batches) or (args.repeats is not None and args.repeats < 1):
        parser.error("--batches and --repeats must be positive")
    return args


def select_backends(requested: list[str] | None, device: torch.device) -> tuple[list[str], dict[str, str]]:
    """The backends to measure: the requested ones (each must resolve, or this raises), or every usable one."""
    if requested is None:
        return cases.usable_backends(device)
    return list(dict.fromkeys(_backends.resolve(b, device) for b in requested)), {}


# Variants (backend, weight precision, dtype) that are not measured, and why.
def variant_skip_reason(backend: str, precision: str, dtype: str) -> str | None:
    """Why a (backend, weight precision, dtype) variant gets no rows, or None when it is measured."""
    if dtype != "float32" and precision != "fp32":
        return "reduced-precision weights are measured in float32 only"
    if dtype != "float32" and backend == "cpp":
        return "the cpp backend is float32 only (bf16 inputs run the ref implementation)"
    return None


def run_config(
    config: str,
    args: argparse.Namespace,
    backends: list[str],
    device: torch.device,
    workdir: Path,
    on_row=None,
) -> list[dict]:
    """Every row of one model config; prints each as it is measured and hands it to ``on_row``.

    Embed rows of every variant but the baseline carry error columns (:func:`cases.precision_error`)
    against the baseline: ``ref`` float32 with fp32 weights when ``ref`` is measured, else the same
    backend in float32 with fp32 weights (only for reduced-precision or bf16 rows).
    """
    files = deploy_cases.model_files(config, workdir)
    options = deploy_cases.options(config)
    warmup = 2 if device.type == "cuda" else 1
    timing = dict(repeats=args.repeats, budget_s=args.budget, min_runs=3, max_runs=args.max_runs, warmup=warmup)
    variants = []
    for b in backends:
        for p in args.weight_precisions:
            for d in args.dtypes:
                reason = variant_skip_reason(b, p, d)
                if reason is None:
                    variants.append((b, p, d))
                elif config == args.configs[0]:
                    print(f"  not measured: {b} {p} weights {d}: {reason}")
    embedders = {v: cases.load_embedder(files, v[0], device, v[1], cases.DTYPES[v[2]]) for v in variants}
    rows = []

    def add(row: dict) -> None:
        rows.append(row)
        print_row(row)
        if on_row is not None:
            on_row(row)

    for batch in args.batches:
        baseline_outputs: dict[tuple, torch.Tensor] = {}

        def error_columns(variant: tuple) -> dict:
            base = ("ref", "fp32", "float32") if ("ref", "fp32", "float32") in embedders else (variant[0], "fp32", "float32")
            if base == variant or (base[0] != "ref" and variant[1:] == ("fp32", "float32")):
                return {}
            if base not in baseline_outputs:
                baseline_outputs[base] = cases.embed_output(embedders[base], batch)
            errors = cases.output_error(cases.embed_output(embedders[variant], batch), baseline_outputs[base])
            return {**errors, "error_vs": " ".join(base)}

        def measure(part: str, backend: str, precision: str, dtype: str, setup, errors=None) -> None:
            """One row; a failing case becomes a row with ``error`` (and the run goes on)."""
            try:
                case = setup()
                row = _row(config, batch, part, backend, case, _time_case(case, **timing), precision, dtype)
                if errors is not None:
                    row.update(errors())
            except Exception as exc:  # noqa: BLE001 - report and go on: one failure must not hide the other rows
                row = {"config": config, "batch": batch, "part": part, "backend": backend, "weight_precision": precision,
                       "dtype": dtype, "error": f"{type(exc).__name__}: {exc}"[:500]}
            add(row)

        for v in variants:
            measure("embed", *v, lambda: cases.setup_embed(embedders[v], batch), lambda: error_columns(v))
        deploy_rows(config, batch, args, variants, embedders, files, device, workdir, measure, baseline_outputs)
        for v in variants:
            measure("lstm", *v, lambda: cases.setup_lstm(embedders[v].elmo_bilm.weights(), batch, v[0], device, v[1],
                                                         cases.DTYPES[v[2]]))
        if not args.no_anchor:
            for d in args.dtypes:
                measure("lstm", cases.ANCHOR, "fp32", d, lambda: cases.setup_anchor(options, batch, device, cases.DTYPES[d]))
    return rows


def deploy_rows(config, batch, args, variants, embedders, files, device, workdir, measure, baseline_outputs) -> None:
    """The ``--onnx`` and ``--compile`` embed rows of one config and batch, with error columns against
    ``ref`` float32 (or the first measured variant when ``ref`` is not measured)."""
    base = ("ref", "fp32", "float32") if ("ref", "fp32", "float32") in embedders else variants[0]
    if base not in baseline_outputs:
        baseline_outputs[base] = cases.embed_output(embedders[base], batch)

    def errors(output: torch.Tensor) -> dict:
        return {**cases.output_error(output, baseline_outputs[base]), "error_vs": " ".join(base)}

    if args.onnx:
        made = {}

        def setup():
            made["case"], made["session"] = deploy_cases.setup_onnx(deploy_cases.onnx_file(files, workdir), batch)
            return made["case"]

        measure("embed", "onnxruntime", "fp32", "float32", setup, lambda: errors(deploy_cases.onnx_output(made["session"], batch)))
    if args.compile:
        for backend in dict.fromkeys(v[0] for v in variants):
            key = (config, backend)
            if key not in COMPILED:
                COMPILED[key] = deploy_cases.compiled_embedder(files, backend, device, freezing=args.freezing)
            compiled = COMPILED[key]
            measure("embed", f"{backend}+compile{'+freezing' if args.freezing else ''}", "fp32", "float32", lambda: cases.setup_embed(compiled, batch),
                    lambda: errors(cases.embed_output(compiled, batch)))


# One compiled embedder per (config, backend), kept across batch sizes (each new shape compiles once).
COMPILED: dict[tuple[str, str], object] = {}


HEADER = (
    f"{'config':9s} {'batch':>5s}  {'part':6s} {'backend':15s} {'weights':7s} {'dtype':8s} {'tokens/s':>10s} "
    f"{'ms/batch':>10s} {'min ms':>10s} {'runs':>4s} {'rel err':>8s}"
)


def print_row(row: dict) -> None:
    """One table line (the anchor is starred; see the footnote)."""
    backend = row["backend"] + ("*" if row["backend"] == cases.ANCHOR else "")
    if "error" in row:
        print(f"{row['config']:9s} {row['batch']:5d}  {row['part']:6s} {backend:15s} {row['weight_precision']:7s} "
              f"{row['dtype']:8s} FAILED: {row['error']}", flush=True)
        return
    err = f"{row['rel_err']:8.1e}" if "rel_err" in row else ""
    print(
        f"{row['config']:9s} {row['batch']:5d}  {row['part']:6s} {backend:15s} {row.get('weight_precision', 'fp32'):7s} "
        f"{row.get('dtype', 'float32'):8s} {row['tokens_per_s']:10.1f} {row['median_ms']:10.2f} {row['min_ms']:10.2f} {row['runs']:4d} {err}",
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
    result = {
        "schema": SCHEMA,
        "machine": info,
        "settings": {
            "configs": {c: deploy_cases.options(c).to_json_dict() for c in args.configs},
            "flops_per_position": {c: cases.flops_per_position(deploy_cases.options(c)) for c in args.configs},
            "lstm_flops_per_position": {c: cases.flops_per_position(deploy_cases.options(c), lstm_only=True) for c in args.configs},
            "batches": args.batches,
            "backends": backends,
            "weight_precisions": args.weight_precisions,
            "dtypes": args.dtypes,
            "skipped_backends": skipped,
            "repeats": args.repeats,
            "budget_s": args.budget,
            "quick": args.quick,
            "sentence_seed": cases.SENTENCE_SEED,
            "state": "zero",
            "parts": {
                "embed": "ElmoEmbedder.batch_to_embeddings: char ids, token encoder, all biLSTM layers, boundary removal",
                "lstm": "elmo_fast.ops.lstmp over every biLSTM layer on random inputs of the same shapes",
                "onnxruntime": "embed through the elmo-fast export-onnx graph in an ONNX Runtime CPU session "
                               "(intra-op threads = torch threads): batch_to_ids + session.run",
                "+compile": "embed with the biLM under torch.compile(fullgraph=True, dynamic=False), inductor; compiled in "
                            "the warm-up; +freezing: inductor's freezing option on",
            },
            "errors": "embed rows: rel_err = max over biLM layers of ||out - base||_F / ||base||_F; max_elem_rel_err = "
                      "max over layers of max|out - base| / max|base|; base named by error_vs",
            "anchor": None if args.no_anchor else ANCHOR_NOTE,
        },
        "complete": False,
        "results": rows,
    }
    out = args.out or default_out(info, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        # a whole file at every moment: write beside it, then rename over it
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)

    write()
    with tempfile.TemporaryDirectory(prefix="elmo_fast_bench_") as workdir:
        for config in args.configs:
            run_config(config, args, backends, device, Path(workdir), on_row=lambda row: (rows.append(row), write()))
    if not args.no_anchor:
        print("\n" + textwrap.fill(f"* {ANCHOR_NOTE}", width=100, subsequent_indent="  "))
    info["load_average_after"] = _load_average()
    result["complete"] = True
    write()
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    failed = [r for r in main()["results"] if "error" in r]
    if failed:
        print(f"{len(failed)} row(s) FAILED", file=sys.stderr)
    sys.exit(1 if failed else 0)
