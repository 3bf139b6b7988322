"""ONNX export (``elmo-fast export-onnx``) run by ONNX Runtime, against eager elmo_fast with state zero."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences  # noqa: E402

from elmo_fast import ElmoEmbedder, batch_to_ids  # noqa: E402
from elmo_fast.cli import main  # noqa: E402
from elmo_fast.export import check_onnx, onnx_session, run_onnx  # noqa: E402
from elmo_fast.export.onnx import example_char_ids  # noqa: E402

# T = 1; mixed lengths with accents, CJK and emoji; one long row among short ones; B = 1 (the export
# example is B = 2, T = 3: every case below runs other sizes through the same graph).
BATCHES = {
    "one-token": [["Hello"]],
    "mixed-unicode": random_sentences(6, seed=3, max_len=9) + [["naïve", "東京", "🙂", "straße"]],
    "long-and-short": [["w"] * 17, ["x"], ["y", "z"], []],
    "single-sentence": [["The", "cat", "sat", "on", "the", "mat", "."]],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert main(["export-onnx", str(path), "--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]) == 0
    return path


@pytest.fixture(scope="module")
def session(exported):
    return onnx_session(exported, threads=1)


@pytest.mark.parametrize("backend", ["ref", "cpp"])
@pytest.mark.parametrize("name", sorted(BATCHES))
def test_onnx_runtime_equals_eager(session, name, backend):
    batch = BATCHES[name]
    eager = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend=backend)
    expected, expected_mask = eager.batch_to_embeddings(batch)
    ids = batch_to_ids(batch)
    assert ids.shape[1] != example_char_ids().shape[1] or ids.shape[0] != example_char_ids().shape[0]
    embeddings, mask = run_onnx(session, ids)
    assert embeddings.dtype == torch.float32 and mask.dtype == torch.bool
    assert torch.equal(mask, expected_mask)
    assert_close(embeddings, expected, what=f"ONNX Runtime vs eager {backend} on {name}")
    assert bool((embeddings[~mask.unsqueeze(1).expand_as(embeddings[..., 0])] == 0).all()), "padding must be exactly 0"


def test_graph_is_checker_clean_with_dynamic_axes_and_one_scan_per_layer(exported):
    check_onnx(exported)
    model = onnx.load(str(exported))
    (inp,) = model.graph.input
    assert inp.name == "char_ids" and inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param and dims[2].dim_value == 50
    outputs = {o.name: o for o in model.graph.output}
    assert set(outputs) == {"embeddings", "mask"}
    assert outputs["embeddings"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert outputs["mask"].type.tensor_type.elem_type == onnx.TensorProto.BOOL
    # The recurrence is held once per biLSTM layer (a Scan), not unrolled for the example's length.
    assert sum(node.op_type == "Scan" for node in model.graph.node) == 2


def test_cli_refuses_existing_output_and_half_a_model(exported, capsys):
    assert main(["export-onnx", str(exported)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export-onnx", str(exported) + ".new", "--options", str(FIXTURE_OPTIONS)]) == 2
    assert "both" in capsys.readouterr().err


def test_default_model_is_the_bundled_one():
    from elmo_fast.default_model import default_model_files
    from elmo_fast.export import model_weights
    from elmo_fast.weights import load_options

    assert model_weights().options == load_options(default_model_files()[0])
    with pytest.raises(ValueError, match="both"):
        model_weights(FIXTURE_OPTIONS, None)


def test_cli_model_takes_a_folder_or_a_name_and_validates(tmp_path, capsys, monkeypatch):
    """--model goes through elmo_fast.models.resolve: a folder holding the two files, or a registered
    name (fetched into $ELMO_FAST_CACHE); here offline with an empty cache, so no network is used."""
    import shutil

    folder = tmp_path / "tiny"
    folder.mkdir()
    shutil.copy(FIXTURE_OPTIONS, folder / "options.json")
    shutil.copy(FIXTURE_WEIGHTS, folder / "weights.hdf5")
    monkeypatch.setenv("ELMO_FAST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "x.onnx"
    args = ["export-onnx", str(out), "--no-check"]
    assert main([*args, "--model", "original", "--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*args, "--offline"]) == 2
    assert "--model" in capsys.readouterr().err
    assert main([*args, "--model", "original", "--offline"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elmo-fast export-onnx: error:") and "original" in err and not out.exists()
    assert main([*args, "--model", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    # a model folder exports the same graph as the two files given directly
    from elmo_fast.cli import build_parser
    from elmo_fast.export.cli import _model_files

    assert _model_files(build_parser().parse_args([*args, "--model", str(folder)])) == (folder / "options.json", folder / "weights.hdf5")


def test_converted_lexicon_model_exports_and_matches_eager(tmp_path):
    """A model converted from ELMoForManyLangs (lexicon ids, 51 wide, word_proj table) exports from
    the weights of its ElmoEmbedder; ONNX Runtime on its lexicon ids equals the eager embedder."""
    from pathlib import Path

    from elmo_fast.export import export_onnx
    from elmo_fast.models.manylangs import convert_manylangs

    fixture = Path(__file__).parent / "fixtures" / "manylangs_tiny"
    files = convert_manylangs(fixture / "words", tmp_path / "words")
    eager = ElmoEmbedder(*files, state="zero", backend="ref")
    assert eager.elmo_bilm.options.n_words and eager.elmo_bilm.options.id_width == 51
    path = export_onnx(tmp_path / "words.onnx", eager.elmo_bilm.weights(), check=False)
    batch = [["the", "cat", "zzqx"], ["a"], ["naïve", "東京", "🙂", "straße", "x"]]
    ids = eager.elmo_bilm.batch_to_ids(batch)
    assert ids.shape[-1] == 51
    embeddings, mask = run_onnx(onnx_session(path, threads=1), ids)
    expected, expected_mask = eager.batch_to_embeddings(batch)
    assert torch.equal(mask, expected_mask)
    assert_close(embeddings, expected, what="ONNX Runtime vs eager ref on a converted lexicon model")
