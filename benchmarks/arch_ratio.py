"""Same-run speed of two source trees of elmo_fast on one small case: is a refactor no slower?

    python benchmarks/arch_ratio.py --old-rev bd51faa [--rounds 5] [--out FILE]

The old tree is ``git archive``d into a temporary folder (with this checkout's compiled ``_C``, so
only the Python differs); each round runs both trees in fresh processes, alternating, and each
process times ``ElmoEmbedder.embed_batch`` (a random-weight ``small`` model, 8 sentences, state
zero, backend cpp) ``lstmp`` (one layer, batch 8) and the Python dispatch of that ``lstmp`` call (kernel stubbed out)
with :class:`torch.utils.benchmark.Timer`. The machine is shared and loaded: read the ratios, and the
ratio of the best rounds, rather than single rounds.
The JSON holds every round's medians, the new/old ratios (median over rounds) and the machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, random, sys, tempfile
from pathlib import Path
import torch
from torch.utils.benchmark import Timer
torch.set_num_threads(1)
import elmo_fast
from elmo_fast import ElmoEmbedder
from elmo_fast.weights import SMALL, random_weights, save_weights
assert Path(elmo_fast.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), elmo_fast.__file__
folder = Path(tempfile.mkdtemp())
save_weights(random_weights(SMALL, seed=0), folder / "w.hdf5", folder / "o.json")
embedder = ElmoEmbedder(folder / "o.json", folder / "w.hdf5", state="zero", backend="cpp")
rng = random.Random(0)
words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 9))) for _ in range(300)]
batch = [[rng.choice(words) for _ in range(rng.randint(12, 24))] for _ in range(8)]
from elmo_fast.ops.lstmp import lstmp
g = torch.Generator().manual_seed(0)
p, c = SMALL.projection_dim, SMALL.cell_dim
args = [torch.randn(2, 8, 20, p, generator=g), torch.full((8,), 20), torch.randn(2, p, 4 * c, generator=g) * 0.05,
        torch.randn(2, p, 4 * c, generator=g) * 0.05, torch.zeros(2, 4 * c), torch.randn(2, c, p, generator=g) * 0.05]
with torch.no_grad():
    embed = Timer("embedder.embed_batch(batch)", globals=dict(embedder=embedder, batch=batch)).blocked_autorange(min_run_time=2.0)
    layer = Timer("lstmp(*args, cell_clip=3.0, proj_clip=3.0, backend='cpp')",
                  globals=dict(lstmp=lstmp, args=args)).blocked_autorange(min_run_time=1.0)
    # the Python dispatch alone: the same call with the compiled kernel replaced by a stub (the op
    # module's name ``torch`` is swapped; its packed weights are already cached)
    import types
    module = sys.modules["elmo_fast.ops.lstmp"]
    stub = types.SimpleNamespace(ops=types.SimpleNamespace(elmo_fast=types.SimpleNamespace(lstmp=lambda *a: a[:3])))
    module.torch = stub
    call = Timer("lstmp(*args, cell_clip=3.0, proj_clip=3.0, backend='cpp')",
                 globals=dict(lstmp=lstmp, args=args)).blocked_autorange(min_run_time=0.5)
    module.torch = torch
print(json.dumps({"embed_ms": embed.median * 1e3, "lstmp_ms": layer.median * 1e3, "dispatch_ms": call.median * 1e3}))
"""


def _old_tree(rev: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = into / "old.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "elmo_fast", "kernels"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    shutil.move(str(into / "kernels"), str(into / "elmo_fast" / "kernels"))
    for built in (ROOT / "elmo_fast").glob("_C*.so"):
        shutil.copy(built, into / "elmo_fast" / built.name)
    return into


def _new_tree(into: Path) -> Path:
    # the same layout as the old tree (kernels inside the package), from this checkout's files
    shutil.copytree(ROOT / "elmo_fast", into / "elmo_fast", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", into / "elmo_fast" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    return into


def _run(tree: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    # cwd: ``python -c`` puts the working folder first on sys.path
    done = subprocess.run([sys.executable, "-c", CHILD, str(tree)], env=env, cwd=tree, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the benchmark failed in {tree}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rev", default="bd51faa")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"old": _old_tree(args.old_rev, Path(tmp, "old")), "new": _new_tree(Path(tmp, "new"))}
        rounds = []
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            rounds.append({name: _run(trees[name]) for name in order})
            print(f"round {r}: " + ", ".join(f"{n} {v['embed_ms']:.2f}/{v['lstmp_ms']:.2f}/{v['dispatch_ms']:.4f} ms"
                                             for n, v in rounds[-1].items()))
    metrics = ("embed_ms", "lstmp_ms", "dispatch_ms")
    ratios = {m: statistics.median(x["new"][m] / x["old"][m] for x in rounds) for m in metrics}
    best = {m: min(x["new"][m] for x in rounds) / min(x["old"][m] for x in rounds) for m in metrics}
    print("new / old, median of the rounds' ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    print("new / old, ratio of the best rounds:     " + ", ".join(f"{k} {v:.3f}" for k, v in best.items()))
    record = {
        "old_rev": args.old_rev,
        "new_rev": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "case": "ElmoEmbedder.embed_batch, SMALL random weights, 8 sentences of 12-24 tokens, state zero, backend cpp, "
        "1 thread; lstmp one SMALL layer, batch 8 x 20 positions, backend cpp; dispatch_ms: the same lstmp call with "
        "torch.ops.elmo_fast.lstmp replaced by a stub (Python overhead only)",
        "timer": "torch.utils.benchmark.Timer.blocked_autorange (median)",
        "rounds": rounds,
        "ratio_new_over_old": ratios,
        "ratio_of_best_rounds": best,
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
