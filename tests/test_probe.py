"""The probe's WordNet parsing, datasets and report, on a small WordNet-format folder."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS

from elmo_fast.cli import main
from elmo_fast.probe import MixClassifier, fit, sense_probe, split_by_lemma
from elmo_fast.probe_data import Item, build_datasets, read_synsets, tokenize

NOUNS = [
    ("00000001", ["run"], 'a score in baseball; "he scored a run in the ninth"; "the run was decisive"'),
    ("00000002", ["run"], 'a race on foot; "she won the run easily"; "a long run tires me"'),
    ("00000003", ["walk", "stroll"], 'the act of walking; "a walk in the park"; "our walk was short"'),
    ("00000004", ["bank"], 'sloping land; "they sat on the bank"; "the river bank flooded"'),
    ("00000005", ["bank"], 'a financial institution; "the bank closed early"; "he robbed a bank"'),
]
VERBS = [
    ("00000011", ["run"], 'move fast on foot; "she runs every day"; "he ran to the store"; "running is fun"'),
    ("00000012", ["walk"], 'move on foot; "we walked home"; "they walk slowly"'),
]


def write_wordnet(folder):
    for name, rows, pos in (("noun", NOUNS, "n"), ("verb", VERBS, "v")):
        lines = ["  1 This software and database is being provided to you, the LICENSEE, by Princeton University"]
        for offset, words, gloss in rows:
            lemmas = " ".join(f"{w} 0" for w in words)
            lines.append(f"{offset} 03 {pos} {len(words):02x} {lemmas} 000 | {gloss}  ")
        (folder / f"data.{name}").write_text("\n".join(lines) + "\n")
    (folder / "verb.exc").write_text("ran run\n")
    (folder / "noun.exc").write_text("")
    return folder


def test_parsing_and_datasets(tmp_path):
    folder = write_wordnet(tmp_path)
    synsets = read_synsets(folder)
    assert len(synsets) == 7 and synsets[2].lemmas == ("walk", "stroll") and len(synsets[5].examples) == 3
    assert tokenize('he ran to the store, "quickly"') == ["he", "ran", "to", "the", "store", ",", '"', "quickly", '"']
    pos_items, sense_items = build_datasets(folder)
    by_lemma = {(i.lemma, i.label, i.tokens[i.position]) for i in pos_items}
    assert ("run", "verb", "ran") in by_lemma and ("run", "verb", "running") in by_lemma and ("run", "noun", "run") in by_lemma
    assert {i.lemma for i in pos_items} == {"run", "walk"}
    assert {i.lemma for i in sense_items} == {"run.n", "bank.n"}
    assert {i.label for i in sense_items if i.lemma == "bank.n"} == {"n.00000004", "n.00000005"}


def test_split_keeps_lemmas_together(tmp_path):
    pos_items, _ = build_datasets(write_wordnet(tmp_path))
    train, test = split_by_lemma(pos_items, 0.5, seed=1)
    assert sorted(train + test) == list(range(len(pos_items)))
    assert not {pos_items[i].lemma for i in train} & {pos_items[i].lemma for i in test}


def test_mix_classifier_learns_the_informative_layer():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (400,))
    layers = torch.randn(400, 3, 8)
    layers[:, 2, 0] += 3.0 * (labels * 2 - 1)
    model = fit(MixClassifier(3, 8, 2), layers, labels, epochs=200)
    weights = model.layer_weights()
    assert weights[2] > 0.6 and abs(sum(weights) - 1) < 1e-5
    assert (model(layers).argmax(-1) == labels).float().mean() > 0.9


def test_sense_probe_counts_answerable_items():
    # word "a": senses x, x, y (y has no other example: never answerable); word "b": one item (not scored)
    def item(lemma, label, n):
        return Item(tokens=(lemma, str(n)), position=0, label=label, lemma=lemma)

    items = [item("a", "x", 0), item("a", "x", 1), item("a", "y", 2), item("b", "z", 3)]
    features = torch.zeros(4, 3, 2)
    features[:, :, 0] = 1.0
    features[0, :, 1] = features[1, :, 1] = 0.1  # the two x's are each other's nearest neighbours
    features[2, :, 1] = -1.0
    report = sense_probe(features, items, held_out=1.0, seed=0)
    assert (report["test_items"], report["scored_items"], report["answerable_items"]) == (4, 3, 2)
    assert report["accuracy_ceiling"] == pytest.approx(2 / 3)
    assert report["layer_0"] == pytest.approx(2 / 3) and report["answerable_only"]["layer_0"] == 1.0
    # most frequent sense among the others: for each x, the other x and y tie and the first in sorted
    # order ("x") wins -> right; for y, the others are x, x -> wrong
    assert report["baseline_most_frequent_sense"] == pytest.approx(2 / 3)
    assert report["answerable_only"]["baseline_most_frequent_sense"] == 1.0


def _majority_fraction(train_labels, test_labels):
    majority = Counter(train_labels).most_common(1)[0][0]
    return sum(label == majority for label in test_labels) / len(test_labels)


def test_probe_command_end_to_end(tmp_path, capsys):
    folder = write_wordnet(tmp_path / "wn")
    out = tmp_path / "out"
    code = main(["probe", "--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS), "--wordnet-dir", str(folder), "--out-dir", str(out)])
    assert code == 0
    report = json.loads((out / "probe.json").read_text())
    assert set(report) == {"model", "state", "held_out_fraction_of_words", "seed", "pos", "senses"}
    assert report["state"] == "zero" and report["model"] == str(FIXTURE_WEIGHTS)
    for task in ("pos", "senses"):
        for key in ("layer_0", "layer_1", "layer_2", "mix"):
            assert 0.0 <= report[task][key] <= 1.0
    assert len(report["pos"]["mix_layer_weights"]) == 3 and abs(sum(report["pos"]["mix_layer_weights"]) - 1) < 1e-5
    assert len(report["senses"]["mix_layer_weights"]) == 3 and abs(sum(report["senses"]["mix_layer_weights"]) - 1) < 1e-5

    # the counts and baselines, recomputed here from the data and the split
    pos_items, sense_items = build_datasets(folder)
    train, test = split_by_lemma(pos_items, 0.3, seed=0)
    pos = report["pos"]
    assert (pos["train_items"], pos["test_items"], pos["classes"]) == (len(train), len(test), ["noun", "verb"])
    assert pos["baseline_most_frequent_class"] == pytest.approx(
        _majority_fraction([pos_items[i].label for i in train], [pos_items[i].label for i in test])
    )
    train, test = split_by_lemma(sense_items, 0.3, seed=0)
    senses = report["senses"]
    assert (senses["train_items"], senses["test_items"]) == (len(train), len(test))
    assert senses["senses"] == len({i.label for i in sense_items})
    held = [sense_items[i] for i in test]
    scored = [i for i in held if sum(j.lemma == i.lemma for j in held) >= 2]
    answerable = [i for i in scored if sum(j.lemma == i.lemma and j.label == i.label for j in held) >= 2]
    assert (senses["scored_items"], senses["answerable_items"]) == (len(scored), len(answerable))
    assert senses["accuracy_ceiling"] == pytest.approx(len(answerable) / len(scored))
    mfs = 0
    for i, it in enumerate(scored):
        others = Counter(j.label for k, j in enumerate(scored) if j.lemma == it.lemma and k != i)
        top = max(others.values())
        mfs += it.label == min(label for label, n in others.items() if n == top)
    assert senses["baseline_most_frequent_sense"] == pytest.approx(mfs / len(scored))
    for key in ("layer_0", "layer_1", "layer_2", "mix"):
        assert senses[key] <= senses["accuracy_ceiling"] + 1e-9
        assert senses["answerable_only"][key] == pytest.approx(senses[key] / senses["accuracy_ceiling"])

    printed = capsys.readouterr().out
    assert "pos" in printed and "accuracy ceiling" in printed
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return  # the PNG is written only with matplotlib installed
    png = out / "probe.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in printed


def test_probe_without_wordnet_is_a_clear_error(tmp_path, capsys):
    code = main(["probe", "--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS), "--wordnet-dir", str(tmp_path)])
    assert code == 2 and "apt-get install wordnet-base" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _mkdir(tmp_path):
    (tmp_path / "wn").mkdir()
