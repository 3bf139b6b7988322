#!/usr/bin/env python3
"""Build the default model's corpus from WordNet 3.0 (Debian package ``wordnet-base``).

Every synset's gloss is split into its definition text and its quoted example sentences:

* ``train.txt``   the definitions (one gloss per line), minus every 50th gloss;
* ``dev.txt``     every 50th gloss's definition (2%, for monitoring during training);
* ``heldout.txt`` every quoted example sentence, never trained on: the held-out perplexity set
  (and the probes' evaluation text).

Text is tokenised into words and punctuation (``\\w+`` runs joined by ``-``, ``'`` or ``.``, and
single punctuation marks); case is kept. Usage::

    apt-get install -y wordnet-base
    python scripts/build_wordnet_corpus.py --out build/wordnet_corpus
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

WORDNET_DIR = Path("/usr/share/wordnet")
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
DEV_EVERY = 50
EXAMPLE = re.compile(r'"[^"]*"')
TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words (with inner hyphens, apostrophes, dots) and single punctuation marks."""
    return TOKEN.findall(text)


def glosses(wordnet_dir: Path) -> list[str]:
    """Every synset's gloss, in file order (noun, verb, adj, adv; by offset)."""
    out = []
    for pos in PARTS_OF_SPEECH:
        with open(wordnet_dir / f"data.{pos}", encoding="utf-8") as handle:
            for line in handle:
                # the licence header lines start with two spaces
                if not line.startswith("  "):
                    out.append(line.split(" | ", 1)[1].strip())
    return out


def split_gloss(gloss: str) -> tuple[list[str], list[list[str]]]:
    """The definition's tokens and each quoted example's tokens."""
    examples = [tokenize(m.group(0)[1:-1]) for m in EXAMPLE.finditer(gloss)]
    definition = EXAMPLE.sub(" ", gloss).replace('"', " ")
    definition = re.sub(r"(\s*;\s*)+", "; ", definition).strip(" ;")
    return tokenize(definition), [e for e in examples if e]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR, help="folder with WordNet's data.* files")
    parser.add_argument("--out", type=Path, default=Path("build/wordnet_corpus"), help="output folder")
    args = parser.parse_args()
    if not (args.wordnet / "data.noun").is_file():
        raise SystemExit(f"{args.wordnet}/data.noun not found: apt-get install -y wordnet-base")
    args.out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "dev": [], "heldout": []}
    for i, gloss in enumerate(glosses(args.wordnet)):
        definition, examples = split_gloss(gloss)
        if definition:
            lines["dev" if i % DEV_EVERY == DEV_EVERY - 1 else "train"].append(" ".join(definition))
        lines["heldout"].extend(" ".join(e) for e in examples)
    stats = {}
    for name, text in lines.items():
        (args.out / f"{name}.txt").write_text("".join(t + "\n" for t in text), encoding="utf-8")
        stats[name] = {"sentences": len(text), "tokens": sum(len(t.split()) for t in text)}
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
