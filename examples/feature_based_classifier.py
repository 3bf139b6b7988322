"""Feature-based ELMo, the paper's second stage: a classifier on frozen biLM layers with a learned mix.

    python examples/feature_based_classifier.py [--options F --weights F] [--limit 3000]

Task: is the marked word used as a noun or a verb? (WordNet example sentences; Debian package
``wordnet-base``.) The biLM stays frozen: its L + 1 layers are computed once per sentence, and only
the ScalarMix (softmax weights s_j and scale gamma) and a linear layer are trained. At the end the
learned layer weights are printed: which layers the task found useful.
"""
from __future__ import annotations

import argparse
import random

import torch

from elmo_fast import ElmoEmbedder
from elmo_fast.probe import MixClassifier, embed_items, fit, split_by_lemma
from elmo_fast.probe_data import build_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options")
    parser.add_argument("--weights")
    parser.add_argument("--limit", type=int, default=3000, help="number of labelled words to use")
    args = parser.parse_args()

    items, _ = build_datasets()
    items = sorted(random.Random(0).sample(items, min(args.limit, len(items))), key=lambda i: i.lemma)
    classes = ["noun", "verb"]
    labels = torch.tensor([classes.index(item.label) for item in items])

    # 1. Frozen features: (N, L + 1, 2P) — one vector per layer for the marked word.
    embedder = ElmoEmbedder(args.options, args.weights, state="zero")
    features = embed_items(embedder, items)

    # 2. Train only the mix and the classifier, on words disjoint from the test words.
    train, test = split_by_lemma(items, held_out=0.3, seed=0)
    model = fit(MixClassifier(features.shape[1], features.shape[2], len(classes)), features[train], labels[train])

    with torch.no_grad():
        accuracy = (model(features[test]).argmax(-1) == labels[test]).float().mean().item()
    print(f"held-out accuracy: {accuracy:.3f} on {len(test)} words never seen in training")
    print("learned layer weights softmax(s):", ", ".join(f"layer {j}: {w:.3f}" for j, w in enumerate(model.layer_weights())))
    print(f"learned gamma: {model.mix.gamma.item():.3f}")


if __name__ == "__main__":
    main()
