"""Each backend's float32 error against a float64 evaluation of the same model, beside AllenNLP's.

    python benchmarks/accuracy.py --out FILE [--backends ref,cpp,triton] [--wide]

Truth is the reference (``backend="ref"``) run in float64 on the same weights and inputs. For every
backend, case and layer the root-mean-square and largest error of its float32 biLM activations
against that truth are measured over the real positions (sentence boundaries included):

* ``fixture``: tests/fixtures/allennlp_tiny, three calls with carried state (the 20 sentences, the
  same again, then batch_b); ``zero`` is the first call, ``carried`` the second. AllenNLP's own
  error is that of its float32 recording (``bilm_activations`` and
  ``bilm_activations_second_call_no_reset``) against the same truth.
* ``large``: a random tiny model whose activations reach |5| (tanh char-CNN, clips at 5), six
  batches of random sentences with carried state; ``zero`` is the first batch, ``carried`` the last.
  There is no AllenNLP recording; the bar is the reference run in float32, which computes with the
  same PyTorch operations as AllenNLP (the fixture case shows its error next to AllenNLP's), so
  ``ref`` itself is not listed there.
* ``wide`` (``--wide``, not in the tests): the same on a model with the original char-CNN filters
  (2048 wide) and C = 1024, where long sums decide the error (Triton only on a GPU).

Triton runs on CPU only under ``TRITON_INTERPRET=1`` (or on a CUDA device); ``cuda`` needs a GPU.
On a GPU TF32 is switched off for the whole run. The functions are imported by
tests/test_float64_accuracy.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from elmo_fast import batch_to_ids
from elmo_fast.modules import BiLm
from elmo_fast.weights import ElmoOptions, ElmoWeights, load_weights, random_weights

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from utils import no_tf32, random_sentences  # noqa: E402  (tests/utils.py: TF32 off, random sentences)

FIXTURE_DIR = ROOT / "tests" / "fixtures" / "allennlp_tiny"
LARGE = ElmoOptions(projection_dim=16, cell_dim=48, filters=((1, 8), (2, 16), (3, 24), (5, 16)), n_highway=2,
                    char_embed_dim=8, activation="tanh", cell_clip=5.0, proj_clip=5.0)
WIDE = ElmoOptions(projection_dim=128, cell_dim=1024, n_highway=2, char_embed_dim=16)
STATES: tuple[str, ...] = ("zero", "carried")


@dataclass
class Case:
    """A model, its batches of character ids (run in order, state carried), and which batch is which state."""

    name: str
    weights: ElmoWeights
    batches: list[torch.Tensor]
    state_batch: dict[str, int]


def fixture_case() -> Case:
    import numpy as np

    z = np.load(FIXTURE_DIR / "expected.npz")
    sentences, batch_b = json.loads(str(z["sentences_json"])), json.loads(str(z["batch_b_json"]))
    weights = load_weights(FIXTURE_DIR / "options.json", FIXTURE_DIR / "weights.hdf5")
    ids = batch_to_ids(sentences)
    return Case("fixture", weights, [ids, ids, batch_to_ids(batch_b)], {"zero": 0, "carried": 1})


def random_case(name: str, options: ElmoOptions, scale: float, batches: int = 6, rows: int = 8, seed: int = 0) -> Case:
    """Random weights (``scale``, see :func:`elmo_fast.weights.random_weights`) and ``batches`` batches
    of ``rows`` random sentences (mixed lengths, odd characters)."""
    ids = [batch_to_ids(random_sentences(rows, seed=seed + i, max_len=14)) for i in range(batches)]
    return Case(name, random_weights(options, seed=seed, scale=scale), ids, {"zero": 0, "carried": batches - 1})


def large_case() -> Case:
    return random_case("large", LARGE, scale=2.0)


def wide_case() -> Case:
    return random_case("wide", WIDE, scale=1.0, batches=3, rows=6)


def run(case: Case, backend: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(activations (L+1, B, T+2, 2P) float64 on CPU, mask)`` of every batch of ``case``, state carried."""
    bilm = BiLm(case.weights, backend=backend, token_cache_size=0).to(device=device, dtype=dtype)
    out = []
    with torch.no_grad():
        for ids in case.batches:
            got = bilm(ids.to(device))
            out.append((torch.stack(got.activations).double().cpu(), got.mask.cpu()))
    return out


def layer_errors(got: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> list[dict[str, float]]:
    """Per layer, ``rms`` and ``max`` of ``got - truth`` over the positions where ``mask`` is set."""
    diff = (got.double() - truth.double())[:, mask]
    return [{"rms": float(d.pow(2).mean().sqrt()), "max": float(d.abs().max())} for d in diff]


def allennlp_errors(truth: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, list[dict[str, float]]]:
    """AllenNLP 2.10.1's float32 recording of the fixture against the float64 truth, per state."""
    import numpy as np

    z = np.load(FIXTURE_DIR / "expected.npz")
    recorded = {"zero": z["bilm_activations"], "carried": z["bilm_activations_second_call_no_reset"]}
    case = {"zero": 0, "carried": 1}
    return {s: layer_errors(torch.from_numpy(recorded[s]), truth[case[s]][0], truth[case[s]][1]) for s in STATES}


def backend_errors(case: Case, backend: str, truth, device: str = "cpu") -> dict[str, list[dict[str, float]]]:
    """``backend``'s float32 error per state and layer against ``truth`` (from ``run(case, "ref", float64)``)."""
    got = run(case, backend, torch.float32, device)
    return {s: layer_errors(got[i][0], truth[i][0], truth[i][1]) for s, i in case.state_batch.items()}


def available_backends() -> list[str]:
    """ref and cpp where built, triton under the interpreter or on a GPU, cuda on a GPU."""
    from elmo_fast import _backends

    found = ["ref"]
    if _backends.probe("cpp")[0]:
        found.append("cpp")
    if _backends.probe("triton")[0] and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        found.append("triton")
    if torch.cuda.is_available() and _backends.probe("cuda")[0]:
        found.append("cuda")
    return found


def measure(cases: list[Case], backends: list[str]) -> dict:
    """The whole table: per case, the bar (AllenNLP's error, or the float32 reference's) and each backend's."""
    no_tf32()
    table = {}
    for case in cases:
        truth = run(case, "ref", torch.float64)
        bar = allennlp_errors(truth) if case.name == "fixture" else backend_errors(case, "ref", truth)
        row = {"bar": "allennlp-2.10.1-recording" if case.name == "fixture" else "ref-float32", "allennlp": bar, "backends": {}}
        for backend in backends:
            if backend == "ref" and case.name != "fixture":
                continue  # the bar itself
            if backend == "triton" and case.name == "wide" and not torch.cuda.is_available():
                continue  # hours under the interpreter
            device = "cuda" if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()) else "cpu"
            start = time.perf_counter()
            row["backends"][backend] = backend_errors(case, backend, truth, device)
            print(f"  {case.name}/{backend}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        table[case.name] = row
    return table


def print_table(table: dict) -> None:
    """Markdown table: RMS error per layer (zero | carried), and the worst ratio to the bar."""
    print("| case | who | layer 0 (zero / carried) | layer 1 | layer 2 | worst RMS ratio to bar |")
    print("|---|---|---|---|---|---|")
    for name, row in table.items():
        bar_label = "AllenNLP 2.10.1 (float32 recording)" if row["bar"].startswith("allennlp") else "bar: `ref` in float32"
        entries = [(bar_label, row["allennlp"])] + [(f"`{b}`", e) for b, e in row["backends"].items()]
        for who, errs in entries:
            layers = len(errs["zero"])
            cells = [f"{errs['zero'][k]['rms']:.2e} / {errs['carried'][k]['rms']:.2e}" for k in range(layers)]
            worst = max(errs[s][k]["rms"] / row["allennlp"][s][k]["rms"] for s in STATES for k in range(layers))
            print(f"| {name} | {who} | {' | '.join(cells)} | {worst:.2f} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backends", default=None, help="comma-separated; default: every one usable here")
    parser.add_argument("--wide", action="store_true", help="also the wide model (2048-wide char-CNN, C = 1024)")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    backends = args.backends.split(",") if args.backends else available_backends()
    cases = [fixture_case(), large_case()] + ([wide_case()] if args.wide else [])
    table = measure(cases, backends)
    print_table(table)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    record = {"label": args.label, "commit": commit, "machine": platform.platform(), "torch": torch.__version__,
              "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1", "cases": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
