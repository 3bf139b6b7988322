"""How far do ``state="zero"`` and ``state="warm"`` vectors land from AllenNLP's ``carry`` vectors?

    python scripts/state_drift.py [--options F --weights F] [--warmup 200] [--sentences 300]

A ``carry`` model first reads ``--warmup`` sentences one at a time (a long warm-up, as in a real
stateful pipeline), then keeps reading test sentences; each test sentence is also embedded with
``zero`` and ``warm``. For every token position (counted from the sentence start) the script reports
the mean relative distance ``|v - v_carry| / |v_carry|`` of the top layer (layer 2) and of layer 1,
writes JSON and a PNG plot to ``--out-dir``. Text: WordNet's example sentences (held out of the
default model's training), falling back to the built-in warm-up text repeated.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options")
    parser.add_argument("--weights")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--positions", type=int, default=20)
    parser.add_argument("--out-dir", type=Path, default=Path("docs"))
    args = parser.parse_args()

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
    print(json.dumps({k: [v[0], v[4], v[9], v[-1]] for k, v in curves.items()}, indent=1), "(positions 1, 5, 10, last)")
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
