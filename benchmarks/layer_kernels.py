"""One original-config biLSTM layer through the ``cpp`` kernel: the micro-kernel measurement.

    python benchmarks/layer_kernels.py --out FILE [--batches 1,2,32] [--min-run-time 3] [--label TEXT]

Times ``elmo_fast.ops.lstmp.lstmp(backend="cpp")`` on a random-weight layer of the original model's shape
(P=512, C=4096, 2 directions, 22 steps, every row full length) for every weight precision, with
torch's threads, timed by ``torch.utils.benchmark`` (``benchmarks/timing.py``). The kernel is chosen at run time (``ELMO_FAST_DISABLE_AVX512=1`` /
``ELMO_FAST_DISABLE_AVX2=1`` select the narrower ones), so before/after comparisons run this script
once per build or setting and compare the JSON files; ``--label`` says which is which.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from elmo_fast.ops.lstmp import lstmp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import cpu_times_ms  # noqa: E402

P, C, D, STEPS = 512, 4096, 2, 22


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="1,2,32")
    parser.add_argument("--min-run-time", type=float, default=3.0, help="seconds timed per row (torch.utils.benchmark)")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    w_ih = torch.randn(D, P, 4 * C, generator=g) * 0.02
    w_hh = torch.randn(D, P, 4 * C, generator=g) * 0.02
    bias = torch.zeros(D, 4 * C)
    w_proj = torch.randn(D, C, P, generator=g) * 0.02
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(D, batch, STEPS, P, generator=g)
        lengths = torch.full((batch,), STEPS)
        for precision in ("fp32", "bf16", "int8"):
            run = lambda: lstmp(x, lengths, w_ih, w_hh, bias, w_proj, cell_clip=3.0, proj_clip=3.0, weight_precision=precision, backend="cpp")  # noqa: E731
            with torch.no_grad():
                run()
                times = [t / 1e3 for t in cpu_times_ms(run, args.min_run_time)]
            flops = 2 * D * batch * STEPS * (2 * P * 4 * C + C * P)
            row = {"batch": batch, "weight_precision": precision, "median_ms": statistics.median(times) * 1e3,
                   "min_ms": min(times) * 1e3, "gflop_per_s": flops / statistics.median(times) / 1e9, "times_ms": [t * 1e3 for t in times]}
            rows.append(row)
            print(f"batch {batch:3d} {precision}: median {row['median_ms']:7.1f} ms  min {row['min_ms']:7.1f} ms  {row['gflop_per_s']:6.1f} GFLOP/s", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    record = {
        "label": args.label, "layer": {"P": P, "C": C, "directions": D, "steps": STEPS}, "threads": torch.get_num_threads(),
        "env": {k: v for k, v in os.environ.items() if k.startswith("ELMO_FAST_")}, "commit": commit,
        "machine": platform.platform(), "load_average": os.getloadavg(), "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
