"""``elmo-fast probe``: what each biLM layer knows, measured on WordNet's example sentences.

* Syntax — part of speech of noun/verb-ambiguous words: a logistic-regression probe per layer, and
  one on a learned ScalarMix of the layers (softmax weights s_j and scale gamma, trained jointly).
* Semantics — word senses: each occurrence gets the sense of its nearest neighbour (cosine) among
  the same word's other examples, per layer and for a mix whose weights are chosen on the training
  words (after the paper's nearest-neighbour word-sense experiment, here on WordNet). Many
  occurrences cannot be right (their sense has no other example): the report gives that ceiling
  and the accuracies on the answerable occurrences alone.

Words (not sentences) are split into train and held-out sets, so every reported accuracy is on
words the probe never saw. Baselines: the most frequent class / sense.
"""
from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from elmo_fast.modules.scalar_mix import ScalarMix
from elmo_fast.probe_data import WORDNET_DIR, Item, build_datasets


class MixClassifier(nn.Module):
    """A linear classifier on a learned ScalarMix of frozen ELMo layers (feature-based use)."""

    def __init__(self, num_layers: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.mix = ScalarMix(num_layers)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """``layers`` ``(N, L + 1, D)`` -> logits ``(N, classes)``."""
        return self.linear(self.mix(list(layers.unbind(1))))

    def layer_weights(self) -> list[float]:
        """The learned softmax(s) over the layers."""
        return torch.softmax(torch.cat(list(self.mix.scalar_parameters)), 0).tolist()


def fit(model: nn.Module, features: torch.Tensor, labels: torch.Tensor, epochs: int = 300, lr: float = 0.05, seed: int = 0) -> nn.Module:
    """Full-batch Adam on cross-entropy with a little weight decay; returns ``model`` trained."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    return model


class _Linear(nn.Module):
    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def embed_items(embedder, items: Sequence[Item], batch_size: int = 64, progress: bool = True) -> torch.Tensor:
    """Target-token vectors of every item, ``(N, L + 1, 2P)``; each distinct sentence embedded once."""
    sentences = sorted({item.tokens for item in items}, key=len)
    vectors: dict[tuple[str, ...], np.ndarray] = {}
    for start in tqdm(range(0, len(sentences), batch_size), desc="embedding examples", disable=not progress, unit="batch"):
        batch = sentences[start : start + batch_size]
        for sentence, array in zip(batch, embedder.embed_batch([list(s) for s in batch])):
            vectors[sentence] = array
    return torch.from_numpy(np.stack([vectors[item.tokens][:, item.position] for item in items]))


def split_by_lemma(items: Sequence[Item], held_out: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of train and held-out items; a lemma's items all fall on one side."""
    lemmas = sorted({item.lemma for item in items})
    random.Random(seed).shuffle(lemmas)
    test = set(lemmas[: int(round(held_out * len(lemmas)))])
    train_idx = [i for i, item in enumerate(items) if item.lemma not in test]
    test_idx = [i for i, item in enumerate(items) if item.lemma in test]
    return train_idx, test_idx


def pos_probe(features: torch.Tensor, items: Sequence[Item], held_out: float, seed: int) -> dict:
    """Part-of-speech accuracy on held-out words, per layer and for a learned mix."""
    classes = sorted({item.label for item in items})
    labels = torch.tensor([classes.index(item.label) for item in items])
    train, test = split_by_lemma(items, held_out, seed)
    majority = Counter(labels[train].tolist()).most_common(1)[0][0]
    report: dict = {"classes": classes, "train_items": len(train), "test_items": len(test)}
    report["baseline_most_frequent_class"] = float((labels[test] == majority).float().mean())

    def accuracy(model, x):
        with torch.no_grad():
            return float((model(x[test]).argmax(-1) == labels[test]).float().mean())

    for layer in range(features.shape[1]):
        x = features[:, layer]
        model = fit(_Linear(x.shape[1], len(classes)), x[train], labels[train], seed=seed)
        report[f"layer_{layer}"] = accuracy(model, x)
    mix = fit(MixClassifier(features.shape[1], features.shape[2], len(classes)), features[train], labels[train], seed=seed)
    report["mix"] = accuracy(mix, features)
    report["mix_layer_weights"] = mix.layer_weights()
    report["mix_gamma"] = float(mix.mix.gamma.detach())
    return report


def _lemma_groups(items: Sequence[Item], indices: Sequence[int]) -> list[list[int]]:
    """The items of ``indices`` grouped by lemma, in first-seen order; groups of one are dropped
    (an occurrence with no other occurrence of its word has no neighbour to take a sense from)."""
    by_lemma: dict[str, list[int]] = {}
    for i in indices:
        by_lemma.setdefault(items[i].lemma, []).append(i)
    return [group for group in by_lemma.values() if len(group) >= 2]


def _answerable(items: Sequence[Item], groups: Sequence[Sequence[int]]) -> list[bool]:
    """Per scored item (groups flattened): whether another candidate in its group has its sense,
    the only way a nearest-neighbour (or most-frequent-sense) guess can be right."""
    flags = []
    for group in groups:
        counts = Counter(items[i].label for i in group)
        flags += [counts[items[i].label] >= 2 for i in group]
    return flags


def _nearest_neighbour_hits(x: torch.Tensor, items: Sequence[Item], groups: Sequence[Sequence[int]]) -> list[bool]:
    # Per scored item: does its nearest neighbour (cosine) among the other items of its group share its sense?
    normed = nn.functional.normalize(x, dim=-1)
    hits = []
    for group in groups:
        sims = normed[group] @ normed[group].T
        sims.fill_diagonal_(-2.0)
        nearest = sims.argmax(dim=1).tolist()
        hits += [items[group[a]].label == items[group[b]].label for a, b in enumerate(nearest)]
    return hits


def _nearest_neighbour_accuracy(x: torch.Tensor, items: Sequence[Item], indices: Sequence[int]) -> float:
    hits = _nearest_neighbour_hits(x, items, _lemma_groups(items, indices))
    return sum(hits) / max(len(hits), 1)


def _most_frequent_sense_hits(items: Sequence[Item], groups: Sequence[Sequence[int]]) -> list[bool]:
    # Per scored item: is its sense the most frequent one among the other items of its group?
    hits = []
    for group in groups:
        for i in group:
            others = Counter(items[j].label for j in group if j != i)
            best = max(sorted(others), key=lambda label: others[label])
            hits.append(items[i].label == best)
    return hits


def _mean(flags: Sequence[bool], mask: Sequence[bool] | None = None) -> float:
    chosen = list(flags) if mask is None else [f for f, m in zip(flags, mask) if m]
    return sum(chosen) / max(len(chosen), 1)


def sense_probe(features: torch.Tensor, items: Sequence[Item], held_out: float, seed: int) -> dict:
    """Nearest-neighbour word-sense accuracy on held-out words, per layer and for a tuned mix.

    Each held-out occurrence takes the sense of its nearest neighbour among the *other held-out
    occurrences of the same word* (the split is by word, so a held-out word has no training
    occurrences). ``scored_items``: occurrences whose word has another held-out occurrence.
    ``answerable_items``: those whose sense also occurs among those others; ``accuracy_ceiling``
    (their fraction) bounds every accuracy here, and ``answerable_only`` reports the accuracies on
    them alone.
    """
    train, test = split_by_lemma(items, held_out, seed)
    report: dict = {"train_items": len(train), "test_items": len(test), "senses": len({item.label for item in items})}
    groups = _lemma_groups(items, test)
    answerable = _answerable(items, groups)
    report["scored_items"] = len(answerable)
    report["answerable_items"] = sum(answerable)
    report["accuracy_ceiling"] = _mean(answerable)
    mfs = _most_frequent_sense_hits(items, groups)
    report["baseline_most_frequent_sense"] = _mean(mfs)
    only: dict = {"baseline_most_frequent_sense": _mean(mfs, answerable)}
    layers = features.shape[1]
    for layer in range(layers):
        hits = _nearest_neighbour_hits(features[:, layer], items, groups)
        report[f"layer_{layer}"], only[f"layer_{layer}"] = _mean(hits), _mean(hits, answerable)
    # Mix weights: the best point of a 0.1-step grid on the simplex, chosen on the training words.
    grid = [w for w in itertools.product(range(11), repeat=layers) if sum(w) == 10]
    scored = []
    for w in grid:
        weights = torch.tensor(w, dtype=features.dtype) / 10
        scored.append((_nearest_neighbour_accuracy((features * weights[:, None]).sum(1), items, train), w))
    best = max(scored)[1]
    weights = torch.tensor(best, dtype=features.dtype) / 10
    hits = _nearest_neighbour_hits((features * weights[:, None]).sum(1), items, groups)
    report["mix"], only["mix"] = _mean(hits), _mean(hits, answerable)
    report["mix_layer_weights"] = weights.tolist()
    report["answerable_only"] = only
    return report


def plot(report: dict, path: Path) -> bool:
    """Bar chart of both probes; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (name, key, baseline) in zip(
        axes, (("Part of speech (linear probe)", "pos", "baseline_most_frequent_class"), ("Word sense (1-NN)", "senses", "baseline_most_frequent_sense"))
    ):
        result = report[key]
        names = [k for k in result if k.startswith("layer_")] + ["mix"]
        ax.bar(range(len(names)), [result[k] for k in names], color=["#999"] * (len(names) - 1) + ["#36c"])
        ax.axhline(result[baseline], color="r", ls="--", lw=1, label="most frequent")
        if "accuracy_ceiling" in result:
            ax.axhline(result["accuracy_ceiling"], color="k", ls=":", lw=1, label="ceiling (answerable)")
        ax.set_xticks(range(len(names)), [n.replace("layer_", "layer ") for n in names])
        ax.set_ylim(0, 1)
        ax.set_title(name, fontsize=10)
        ax.legend(loc="lower right" if key == "pos" else "upper right", fontsize=8)
    fig.suptitle(report["model"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_probe(
    embedder,
    model_name: str,
    out_dir: Path,
    wordnet_dir: Path = WORDNET_DIR,
    held_out: float = 0.3,
    seed: int = 0,
    max_items: int | None = None,
    progress: bool = True,
) -> dict:
    """Build the data, embed it, run both probes, write ``probe.json`` and ``probe.png``."""
    pos_items, sense_items = build_datasets(wordnet_dir)
    if max_items:
        rng = random.Random(seed)
        pos_items = sorted(rng.sample(pos_items, min(max_items, len(pos_items))), key=lambda i: i.lemma)
        sense_items = sorted(rng.sample(sense_items, min(max_items, len(sense_items))), key=lambda i: i.lemma)
    features = embed_items(embedder, pos_items + sense_items, progress=progress)
    report = {
        "model": model_name,
        "state": embedder.elmo_bilm.state,
        "held_out_fraction_of_words": held_out,
        "seed": seed,
        "pos": pos_probe(features[: len(pos_items)], pos_items, held_out, seed),
        "senses": sense_probe(features[len(pos_items) :], sense_items, held_out, seed),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "probe.json").write_text(json.dumps(report, indent=1) + "\n")
    report["plot"] = str(out_dir / "probe.png") if plot(report, out_dir / "probe.png") else None
    return report
