"""Labelled probe data from WordNet's example sentences (Debian package ``wordnet-base``).

Two datasets, both made of (sentence, target position, label, lemma) items:

* **POS**: lemmas that are both nouns and verbs; each occurrence of the lemma in an example
  sentence of one of its noun or verb synsets is labelled with that part of speech.
* **Senses**: lemmas with at least two senses (synsets of one part of speech) whose examples
  contain the lemma; each occurrence is labelled with its synset.

Only examples where the lemma occurs exactly once (as itself or a regular/irregular inflection)
are kept. These quoted examples are held out of the default model's training corpus.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
POS_FILES = {"n": "noun", "v": "verb"}
_TOKEN = re.compile(r"\w+(?:[-']\w+)*|[^\w\s]")
_EXAMPLE = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: its id, part of speech, single-word lemmas and quoted examples."""

    offset: str
    pos: str
    lemmas: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Item:
    """One labelled occurrence: ``tokens[position]`` is ``lemma`` used with ``label``."""

    tokens: tuple[str, ...]
    position: int
    label: str
    lemma: str


def tokenize(text: str) -> list[str]:
    """Split an example sentence into words and punctuation."""
    return _TOKEN.findall(text)


def read_synsets(wordnet_dir: Path = WORDNET_DIR) -> list[Synset]:
    """Noun and verb synsets with their quoted example sentences."""
    if not (wordnet_dir / "data.noun").is_file():
        raise FileNotFoundError(
            f"WordNet data not found in {wordnet_dir}; install it (Debian: apt-get install wordnet-base) "
            "or pass --wordnet-dir"
        )
    synsets = []
    for pos, name in POS_FILES.items():
        with open(wordnet_dir / f"data.{name}", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  "):
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                count = int(fields[3], 16)
                words = [fields[4 + 2 * k].lower() for k in range(count)]
                lemmas = tuple(w for w in words if w.isalpha())
                synsets.append(Synset(fields[0], pos, lemmas, tuple(_EXAMPLE.findall(gloss))))
    return synsets


def _inflections(wordnet_dir: Path) -> dict[str, dict[str, set[str]]]:
    """Per part of speech: lemma -> surface forms (regular endings plus WordNet's exception lists)."""
    forms: dict[str, dict[str, set[str]]] = {pos: defaultdict(set) for pos in POS_FILES}
    for pos, name in POS_FILES.items():
        exc = wordnet_dir / f"{name}.exc"
        if exc.is_file():
            for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                for base in parts[1:]:
                    forms[pos][base].add(parts[0])
    return forms


def _surface_forms(lemma: str, pos: str, exceptions: dict[str, dict[str, set[str]]]) -> set[str]:
    out = {lemma, lemma + "s", lemma + "es"} | exceptions[pos].get(lemma, set())
    if lemma.endswith("y"):
        out.add(lemma[:-1] + "ies")
    if pos == "v":
        stem = lemma[:-1] if lemma.endswith("e") else lemma
        out |= {stem + "ed", stem + "ing", lemma + "d", lemma + "ed"}
        if lemma.endswith("y"):
            out.add(lemma[:-1] + "ied")
        vowels = "aeiou"
        if len(lemma) >= 3 and lemma[-1] not in vowels + "wxy" and lemma[-2] in vowels and lemma[-3] not in vowels:
            # consonant doubling: run -> running, stop -> stopped
            out |= {lemma + lemma[-1] + "ing", lemma + lemma[-1] + "ed"}
    return out


def _occurrences(synsets: list[Synset], wordnet_dir: Path) -> dict[tuple[str, str], list[tuple[Synset, tuple[str, ...], int]]]:
    """(lemma, pos) -> [(synset, tokens, position)] for examples holding the lemma exactly once."""
    exceptions = _inflections(wordnet_dir)
    found: dict[tuple[str, str], list] = defaultdict(list)
    for synset in synsets:
        for lemma in synset.lemmas:
            forms = _surface_forms(lemma, synset.pos, exceptions)
            for example in synset.examples:
                tokens = tuple(tokenize(example))
                hits = [i for i, t in enumerate(tokens) if t.lower() in forms]
                if len(hits) == 1:
                    found[(lemma, synset.pos)].append((synset, tokens, hits[0]))
    return found


def build_datasets(wordnet_dir: Path = WORDNET_DIR, max_per_lemma: int = 20) -> tuple[list[Item], list[Item]]:
    """The POS items and the sense items (see the module docstring)."""
    occurrences = _occurrences(read_synsets(wordnet_dir), wordnet_dir)
    pos_items: list[Item] = []
    lemmas = {lemma for lemma, _ in occurrences}
    for lemma in sorted(lemmas):
        nouns, verbs = occurrences.get((lemma, "n"), []), occurrences.get((lemma, "v"), [])
        if nouns and verbs:
            for label, group in (("noun", nouns), ("verb", verbs)):
                for _, tokens, position in group[:max_per_lemma]:
                    pos_items.append(Item(tokens, position, label, lemma))
    sense_items: list[Item] = []
    for (lemma, pos), group in sorted(occurrences.items(), key=lambda kv: kv[0]):
        senses = {synset.offset for synset, _, _ in group}
        if len(senses) >= 2 and len(group) >= 3:
            for synset, tokens, position in group[:max_per_lemma]:
                sense_items.append(Item(tokens, position, f"{pos}.{synset.offset}", f"{lemma}.{pos}"))
    return pos_items, sense_items

