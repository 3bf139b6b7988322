"""The token encoder's precision in an int8 model: error and speed of int8 vs bf16 highway/projection products.

    python benchmarks/encoder_precision.py --out FILE [--rounds 12] [--quick]

With ``weight_precision="int8"`` the biLSTM multiplies in int8 and the token encoder's highway and
projection in bf16 (:func:`elmo_fast.reference.lowp.encoder_precision`). This script measures what
that choice costs and buys, setting the module's ``encoder_precision`` to each candidate in turn:

- ``error``: per model (the bundled one and the original config with random weights), 32 sentences
  of words drawn from this repository's README, ``state="zero"``: each biLM layer's relative
  Frobenius error against the fp32 model, for an int8 biLSTM with an fp32, bf16 or int8 encoder, and
  for the bf16 model;
- ``speed``: the original config, token cache off (so every call encodes every token), the benchmark
  batch of 32 sentences (benchmarks/cases.py) and one 20-token sentence, with the int8 and the bf16
  encoder alternating call by call, so machine load hits both alike; medians and the ratio.
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

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_sentences(n: int, seed: int) -> list[list[str]]:
    """``n`` sentences of 8 to 30 words drawn from the README (real words, some repeated)."""
    words = README.read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    return [[rng.choice(words) for _ in range(rng.randint(8, 30))] for _ in range(n)]


def embedder(files: tuple[Path, Path], precision: str, encoder: str | None = None) -> ElmoEmbedder:
    """``state="zero"``, token cache off; ``encoder`` overrides the token encoder's products precision."""
    e = ElmoEmbedder(*files, state="zero", backend="cpp", weight_precision=precision, token_cache_size=0)
    if encoder is not None:
        e.elmo_bilm.encoder_precision = encoder
    return e


def layer_errors(out: torch.Tensor, base: torch.Tensor) -> list[float]:
    return [float((out[:, k] - base[:, k]).norm() / base[:, k].norm()) for k in range(base.shape[1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="small config, 2 rounds")
    args = parser.parse_args()
    config = "small" if args.quick else "original"
    rounds = 2 if args.quick else args.rounds
    result = {"machine": run.machine_info(torch.device("cpu")), "config": config, "rounds": rounds,
              "kernels": list(torch.ops.elmo_fast.cpu_kernels()), "error": [], "speed": []}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="elmo_fast_encoder_") as workdir, torch.no_grad():
        models = {"bundled": default_model_files(), config: cases.model_files(config, Path(workdir))}
        for name, files in models.items():
            for seed in (3, 4):
                sentences = readme_sentences(32, seed)
                base = embedder(files, "fp32").batch_to_embeddings(sentences)[0].double()
                for precision, encoder in (("int8", "fp32"), ("int8", "bf16"), ("int8", "int8"), ("bf16", None)):
                    out = embedder(files, precision, encoder).batch_to_embeddings(sentences)[0].double()
                    errors = layer_errors(out, base)
                    row = {"model": name, "seed": seed, "weight_precision": precision, "encoder": encoder or precision,
                           "layer_rel_err": errors, "worst": max(errors)}
                    result["error"].append(row)
                    print(json.dumps(row), flush=True)
                    save()
        files = models[config]
        int8 = {enc: embedder(files, "int8", enc) for enc in ("int8", "bf16")}
        for case, sentences in (("batch32", cases.sentences(32)), ("batch1", long_sentences(1, 20))):
            tokens = sum(map(len, sentences))
            times: dict[str, list[float]] = {enc: [] for enc in int8}
            for e in int8.values():
                e.batch_to_embeddings(sentences)
            for _ in range(rounds * (1 if case == "batch32" else 4)):
                for enc, e in int8.items():
                    start = time.perf_counter()
                    e.batch_to_embeddings(sentences)
                    times[enc].append(time.perf_counter() - start)
            medians = {enc: statistics.median(ts) for enc, ts in times.items()}
            row = {"case": case, "tokens": tokens, "threads": torch.get_num_threads(), "load_average_1m": round(os.getloadavg()[0], 2),
                   **{f"{enc}_encoder_median_ms": medians[enc] * 1e3 for enc in int8},
                   **{f"{enc}_encoder_tokens_per_s": tokens / medians[enc] for enc in int8},
                   "time_ratio_bf16_over_int8": medians["bf16"] / medians["int8"],
                   "times_ms": {enc: [t * 1e3 for t in ts] for enc, ts in times.items()}}
            result["speed"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "times_ms"}), flush=True)
            save()
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
