"""``elmo-fast convert manylangs`` against recordings of ELMoForManyLangs' own ``Embedder``.

tests/fixtures/manylangs_tiny holds two tiny random-weight models in their format (with word
embeddings, and characters only) and what ``Embedder(folder).sents2elmo(sentences,
output_layer=-2)`` returned for them (scripts/make_manylangs_fixture.py made both, with
elmoformanylangs 0.0.4.post2 on torch 2.13.0).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from elmo_fast import Elmo, ElmoEmbedder
from elmo_fast.cli import main
from elmo_fast.models.manylangs import convert_manylangs, read_dic
from elmo_fast.weights import WeightFileError, load_options
from utils import assert_close

FIXTURE = Path(__file__).parent / "fixtures" / "manylangs_tiny"
SENTENCES: list[list[str]] = json.loads((FIXTURE / "sentences.json").read_text(encoding="utf-8"))
MODELS = ("words", "chars")


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("manylangs")
    return {name: convert_manylangs(FIXTURE / name, root / name) for name in MODELS}


@pytest.mark.parametrize("backend", ["ref", "cpp"])
@pytest.mark.parametrize("model", MODELS)
def test_converted_model_reproduces_their_embedder(converted, expected, model, backend):
    embedder = ElmoEmbedder(*converted[model], state="zero", backend=backend)
    for i, got in enumerate(embedder.embed_batch(SENTENCES)):
        assert_close(torch.from_numpy(got), torch.from_numpy(expected[f"{model}/{i}"]), what=f"{model} sentence {i}")


@pytest.mark.parametrize("model", MODELS)
def test_each_sentence_alone_matches_too(converted, expected, model):
    embedder = ElmoEmbedder(*converted[model], state="zero", backend="ref")
    for i, sentence in enumerate(SENTENCES):
        assert_close(torch.from_numpy(embedder.embed_sentence(sentence)), torch.from_numpy(expected[f"{model}/{i}"]))


def test_elmo_module_takes_the_lexicon_ids(converted, expected):
    elmo = Elmo(*converted["words"], 1, dropout=0.0, state="zero", backend="ref", scalar_mix_parameters=[-100.0, -100.0, 100.0])
    ids = elmo.batch_to_ids(SENTENCES)
    assert ids.shape == (len(SENTENCES), max(map(len, SENTENCES)), 51)
    out = elmo(ids)["elmo_representations"][0]
    for i, sentence in enumerate(SENTENCES):
        top = torch.from_numpy(expected[f"words/{i}"][2])
        assert_close(out[i, : len(sentence)], top)
    with pytest.raises(ValueError, match=r"\(..., T, 51\)"):
        elmo(ids[..., :50])


def test_word_table_and_lexicon_options(converted):
    options = load_options(converted["words"][0])
    assert options.n_words == len(read_dic(FIXTURE / "words" / "word.dic")) and options.id_width == 51
    assert options.n_characters == len(read_dic(FIXTURE / "words" / "char.dic")) + 1
    assert load_options(converted["chars"][0]).n_words == 0


def test_cli_convert(tmp_path, expected):
    dest = tmp_path / "out"
    assert main(["convert", "manylangs", str(FIXTURE / "chars"), str(dest)]) == 0
    assert {p.name for p in dest.iterdir()} == {"options.json", "weights.hdf5", "lexicon.json"}
    assert main(["convert", "manylangs", str(FIXTURE / "chars"), str(dest)]) == 2
    got = ElmoEmbedder(dest / "options.json", dest / "weights.hdf5", state="zero", backend="ref").embed_sentence(SENTENCES[0])
    assert_close(torch.from_numpy(got), torch.from_numpy(expected["chars/0"]))


def test_not_a_model_folder(tmp_path):
    with pytest.raises(WeightFileError, match="config.json is missing"):
        convert_manylangs(tmp_path, tmp_path / "out")


def test_registry_downloads_and_converts_on_first_use(tmp_path, monkeypatch, expected):
    """A ManyLangs entry served as a zip (their archives hold one model folder) converts once."""
    from elmo_fast.models import ModelEntry, ModelFile, register, resolve
    from elmo_fast.models import registry as registry_module
    from test_models_download import _Server

    import threading

    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in (FIXTURE / "words").iterdir():
            z.write(f, f"999/{f.name}")
    server = _Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        server.files["/999.zip"] = archive.read_bytes()
        monkeypatch.setenv("ELMO_FAST_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(registry_module, "REGISTRY", dict(registry_module.REGISTRY))
        register(ModelEntry("manylangs-test", "Test", "test", "-", "manylangs", (ModelFile("model.zip", server.url("/999.zip")),), "test"))
        options, weights = resolve("manylangs-test", progress=False)
        assert resolve("manylangs-test", offline=True, progress=False) == (options, weights)
        assert len(server.requests) == 1
    finally:
        server.shutdown()
        server.server_close()
    got = ElmoEmbedder("manylangs-test", state="zero", backend="ref").embed_sentence(SENTENCES[1])
    assert_close(torch.from_numpy(got), torch.from_numpy(expected["words/1"]))
