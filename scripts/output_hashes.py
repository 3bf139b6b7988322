"""Hashes of the ``cpp`` backend's whole-model outputs, to check that a change keeps results bit-identical.

    PYTHONPATH=TREE python scripts/output_hashes.py [--precisions fp32] [--root TREE]

Prints JSON: a SHA-256 prefix of ``ElmoEmbedder.batch_to_embeddings`` per case (the test fixture with
1 and 2 threads; a random-weight model of the original size at batch 1, 8 and 32 with 2 threads and
at batch 1 with 1 thread; ``state="zero"``; the token cache on for the fixture, off for the other
model, as ``benchmarks/cases.py`` loads it). Run it for two builds
(``PYTHONPATH`` set to each source tree with its extension built in place: an editable install of the
other tree is imported otherwise) and compare the outputs, e.g. ``diff <(...) <(...)``. Equal hashes
for ``fp32`` are what "fp32 results bit-identical" means in the READMEs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precisions", default="fp32", help="comma list of weight precisions (fp32, bf16, int8)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the tree whose tests/ and benchmarks/ to use")
    args = parser.parse_args()
    sys.path[:0] = [str(args.root / "tests"), str(args.root / "benchmarks")]
    import cases
    from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, random_sentences

    from elmo_fast import ElmoEmbedder

    def digest(t: torch.Tensor) -> str:
        return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]

    out: dict[str, str] = {}
    previous = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="elmo_fast_hashes_") as workdir:
        files = cases.model_files("original", Path(workdir))
        for precision in args.precisions.split(","):
            fixture = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", state="zero", weight_precision=precision)
            for threads in (1, 2):
                torch.set_num_threads(threads)
                out[f"fixture {precision} threads {threads}"] = digest(fixture.batch_to_embeddings(random_sentences(8, seed=7, max_len=20))[0])
            original = cases.load_embedder(files, "cpp", torch.device("cpu"), weight_precision=precision)
            for threads, batch in ((2, 1), (2, 8), (2, 32), (1, 1)):
                torch.set_num_threads(threads)
                out[f"original {precision} batch {batch} threads {threads}"] = digest(original.batch_to_embeddings(cases.sentences(batch))[0])
    torch.set_num_threads(previous)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
