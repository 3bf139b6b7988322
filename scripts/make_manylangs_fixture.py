"""Make tests/fixtures/manylangs_tiny: two tiny random-weight ELMoForManyLangs models and their outputs.

Run with ELMoForManyLangs installed (not an elmo_fast dependency), in a separate venv:

    python3 -m venv /tmp/manylangs && . /tmp/manylangs/bin/activate
    pip install torch==2.13.0 elmoformanylangs 'overrides<4' h5py
    python scripts/make_manylangs_fixture.py tests/fixtures/manylangs_tiny

Each model folder (``words/``: word embeddings + char CNN; ``chars/``: char CNN only) is what their
``Embedder`` loads: ``config.json`` pointing at the network config, ``char.dic`` (and ``word.dic``),
``token_embedder.pkl`` and ``encoder.pkl``. ``expected.npz`` holds, per model, what a fresh
``Embedder(folder).sents2elmo(SENTENCES, output_layer=-2)`` returns (all layers), one array per
sentence, recorded in one call (one batch, so their carried LSTM state starts from zero).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

SENTENCES = [
    ["Der", "Hund", "läuft", "schnell", "."],
    ["猫", "が", "好き", "です"],
    ["ein", "x" * 60, "Wort", "mit", "ünbekannten", "Zeichen", "€", "<bos>"],
    ["kurz"],
]
CHARS = list("abcdefghijklmnopqrstuvwxyzDHWZäüöß.猫が好きで")
WORDS = ["Der", "Hund", ".", "ein", "Wort", "mit", "猫", "です", "kurz"]
NETWORK = {
    "encoder": {"name": "elmo", "projection_dim": 6, "cell_clip": 3, "proj_clip": 3, "dim": 10, "n_layers": 2},
    "token_embedder": {
        "name": "cnn", "activation": "relu", "filters": [[1, 4], [2, 4], [3, 8]], "n_highway": 2,
        "word_dim": 5, "char_dim": 4, "max_characters_per_token": 50,
    },
    "classifier": {"name": "sampled_softmax", "n_samples": 8},
    "dropout": 0.1,
}


def write_dic(path: Path, items: list[str]) -> None:
    specials = ["<oov>", "<pad>", "<bow>", "<eow>", "<bos>", "<eos>"] if path.name == "char.dic" else ["<oov>", "<pad>", "<bos>", "<eos>"]
    path.write_text("".join(f"{tok}\t{i}\n" for i, tok in enumerate(items + specials)), encoding="utf-8")


def make_model(folder: Path, word_dim: int, seed: int) -> None:
    from elmoformanylangs.frontend import Model
    from elmoformanylangs.modules.embedding_layer import EmbeddingLayer

    folder.mkdir(parents=True, exist_ok=True)
    network = json.loads(json.dumps(NETWORK))
    network["token_embedder"]["word_dim"] = word_dim
    (folder / "network.json").write_text(json.dumps(network, indent=1), encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"config_path": "network.json"}), encoding="utf-8")
    write_dic(folder / "char.dic", CHARS)
    torch.manual_seed(seed)
    chars = {line.split("\t")[0]: int(line.split("\t")[1]) for line in (folder / "char.dic").read_text(encoding="utf-8").splitlines()}
    char_layer = EmbeddingLayer(network["token_embedder"]["char_dim"], chars, fix_emb=False, embs=None)
    word_layer = None
    if word_dim:
        write_dic(folder / "word.dic", WORDS)
        words = {line.split("\t")[0]: int(line.split("\t")[1]) for line in (folder / "word.dic").read_text(encoding="utf-8").splitlines()}
        word_layer = EmbeddingLayer(word_dim, words, fix_emb=False, embs=None)
    model = Model(network, word_layer, char_layer, use_cuda=False)
    with torch.no_grad():
        # Larger than their initialisation, so the cell and projection clips (3) are reached.
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (1.0 if "encoder" in name else 0.5))
    torch.save(model.token_embedder.state_dict(), folder / "token_embedder.pkl")
    torch.save(model.encoder.state_dict(), folder / "encoder.pkl")


def main(out: Path) -> None:
    from elmoformanylangs import Embedder

    recordings = {}
    for name, word_dim, seed in (("words", 5, 1), ("chars", 0, 2)):
        make_model(out / name, word_dim, seed)
        outputs = Embedder(str(out / name)).sents2elmo(SENTENCES, output_layer=-2)
        for i, array in enumerate(outputs):
            recordings[f"{name}/{i}"] = np.asarray(array, dtype=np.float32)
    np.savez_compressed(out / "expected.npz", **recordings)
    (out / "sentences.json").write_text(json.dumps(SENTENCES, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in recordings.items()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
