"""Before/after speed of the ``cpp`` kernels in one run: two builds, interleaved rounds.

    python benchmarks/ab_speed.py --before DIR --after DIR --out FILE [--rounds 6] [--repeats 3]

``DIR`` is a source tree with its extension built in place (``python setup.py build_ext --inplace``,
or this checkout after ``pip install -e``); each measurement runs in a child process with
``PYTHONPATH=DIR``, so both builds are timed on the same machine within minutes of each other. The
rounds alternate the order (before-after, then after-before) so that a slow drift of the machine's
load hits both sides alike. Cases, on random weights with the original model's shapes:

* ``layer-b1`` / ``layer-b32``: one biLSTM layer (P=512, C=4096, 2 directions, 22 steps, fp32) at
  batch 1 and 32, ``lstmp(backend="cpp")`` as in ``benchmarks/layer_kernels.py`` (the public
  signature, the same before and after the op registry of issue 16);
* ``encoder-b32``: the token encoder (char-CNN with the original filters, two highway layers, the
  projection) on the distinct tokens of 32 random sentences, ``token_encoder_cpp``.

Each child runs with one thread and records wall-clock and CPU time (``time.process_time``): on a
machine shared with other jobs the CPU time of a single-threaded process is the steadier measure
(waiting for a core is not counted), so the ratio is taken on CPU times. The JSON holds every time,
the per-case median of each side, their ratio (after / before: above 1 is slower) and the load
average before and after, which says how busy the machine was.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES: tuple[str, ...] = ("layer-b1", "layer-b32", "encoder-b32")


def child(case: str, repeats: int) -> None:
    """Time ``case`` ``repeats`` times after one warm-up call; print the times as JSON."""
    import torch

    import elmo_fast
    from elmo_fast.ops.lstmp import lstmp
    from elmo_fast.ops.token_encoder import token_encoder_cpp
    from elmo_fast.weights import ORIGINAL, random_weights

    g = torch.Generator().manual_seed(0)
    if case.startswith("layer"):
        p, c, d, steps, batch = 512, 4096, 2, 22, int(case.split("-b")[1])
        w_ih, w_hh = (torch.randn(d, p, 4 * c, generator=g) * 0.02 for _ in range(2))
        bias, w_proj = torch.zeros(d, 4 * c), torch.randn(d, c, p, generator=g) * 0.02
        x, lengths = torch.randn(d, batch, steps, p, generator=g), torch.full((batch,), steps)
        run = lambda: lstmp(x, lengths, w_ih, w_hh, bias, w_proj, cell_clip=3.0, proj_clip=3.0, backend="cpp")  # noqa: E731
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from utils import random_sentences

        from elmo_fast import batch_to_ids

        weights = random_weights(ORIGINAL, seed=0).char_cnn
        ids = batch_to_ids(random_sentences(32, seed=0, max_len=25))
        run = lambda: token_encoder_cpp(ids, weights)  # noqa: E731
    torch.set_num_threads(1)
    with torch.no_grad():
        run()
        times, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    print(json.dumps({"times_s": times, "cpu_s": cpu, "module": elmo_fast.__file__, "threads": torch.get_num_threads()}))


def measure(tree: Path, case: str, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path)
    parser.add_argument("--after", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else loaded the machine)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeats)
        return
    if not (args.before and args.after and args.out):
        parser.error("--before, --after and --out are required")
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    times: dict[str, dict[str, list[float]]] = {case: {"before": [], "after": []} for case in args.cases.split(",")}
    cpu: dict[str, dict[str, list[float]]] = {case: {"before": [], "after": []} for case in times}
    modules: dict[str, str] = {}
    load_start = os.getloadavg()
    for rnd in range(args.rounds):
        order = ("before", "after") if rnd % 2 == 0 else ("after", "before")
        for case in times:
            for side in order:
                got = measure(sides[side], case, args.repeats)
                times[case][side] += got["times_s"]
                cpu[case][side] += got["cpu_s"]
                modules[side] = got["module"]
            print(f"round {rnd + 1}/{args.rounds} {case}: "
                  + "  ".join(f"{s} {statistics.median(cpu[case][s]) * 1e3:8.1f} ms cpu" for s in ("before", "after")), flush=True)
    results = {}
    for case, t in cpu.items():
        before, after = statistics.median(t["before"]), statistics.median(t["after"])
        wall = times[case]
        results[case] = {"before_cpu_median_ms": before * 1e3, "after_cpu_median_ms": after * 1e3, "ratio_after_over_before": after / before,
                         "ratio_of_min_cpu": min(t["after"]) / min(t["before"]),
                         "before_cpu_ms": [x * 1e3 for x in t["before"]], "after_cpu_ms": [x * 1e3 for x in t["after"]],
                         "wall_ratio_after_over_before": statistics.median(wall["after"]) / statistics.median(wall["before"]),
                         "before_wall_ms": [x * 1e3 for x in wall["before"]], "after_wall_ms": [x * 1e3 for x in wall["after"]]}
        print(f"{case:12s} cpu before {before * 1e3:8.1f} ms  after {after * 1e3:8.1f} ms  ratio {after / before:.3f} "
              f"(min ratio {results[case]['ratio_of_min_cpu']:.3f}, wall ratio {results[case]['wall_ratio_after_over_before']:.3f})")
    record = {"trees": {k: str(v) for k, v in sides.items()}, "modules": modules, "rounds": args.rounds, "repeats": args.repeats,
              "machine": platform.platform(), "cpu_count": os.cpu_count(), "load_average_start": load_start,
              "load_average_end": os.getloadavg(), "note": args.note, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
