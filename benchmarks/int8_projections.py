"""int8 models with bf16 projections (the default) against all-int8 products: error and speed.

    python benchmarks/int8_projections.py --out FILE [--rounds 10] [--quick]

An int8 model multiplies its two projections (the biLSTM's cell -> projection, the token encoder's
highway -> projection) in bf16 and every other product in int8
(:func:`elmo_fast.reference.lowp.projection_precision`); ``ELMO_FAST_PRODUCTS=uniform`` keeps them
in int8 too. This script measures both, switching the variable between calls:

- ``error``: per model (the bundled one and the original config with random weights), 32 sentences
  of words drawn from this repository's README (two samples), ``state="zero"``: each biLM layer's
  relative Frobenius error against the fp32 model, for int8 native, int8 uniform and bf16;
- ``speed``: the original config, token cache off (every call encodes every token): the benchmark
  batch of 32 sentences (benchmarks/cases.py), one 20-token sentence and one 500-token sentence,
  native and uniform alternating call by call, so machine load hits both alike; medians and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cases  # noqa: E402
import run  # noqa: E402
from lowp_latency import long_sentences  # noqa: E402

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.default_model import default_model_files  # noqa: E402
from elmo_fast.reference.lowp import PRODUCTS_ENV  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"
MODES = ("native", "uniform")


def readme_sentences(n: int, seed: int) -> list[list[str]]:
    """``n`` sentences of 8 to 30 words drawn from the README (real words, some repeated)."""
    words = README.read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    return [[rng.choice(words) for _ in range(rng.randint(8, 30))] for _ in range(n)]


def embed(e: ElmoEmbedder, sentences: list[list[str]], mode: str) -> torch.Tensor:
    os.environ[PRODUCTS_ENV] = mode
    try:
        return e.batch_to_embeddings(sentences)[0]
    finally:
        del os.environ[PRODUCTS_ENV]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="small config, 2 rounds, no 500-token case")
    args = parser.parse_args()
    if PRODUCTS_ENV in os.environ:
        parser.error(f"unset {PRODUCTS_ENV}: the script sets it per call")
    config = "small" if args.quick else "original"
    rounds = 2 if args.quick else args.rounds
    result = {"machine": run.machine_info(torch.device("cpu")), "config": config, "rounds": rounds,
              "kernels": list(torch.ops.elmo_fast.cpu_kernels()), "error": [], "speed": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="elmo_fast_int8_") as workdir, torch.no_grad():
        models = {"bundled": default_model_files(), config: cases.model_files(config, Path(workdir))}
        for name, files in models.items():
            made = {p: ElmoEmbedder(*files, state="zero", backend="cpp", weight_precision=p, token_cache_size=0) for p in ("fp32", "bf16", "int8")}
            for seed in (3, 4):
                sentences = readme_sentences(32, seed)
                base = embed(made["fp32"], sentences, "native").double()
                for precision, mode in (("int8", "native"), ("int8", "uniform"), ("bf16", "native")):
                    out = embed(made[precision], sentences, mode).double()
                    errors = [float((out[:, k] - base[:, k]).norm() / base[:, k].norm()) for k in range(base.shape[1])]
                    row = {"model": name, "seed": seed, "weight_precision": precision, "products": mode, "layer_rel_err": errors, "worst": max(errors)}
                    result["error"].append(row)
                    print(json.dumps(row), flush=True)
                    save()
        e = ElmoEmbedder(*models[config], state="zero", backend="cpp", weight_precision="int8", token_cache_size=0)
        speed_cases = [("batch32", cases.sentences(32), rounds), ("one_20_tokens", long_sentences(1, 20), rounds * 4)]
        if not args.quick:
            speed_cases.append(("one_500_tokens", long_sentences(1, 500), max(2, rounds // 3)))
        for case, sentences, repeats in speed_cases:
            tokens = sum(map(len, sentences))
            for mode in MODES:
                embed(e, sentences, mode)
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            for _ in range(repeats):
                for mode in MODES:
                    start = time.perf_counter()
                    embed(e, sentences, mode)
                    times[mode].append(time.perf_counter() - start)
            medians = {mode: statistics.median(ts) for mode, ts in times.items()}
            row = {"case": case, "tokens": tokens, "threads": torch.get_num_threads(), "load_average_1m": round(os.getloadavg()[0], 2),
                   **{f"{mode}_median_ms": medians[mode] * 1e3 for mode in MODES},
                   **{f"{mode}_tokens_per_s": tokens / medians[mode] for mode in MODES},
                   "time_ratio_native_over_uniform": medians["native"] / medians["uniform"],
                   "times_ms": {mode: [t * 1e3 for t in ts] for mode, ts in times.items()}}
            result["speed"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "times_ms"}), flush=True)
            save()
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
