"""Ray engine scaling: the same corpus embedded by the local engine and by 1, 2, ... Ray workers.

    python benchmarks/ray_scaling.py [--sentences 20000] [--workers 1 2] [--repeats 2]

Uses the tiny AllenNLP fixture model (``tests/fixtures/allennlp_tiny``; ``--model default``: the
bundled default model trained on WordNet glosses, P=64, C=256, about 3.5x slower per sentence here;
``demo`` is its old name, from when the bundled model had random weights) and a generated corpus
(``soak.write_corpus``'s sentences). Each Ray row starts a fresh local Ray instance with as many
CPUs as workers, so every worker has one core and one torch thread; Ray's start is outside the
timed region, the workers' start (loading torch and the model) inside it. The local row is
``ElmoEmbedder.embed_file`` in this process with one thread. Every output is checked against the
local one. Prints a table and writes JSON (with the machine's load average before and after each
run, since other jobs may share the cores) to ``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import torch

from elmo_fast import ElmoEmbedder
from elmo_fast.jobs import embed_file_ray, require_ray

HERE = Path(__file__).parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "allennlp_tiny"
sys.path.insert(0, str(HERE))
from soak import write_corpus  # noqa: E402


def _same(a: Path, b: Path) -> bool:
    with h5py.File(a) as fa, h5py.File(b) as fb:
        keys = set(fa) - {"sentence_to_index"}
        return set(fa) == set(fb) and all(np.allclose(fa[k][...], fb[k][...], atol=1e-5) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--segment-size", type=int, default=1024)
    parser.add_argument("--no-bucket", action="store_true")
    parser.add_argument(
        "--model", choices=("tiny", "default", "demo"), default="tiny",
        help="tiny fixture, or the bundled default model (demo: its old name)",
    )
    args = parser.parse_args()
    ray = require_ray()
    torch.set_num_threads(1)
    options, weights = (FIXTURE / "options.json", FIXTURE / "weights.hdf5") if args.model == "tiny" else (None, None)
    job = dict(batch_size=args.batch_size, segment_size=args.segment_size, progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        # About 90 bytes a line; the first --sentences lines are kept.
        write_corpus(corpus, size_mb=args.sentences * 100 / 2**20)
        with open(corpus, encoding="utf-8") as f:
            lines = [next(f) for _ in range(args.sentences)]
        corpus.write_text("".join(lines), encoding="utf-8")
        local = Path(tmp) / "local.hdf5"
        for repeat in range(args.repeats):
            for workers in [0, *args.workers]:
                out = Path(tmp) / f"out-{workers}-{repeat}.hdf5"
                load_before = os.getloadavg()[0]
                if workers == 0:
                    start = time.perf_counter()
                    ElmoEmbedder(options, weights, state="zero").embed_file(corpus, out, bucket=not args.no_bucket, **job)
                    seconds, merge = time.perf_counter() - start, float("nan")
                    if repeat == 0:
                        out.rename(local)
                else:
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
                    start = time.perf_counter()
                    report = embed_file_ray(corpus, out, options, weights, bucket=not args.no_bucket, **job)
                    seconds, merge = time.perf_counter() - start, report.merge_seconds
                    ray.shutdown()
                    assert _same(out, local), f"{workers} workers: output differs from the local engine"
                rows.append(
                    dict(engine="local" if workers == 0 else "ray", workers=workers or 1, repeat=repeat, seconds=seconds,
                         merge_seconds=merge, sentences_per_s=args.sentences / seconds, load_before=load_before,
                         load_after=os.getloadavg()[0])
                )  # fmt: skip
                row = rows[-1]
                print(
                    f"{row['engine']:5} workers={row['workers']} run {repeat}: {seconds:6.1f} s (merge {merge:4.1f} s), "
                    f"{row['sentences_per_s']:6.0f} sent/s, load {load_before:.1f}->{row['load_after']:.1f}"
                )
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report = dict(args=vars(args), cpus=os.cpu_count(), machine=platform.platform(), ray=ray.__version__, rows=rows)
    path = results / f"ray_scaling-{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
