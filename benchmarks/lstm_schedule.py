"""How the ``cpp`` LSTM shares a call between threads, by batch size: which schedule to pick when.

    python benchmarks/lstm_schedule.py --out FILE [--config original] [--batches 1,2,4,8,16,32]
                                       [--precisions fp32,bf16,int8] [--rounds 5] [--quick]

The biLSTM layers of a model config (default the original model; random weights, ``benchmarks/cases.py``'s inputs: sentences
of 16 to 24 words), ``elmo_fast.ops.lstmp`` on the ``cpp`` backend, once per schedule that
``ELMO_FAST_LSTM_SCHEDULE`` selects (see ``csrc/cpu/lstmp.cpp``):

- ``directions``: one thread per direction, each runs all its steps (no waiting);
- ``cooperative``: the directions in turn, every step split over all threads with a barrier after
  each phase (each thread keeps reading its own share of one direction's weights).

Rounds interleave the schedules, so a change in machine load hits both alike; the JSON keeps every
time. Every schedule gives the same bits (tests/test_cpp_lstmp.py), so only time is compared; the
default choice (``choose_plan`` in ``csrc/cpu/lstmp.cpp``) follows from these rows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
import run  # noqa: E402
import timing  # noqa: E402

from elmo_fast.weights import load_weights  # noqa: E402

SCHEDULES = ("directions", "cooperative")
VARIABLE = "ELMO_FAST_LSTM_SCHEDULE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", default="original", choices=sorted(cases.BENCH_CONFIGS))
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--precisions", default="fp32,bf16,int8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small config, batches 1 and 8, one round")
    args = parser.parse_args()
    config = "small" if args.quick else args.config
    batches = [1, 8] if args.quick else [int(b) for b in args.batches.split(",")]
    rounds = 1 if args.quick else args.rounds
    precisions = args.precisions.split(",")
    result = {"machine": run.machine_info(torch.device("cpu")), "config": config, "rounds": rounds,
              "kernels": list(torch.ops.elmo_fast.cpu_kernels()), "rows": []}
    saved = os.environ.pop(VARIABLE, None)
    try:
        with tempfile.TemporaryDirectory(prefix="elmo_fast_schedule_") as workdir:
            weights = load_weights(*cases.model_files(config, Path(workdir)))
            for batch in batches:
                for precision in precisions:
                    case = cases.setup_lstm(weights, batch, "cpp", torch.device("cpu"), weight_precision=precision)
                    times: dict[str, list[float]] = {s: [] for s in SCHEDULES}
                    for _ in range(rounds):
                        for schedule in SCHEDULES:
                            os.environ[VARIABLE] = schedule
                            times[schedule] += timing.times_ms(case.fn, torch.device("cpu"), runs=3, warmup=1)
                    os.environ.pop(VARIABLE)
                    medians = {s: statistics.median(t) for s, t in times.items()}
                    row = {"batch": batch, "weight_precision": precision, "tokens": case.tokens,
                           "median_ms": medians, "ratio_cooperative_to_directions": medians["cooperative"] / medians["directions"],
                           "times_ms": times, "load_average_1m": round(os.getloadavg()[0], 2)}
                    result["rows"].append(row)
                    print(f"batch {batch:3d} {precision}: directions {medians['directions']:.1f} ms, cooperative "
                          f"{medians['cooperative']:.1f} ms ({row['ratio_cooperative_to_directions']:.2f}x)", flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        if saved is not None:
            os.environ[VARIABLE] = saved
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
