"""How far do ``state="zero"`` and ``state="warm"`` vectors land from AllenNLP's ``carry`` vectors?

    python scripts/state_drift.py [--options F --weights F] [--warmup 200] [--sentences 300]
    python scripts/state_drift.py --table docs/results/state-drift/state_drift.json

A ``carry`` model first reads ``--warmup`` sentences one at a time (a long warm-up, as in a real
stateful pipeline), then keeps reading test sentences; each test sentence is also embedded with
``zero`` and ``warm``. For every token position (counted from the sentence start) the script reports
the mean relative distance ``|v - v_carry| / |v_carry|`` of the top layer (layer 2) and of layer 1,
writes JSON and a PNG plot to ``--out-dir``. Text: WordNet's example sentences (held out of the
default model's training), falling back to the built-in warm-up text repeated. Both forms print the
README's table (positions 1, 5, 10, 15, 20), the ratio of ``warm``'s distance to ``zero``'s and the
number of sentences that reach each position; ``--table`` prints them from a JSON already written.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from elmo_fast import ElmoEmbedder


def sentences_for_drift(count: int, seed: int = 0) -> list[list[str]]:
    try:
        from elmo_fast.probe_data import read_synsets, tokenize

        pool = sorted({ex for s in read_synsets() for ex in s.examples if len(tokenize(ex)) >= 8})
        random.Random(seed).shuffle(pool)
        return [tokenize(ex) for ex in pool[:count]]
    except FileNotFoundError:
        from elmo_fast.modules.bilm import WARMUP_TEXT

        return [WARMUP_TEXT[i % len(WARMUP_TEXT)].split() for i in range(count)]


TABLE_POSITIONS: tuple[int, ...] = (1, 5, 10, 15, 20)


def print_table(report: dict) -> None:
    """The README's table from a report: distances at TABLE_POSITIONS, warm/zero ratios, coverage."""
    curves, counts = report["mean_relative_distance_to_carry"], report["tokens_per_position"]
    positions = [p for p in TABLE_POSITIONS if p <= len(counts)]
    print("| position in sentence | " + " | ".join(str(p) for p in positions) + " |")
    print("|---" * (len(positions) + 1) + "|")
    for mode in ("zero", "warm"):
        for layer in (1, 2):
            values = curves[f"{mode}_layer{layer}"]
            print(f"| `{mode}`, layer {layer} | " + " | ".join(f"{values[p - 1]:.2f}" for p in positions) + " |")
    ratios = [curves[f"warm_layer{layer}"][i] / curves[f"zero_layer{layer}"][i] for layer in (1, 2) for i in range(len(counts))]
    print(f"warm / zero distance, every position and layer: {min(ratios):.2f} to {max(ratios):.2f}")
    print("sentences reaching each position: " + ", ".join(f"{i + 1}: {c}" for i, c in enumerate(counts)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options")
    parser.add_argument("--weights")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--out-dir", type=Path, default=Path("docs"))
    parser.add_argument("--table", type=Path, help="only print the tables of this state_drift.json")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(args.table.read_text()))
        return

    text = sentences_for_drift(args.warmup + args.sentences)
    models = {mode: ElmoEmbedder(args.options, args.weights, state=mode) for mode in ("carry", "zero", "warm")}
    for sentence in text[: args.warmup]:
        models["carry"].embed_sentence(sentence)
    sums = {f"{mode}_layer{layer}": np.zeros(args.positions) for mode in ("zero", "warm") for layer in (1, 2)}
    counts = np.zeros(args.positions)
    for sentence in text[args.warmup :]:
        vectors = {mode: model.embed_sentence(sentence) for mode, model in models.items()}
        n = min(len(sentence), args.positions)
        counts[:n] += 1
        for mode in ("zero", "warm"):
            for layer in (1, 2):
                ref = vectors["carry"][layer, :n]
                diff = np.linalg.norm(vectors[mode][layer, :n] - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
                sums[f"{mode}_layer{layer}"][:n] += diff
    curves = {k: (v / np.maximum(counts, 1)).round(4).tolist() for k, v in sums.items()}
    report = {
        "model": args.weights or "bundled default model",
        "warmup_sentences": args.warmup,
        "test_sentences": args.sentences,
        "tokens_per_position": counts.astype(int).tolist(),
        "mean_relative_distance_to_carry": curves,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "state_drift.json").write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.4))
        for key, values in curves.items():
            ax.plot(range(1, args.positions + 1), values, label=key.replace("_", ", "), ls="-" if "layer2" in key else "--")
        ax.set_xlabel("token position in the sentence")
        ax.set_ylabel("mean |v - v_carry| / |v_carry|")
        ax.set_title("Distance from AllenNLP's carried state after a long warm-up", fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out_dir / "state_drift.png", dpi=110)
        print(f"wrote {args.out_dir / 'state_drift.png'}")
    except ImportError:
        print("matplotlib not installed: no plot")


if __name__ == "__main__":
    main()
