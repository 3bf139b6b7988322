"""The bundled default model: present, small, loads as ELMo and as a language model, and is trained."""
from __future__ import annotations

import numpy as np

from elmo_fast.default_model import DEFAULT_DIR, default_model_files
from elmo_fast.train import encode_corpus, evaluate, load_language_model
from elmo_fast.weights import load_weights

# Definitions written for this test in WordNet's style (not taken from WordNet).
SENTENCES = [
    "a small animal that lives in the forest and eats seeds",
    "the act of moving something from one place to another",
    "a person who works in a hospital and takes care of sick people",
    "having a pleasant taste or smell",
    "a building where people go to watch films",
    "the state of being very tired after a long journey",
]


def test_bundled_files_are_complete_and_small():
    options, weights = default_model_files()
    model = load_weights(options, weights)
    assert model.options.projection_dim == 64 and model.options.cell_dim == 256
    size = sum(p.stat().st_size for p in DEFAULT_DIR.iterdir())
    assert size <= 20 * 2**20, f"the bundled model takes {size} bytes"
    assert (DEFAULT_DIR / "MODEL_CARD.md").read_text(encoding="utf-8").count("Princeton") >= 2


def test_default_model_prefers_real_sentences_to_shuffled_words():
    model, vocab = load_language_model(DEFAULT_DIR)
    rng = np.random.default_rng(0)
    real = [s.split() for s in SENTENCES]
    shuffled = [list(rng.permutation(s)) for s in real]
    ppl_real = evaluate(model, encode_corpus(real, vocab), batch_size=8)
    ppl_shuffled = evaluate(model, encode_corpus(shuffled, vocab), batch_size=8)
    # an untrained model scores both alike (about the vocabulary size, 20003)
    assert ppl_real.forward < 0.25 * ppl_shuffled.forward and ppl_real.backward < 0.25 * ppl_shuffled.backward
    assert ppl_real.mean < 1000, ppl_real
