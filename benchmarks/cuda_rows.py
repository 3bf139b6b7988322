"""Benchmark rows of the ``cuda`` backend's LSTM (issue 8 targets), on one CUDA GPU.

    python benchmarks/cuda_rows.py [--batches 1,128] [--runs 20] [--out FILE] [--device cuda]

The LSTM part of the original model (P=512, C=4096, 2 layers x 2 directions, cell/projection clip 3,
residual on layer 2) on random inputs of ~20-token sentences (22 positions with boundaries; batch 1 is
exactly 22, larger batches 18..26 per row), through ``elmo_fast.ops.lstmp`` with each variant:

    cuda  bf16  persistent   the cooperative kernel with the weights in shared memory
    cuda  bf16  per-step     same op with the persistent kernel switched off
    cuda  fp32  per-step     the float32 path
    triton bf16 / fp32       the Triton per-step kernels (when elmo_fast.kernels loads)
    ref   fp32               the reference on the GPU (the truth for the error column)

Times are medians of ``--runs`` calls after ``--warmup`` calls, each synchronised (wall clock) and
also measured with CUDA events. The targets checked at the end: batch 1 cuda bf16 <= 0.3 ms;
batch 128 cuda bf16 at least 2x faster than triton bf16. ``--device cpu --batches 1 --runs 1`` runs
the script itself without a GPU (only the ``ref`` row; its time means nothing).

benchmarks/gpu_check.sh runs it as its fourth step (after building ``elmo_fast._C_cuda`` in place) and
puts its rows and verdicts into the summary.
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path

import torch

from elmo_fast import _backends
from elmo_fast.ops import registry
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.weights import CONFIGS, random_weights

VARIANTS = (
    ("cuda", torch.bfloat16, True),
    ("cuda", torch.bfloat16, False),
    ("cuda", torch.float32, False),
    ("triton", torch.bfloat16, None),
    ("triton", torch.float32, None),
    ("ref", torch.float32, None),
)
TARGET_B1_MS = 0.3
TARGET_B128_SPEEDUP = 2.0


def _lengths(batch: int) -> torch.Tensor:
    if batch == 1:
        return torch.tensor([22])
    g = torch.Generator().manual_seed(batch)
    return torch.randint(18, 27, (batch,), generator=g)


def _unavailable(backend: str, device: torch.device) -> str | None:
    try:
        _backends.resolve(backend, device)
    except _backends.BackendUnavailable as exc:
        return str(exc)
    if registry.lookup("lstmp", backend) is None:
        return f"elmo_fast.ops.lstmp has no {backend!r} implementation registered"
    return None


def _timed(fn, runs: int, device: torch.device) -> tuple[list[float], list[float]]:
    """Wall-clock ms of each synchronised call, and the CUDA-event ms (empty on CPU)."""
    wall, events = [], []
    cuda = device.type == "cuda"
    for _ in range(runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        if cuda:
            start.record()
        fn()
        if cuda:
            end.record()
            torch.cuda.synchronize(device)
            events.append(start.elapsed_time(end))
        wall.append((time.perf_counter() - t0) * 1e3)
    return wall, events


@torch.no_grad()
def measure(batch: int, runs: int, warmup: int, device: torch.device) -> list[dict]:
    """Every variant at ``batch``: median ms and max relative error against ref fp32."""
    options = CONFIGS["original"]
    weights = random_weights(options, seed=0)
    lengths = _lengths(batch).to(device)
    width = int(lengths.max())
    x32 = torch.randn(2, batch, width, options.projection_dim, generator=torch.Generator().manual_seed(1)).to(device)
    rows, truth = [], None
    for backend, dtype, persistent in reversed(VARIANTS):
        name = f"{backend} {str(dtype).replace('torch.', '')}" + ("" if persistent is None else
                                                                 " persistent" if persistent else " per-step")
        row = {"batch": batch, "variant": name}
        reason = _unavailable(backend, device)
        if reason:
            rows.append({**row, "skipped": reason})
            continue
        if backend == "cuda":
            importlib.import_module("elmo_fast._C_cuda").set_persistent_enabled(persistent)
        layers = [tuple(w.to(device, dtype) for w in (lw.w_ih, lw.w_hh, lw.bias, lw.w_proj)) for lw in weights.lstm]
        x = x32.to(dtype)

        def run():
            out = x
            for layer, params in enumerate(layers):
                out, _, _ = lstmp(out, lengths, *params, cell_clip=options.cell_clip, proj_clip=options.proj_clip,
                                  residual=layer > 0, backend=backend)
            return out

        try:
            result = run().float()
            _timed(run, warmup, device)
            wall, events = _timed(run, runs, device)
        except Exception as exc:  # report and go on: one failing variant must not hide the others
            rows.append({**row, "error": f"{type(exc).__name__}: {exc}"})
            continue
        finally:
            if backend == "cuda":
                importlib.import_module("elmo_fast._C_cuda").set_persistent_enabled(True)
        if truth is None:
            truth = result
        rows.append({**row, "median_ms": statistics.median(wall), "min_ms": min(wall),
                     "event_median_ms": statistics.median(events) if events else None, "runs": runs,
                     "max_rel_error": float((result - truth).abs().max() / truth.abs().max()),
                     "has_nan": bool(torch.isnan(result).any())})
    return rows[::-1]


def verdicts(rows: list[dict]) -> list[str]:
    """The issue's two targets, from the measured rows."""
    ms = {(r["batch"], r["variant"]): r["median_ms"] for r in rows if "median_ms" in r}
    lines = []
    if (1, "cuda bfloat16 persistent") in ms:
        got = ms[1, "cuda bfloat16 persistent"]
        lines.append(f"batch 1: cuda bf16 {got:.3f} ms (target <= {TARGET_B1_MS} ms): "
                     f"{'met' if got <= TARGET_B1_MS else 'MISSED'}")
    if (128, "cuda bfloat16 persistent") in ms and (128, "triton bfloat16") in ms:
        speedup = ms[128, "triton bfloat16"] / ms[128, "cuda bfloat16 persistent"]
        lines.append(f"batch 128: cuda bf16 {speedup:.2f}x triton bf16 (target >= {TARGET_B128_SPEEDUP}x): "
                     f"{'met' if speedup >= TARGET_B128_SPEEDUP else 'MISSED'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,128")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("cuda_rows.py needs a CUDA device (or --device cpu to check the script itself)")
    batches = [int(b) for b in args.batches.split(",")]
    rows = [row for batch in batches for row in measure(batch, args.runs, args.warmup, device)]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{device_name}, torch {torch.__version__}")
    print(f"{'batch':>5s} {'variant':26s} {'ms':>9s} {'event ms':>9s} {'rel err':>9s}")
    for r in rows:
        if "median_ms" in r:
            event = "-" if r["event_median_ms"] is None else f"{r['event_median_ms']:.3f}"
            print(f"{r['batch']:5d} {r['variant']:26s} {r['median_ms']:9.3f} {event:>9s} "
                  f"{r['max_rel_error']:9.2e}{'  NaN!' if r['has_nan'] else ''}")
        else:
            print(f"{r['batch']:5d} {r['variant']:26s} {r.get('skipped') or r.get('error')}")
    lines = verdicts(rows)
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"device": device_name, "torch": torch.__version__, "rows": rows, "verdicts": lines}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
