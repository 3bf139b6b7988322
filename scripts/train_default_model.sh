#!/usr/bin/env bash
# Rebuild the bundled default model (elmo_fast/data/default/) from WordNet 3.0, as it was built:
# corpus, training (single-threaded; scripts/default_model.json fixes every setting, max_steps
# included), export, held-out perplexity. An interrupted training continues with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f /usr/share/wordnet/data.noun ] || apt-get install -y wordnet-base
python scripts/build_wordnet_corpus.py --out build/wordnet_corpus
if [ -f build/default_model/checkpoint.pt ]; then resume=--resume; else resume=; fi
elmo-fast train scripts/default_model.json --threads 1 $resume
elmo-fast export build/default_model elmo_fast/data/default
elmo-fast perplexity elmo_fast/data/default build/wordnet_corpus/heldout.txt --threads 1
elmo-fast perplexity elmo_fast/data/default build/wordnet_corpus/heldout.txt --threads 1 --state carry
