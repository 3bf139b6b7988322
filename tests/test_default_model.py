"""The bundled default model: present, small, loads as ELMo and as a language model, and is trained."""
from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np

from elmo_fast import ElmoEmbedder
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


def test_embed_command_runs_with_no_model_files(tmp_path):
    # `elmo-fast embed in.txt out.hdf5` with no --options/--weights: the bundled model, from a folder
    # holding nothing but the input
    sentences = [s.split() for s in SENTENCES[:3]]
    (tmp_path / "in.txt").write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "elmo_fast", "embed", "in.txt", "out.hdf5", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    expected = list(ElmoEmbedder().embed_sentences(sentences))
    with h5py.File(tmp_path / "out.hdf5") as f:
        assert set(f.keys()) == {"0", "1", "2", "sentence_to_index"}
        assert json.loads(f["sentence_to_index"][0]) == {" ".join(s): str(i) for i, s in enumerate(sentences)}
        for i, s in enumerate(sentences):
            vectors = f[str(i)][...]
            assert vectors.shape == (3, len(s), 128) and np.isfinite(vectors).all() and np.abs(vectors).max() > 0
            np.testing.assert_allclose(vectors, expected[i], rtol=1e-5, atol=1e-5)
