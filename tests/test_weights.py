"""Weight files: load, export round trip, and every error message."""
from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import ElmoEmbedder, WeightFileError
from elmo_fast.weights import SMALL, ElmoOptions, expected_shapes, load_options, load_weights, random_weights, save_weights


def test_export_round_trip(tmp_path):
    weights = load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    save_weights(weights, tmp_path / "w.hdf5", tmp_path / "o.json")
    with h5py.File(FIXTURE_WEIGHTS) as a, h5py.File(tmp_path / "w.hdf5") as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in names:
            if name.endswith("/B"):
                # +1 on the forget block at load and -1 at export round to float32: 1 ulp of 1.0
                np.testing.assert_allclose(a[name][...], b[name][...], rtol=0, atol=1.2e-7, err_msg=name)
            else:
                np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
    assert load_options(tmp_path / "o.json") == load_options(FIXTURE_OPTIONS)
    sentences = random_sentences(4, seed=9)
    before = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero").embed_batch(sentences)
    after = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w.hdf5", state="zero").embed_batch(sentences)
    for x, y in zip(before, after):
        assert_close(y, x, what="reloaded export")


def test_forget_bias_and_layouts():
    weights = load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    c = weights.options.cell_dim
    with h5py.File(FIXTURE_WEIGHTS) as f:
        raw_b = f["RNN_1/RNN/MultiRNNCell/Cell0/LSTMCell/B"][...]
        raw_w = f["CNN/W_cnn_2"][...]
        raw_w0 = f["RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"][...]
    expected = raw_b.copy()
    expected[2 * c : 3 * c] += 1.0
    np.testing.assert_array_equal(weights.lstm[0].bias[1].numpy(), expected)
    np.testing.assert_array_equal(weights.char_cnn.conv_weights[2].numpy(), raw_w[0].transpose(2, 1, 0))
    np.testing.assert_array_equal(weights.lstm[1].w_hh[0].numpy(), raw_w0[16:])
    assert not weights.char_cnn.char_embed[0].any() and weights.char_cnn.char_embed.shape == (262, 4)


def test_random_small_config_loads_embeds_and_exports(tmp_path):
    save_weights(random_weights(SMALL, seed=1), tmp_path / "w.hdf5", tmp_path / "o.json")
    emb = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w.hdf5", state="zero")
    (vectors,) = emb.embed_batch([["a", "small", "test"]])
    assert vectors.shape == (3, 3, 256) and np.isfinite(vectors).all()
    save_weights(emb.elmo_bilm.weights(), tmp_path / "w2.hdf5")
    again = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w2.hdf5", state="zero").embed_batch([["a", "small", "test"]])
    np.testing.assert_array_equal(again[0], vectors)


def test_skip_connections_off_is_accepted(tmp_path):
    opts = ElmoOptions(projection_dim=8, cell_dim=16, filters=((1, 4), (2, 4)), n_highway=1, char_embed_dim=4, use_skip_connections=False)
    save_weights(random_weights(opts), tmp_path / "w.hdf5", tmp_path / "o.json")
    on = json.loads((tmp_path / "o.json").read_text())
    on["lstm"]["use_skip_connections"] = True
    (tmp_path / "on.json").write_text(json.dumps(on))
    off_vec = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w.hdf5", state="zero").embed_sentence(["x", "y"])
    on_vec = ElmoEmbedder(tmp_path / "on.json", tmp_path / "w.hdf5", state="zero").embed_sentence(["x", "y"])
    assert_close(off_vec[:2], on_vec[:2], what="layers below the residual")
    assert_close(on_vec[2] - off_vec[2], on_vec[1], what="residual adds layer 1")


@pytest.fixture()
def copy(tmp_path):
    shutil.copy(FIXTURE_OPTIONS, tmp_path / "options.json")
    shutil.copy(FIXTURE_WEIGHTS, tmp_path / "weights.hdf5")
    return tmp_path


def test_missing_files(copy):
    with pytest.raises(WeightFileError, match=r"nope\.json: options file not found"):
        load_weights(copy / "nope.json", copy / "weights.hdf5")
    with pytest.raises(WeightFileError, match=r"nope\.hdf5: weight file not found"):
        load_weights(copy / "options.json", copy / "nope.hdf5")


def test_not_hdf5_and_truncated(copy):
    (copy / "text.hdf5").write_text("this is not hdf5")
    with pytest.raises(WeightFileError, match=r"text\.hdf5: not a readable HDF5 file"):
        load_weights(copy / "options.json", copy / "text.hdf5")
    data = (copy / "weights.hdf5").read_bytes()
    (copy / "cut.hdf5").write_bytes(data[: len(data) // 2])
    # h5py refuses a file cut short at open (its end-of-file address lies past the end).
    with pytest.raises(WeightFileError, match=r"cut\.hdf5: not a readable HDF5 file \(.*(truncated|eof|EOF)"):
        load_weights(copy / "options.json", copy / "cut.hdf5")


def test_damaged_chunk_index_names_file_and_dataset(tmp_path):
    """A file that opens but whose chunk index (v1 B-tree nodes, signature TREE, type 1) is damaged."""
    save_weights(load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS), tmp_path / "w.hdf5")
    raw = bytearray((tmp_path / "w.hdf5").read_bytes())
    nodes = [i for i in range(len(raw) - 5) if raw[i : i + 5] == b"TREE\x01"]
    assert nodes, "no chunk B-tree node found"
    for i in nodes:
        raw[i : i + 4] = b"XXXX"
    (tmp_path / "w.hdf5").write_bytes(bytes(raw))
    with pytest.raises(WeightFileError) as info:
        load_weights(FIXTURE_OPTIONS, tmp_path / "w.hdf5")
    assert re.match(
        re.escape(str(tmp_path / "w.hdf5")) + r": dataset '[^']+' could not be read; the file is truncated or damaged \(.*B-tree",
        str(info.value),
    ), str(info.value)


def test_bad_compressed_chunk_without_checksum(copy):
    """A third-party gzip file with a damaged chunk: a read error naming file and dataset, not a checksum claim."""
    name = "CNN_proj/W_proj"
    with h5py.File(FIXTURE_WEIGHTS) as src, h5py.File(copy / "gzip.hdf5", "w") as out:
        names: list[str] = []
        src.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for n in names:
            out.create_dataset(n, data=src[n][...], compression="gzip")
    with h5py.File(copy / "gzip.hdf5") as f:
        chunk = f[name].id.get_chunk_info(0)
    raw = bytearray((copy / "gzip.hdf5").read_bytes())
    for k in range(8):
        raw[chunk.byte_offset + 10 + k] ^= 0xFF
    (copy / "gzip.hdf5").write_bytes(bytes(raw))
    with pytest.raises(WeightFileError, match=rf"gzip\.hdf5: dataset '{name}' could not be read; the file is truncated or damaged") as info:
        load_weights(copy / "options.json", copy / "gzip.hdf5")
    assert "checksum" not in str(info.value)[len(str(copy / "gzip.hdf5")) :]


def test_missing_dataset_and_wrong_shape(copy):
    with h5py.File(copy / "weights.hdf5", "a") as f:
        del f["CNN_high_0/W_carry"]
    with pytest.raises(WeightFileError, match=r"weights\.hdf5: dataset 'CNN_high_0/W_carry' is missing"):
        load_weights(copy / "options.json", copy / "weights.hdf5")
    options = json.loads((copy / "options.json").read_text())
    options["lstm"]["dim"] = 48
    (copy / "big.json").write_text(json.dumps(options))
    with pytest.raises(WeightFileError, match=r"dataset 'RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/W_0' has shape \(32, 128\) but the options ask for \(32, 192\)") as info:
        load_weights(copy / "big.json", FIXTURE_WEIGHTS)
    assert str(info.value).startswith(f"{FIXTURE_WEIGHTS}: ")


def test_group_where_a_dataset_should_be(copy):
    with h5py.File(copy / "weights.hdf5", "a") as f:
        del f["CNN_proj/b_proj"]
        f["CNN_proj"].create_group("b_proj")
    with pytest.raises(WeightFileError, match=r"weights\.hdf5: 'CNN_proj/b_proj' is a group, not a dataset") as info:
        load_weights(copy / "options.json", copy / "weights.hdf5")
    assert "is missing" not in str(info.value)[len(str(copy / "weights.hdf5")) :]


def test_datasets_at_other_paths(copy):
    """A file from another tool that nests the same datasets under a prefix."""
    with h5py.File(FIXTURE_WEIGHTS) as src, h5py.File(copy / "other.hdf5", "w") as out:
        for key in src:
            src.copy(src[key], out.require_group("model"), name=key)
    with pytest.raises(WeightFileError) as info:
        load_weights(copy / "options.json", copy / "other.hdf5")
    message = str(info.value)
    assert message.startswith(f"{copy / 'other.hdf5'}: dataset 'char_embed' is missing")
    assert "'model/char_embed'" in message


def test_unrelated_hdf5_lists_what_it_holds(copy):
    with h5py.File(copy / "other.hdf5", "w") as f:
        f["embeddings"] = np.zeros((3, 4), np.float32)
    with pytest.raises(WeightFileError, match=r"other\.hdf5: dataset 'char_embed' is missing \(top-level names in the file: 'embeddings'\)"):
        load_weights(copy / "options.json", copy / "other.hdf5")


def test_transposed_dataset(copy):
    name = "CNN_proj/W_proj"
    with h5py.File(copy / "weights.hdf5", "a") as f:
        w = f[name][...]
        del f[name]
        f[name] = w.T
    with pytest.raises(WeightFileError) as info:
        load_weights(copy / "options.json", copy / "weights.hdf5")
    message = str(info.value)
    assert message.startswith(f"{copy / 'weights.hdf5'}: dataset '{name}' ")
    reason = message[len(str(copy / "weights.hdf5")) :]  # the temp path itself may contain any word
    assert f"has shape {w.T.shape} but the options ask for {w.shape}" in reason
    assert "(transposed" in reason


def test_nan_in_weights(copy):
    with h5py.File(copy / "weights.hdf5", "a") as f:
        f["CNN_proj/b_proj"][3] = np.nan
    with pytest.raises(WeightFileError, match=r"weights\.hdf5: dataset 'CNN_proj/b_proj' holds 1 NaN or Inf values \(1 NaN, 0 \+Inf, 0 -Inf\)"):
        load_weights(copy / "options.json", copy / "weights.hdf5")


def test_inf_in_weights(copy):
    with h5py.File(copy / "weights.hdf5", "a") as f:
        f["CNN_high_0/W_carry"][0, 1] = np.inf
        f["CNN_high_0/W_carry"][2, 3] = -np.inf
        f["CNN_high_0/W_carry"][4, 5] = -np.inf
    with pytest.raises(WeightFileError, match=r"weights\.hdf5: dataset 'CNN_high_0/W_carry' holds 3 NaN or Inf values \(0 NaN, 1 \+Inf, 2 -Inf\)"):
        load_weights(copy / "options.json", copy / "weights.hdf5")


def test_saved_files_carry_checksums_and_read_with_plain_h5py(tmp_path):
    weights = load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    save_weights(weights, tmp_path / "w.hdf5", tmp_path / "o.json")
    names = list(expected_shapes(weights.options))
    with h5py.File(tmp_path / "w.hdf5", "r") as f, h5py.File(FIXTURE_WEIGHTS, "r") as src:
        for name in names:
            assert f[name].fletcher32 and f[name].chunks is not None, name
            # plain h5py reads (AllenNLP's path: h5py dataset[...]) decode the filter transparently
            if not name.endswith("/B"):
                np.testing.assert_array_equal(f[name][...], src[name][...], err_msg=name)
    again = load_weights(tmp_path / "o.json", tmp_path / "w.hdf5")
    for key, tensor in weights.tensors().items():
        torch.testing.assert_close(again.tensors()[key], tensor, rtol=0, atol=1.2e-7, msg=key)


def _chunk_data_offset(path, name) -> int:
    with h5py.File(path, "r") as f:
        dataset = f[name]
        assert dataset.chunks is not None
        info = dataset.id.get_chunk_info(0)
        assert info.size > 64
        return info.byte_offset


@pytest.mark.parametrize("name", ["CNN_proj/W_proj", "RNN_1/RNN/MultiRNNCell/Cell0/LSTMCell/W_0"])
def test_corrupted_checksummed_file_is_rejected(tmp_path, name):
    weights = load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    save_weights(weights, tmp_path / "w.hdf5", tmp_path / "o.json")
    offset = _chunk_data_offset(tmp_path / "w.hdf5", name)
    raw = bytearray((tmp_path / "w.hdf5").read_bytes())
    # Flip bits in two bytes of one float's mantissa: the value stays finite (no NaN/Inf to catch it).
    raw[offset + 20] ^= 0x01
    raw[offset + 21] ^= 0x10
    (tmp_path / "w.hdf5").write_bytes(bytes(raw))
    with pytest.raises(WeightFileError) as info:
        load_weights(tmp_path / "o.json", tmp_path / "w.hdf5")
    message = str(info.value)
    prefix = f"{tmp_path / 'w.hdf5'}: "
    assert message.startswith(prefix)
    assert message[len(prefix) :].startswith(f"dataset '{name}' failed its Fletcher32 checksum: the stored data is corrupted")


def test_corruption_in_a_file_without_checksums_goes_undetected(copy):
    """Documents the limit: bilm-tf files have no checksums, so a finite-valued corruption loads."""
    name = "CNN_proj/W_proj"
    with h5py.File(copy / "weights.hdf5", "r") as f:
        assert not f[name].fletcher32
        offset = f[name].id.get_offset()
        assert offset is not None  # contiguous storage
        original = f[name][...]
    raw = bytearray((copy / "weights.hdf5").read_bytes())
    raw[offset + 1] ^= 0x01  # low mantissa byte of the first float
    (copy / "weights.hdf5").write_bytes(bytes(raw))
    loaded = load_weights(copy / "options.json", copy / "weights.hdf5")
    changed = loaded.char_cnn.proj_weight.numpy() != original
    assert changed.sum() == 1 and np.isfinite(loaded.char_cnn.proj_weight.numpy()).all()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda o: o["char_cnn"].update(activation="gelu"), "activation='gelu' is unsupported"),
        (lambda o: o["char_cnn"].update(max_characters_per_token=40), "max_characters_per_token=40 is unsupported"),
        (lambda o: o["char_cnn"].update(n_characters=300), "n_characters=300 is unsupported"),
        (lambda o: o["lstm"].update(projection_dim=-3), "lstm.projection_dim must be a positive integer"),
        (lambda o: o["lstm"].pop("dim"), "missing field lstm.dim"),
        (lambda o: o.pop("char_cnn"), "missing section 'char_cnn'"),
        (lambda o: o["char_cnn"].update(filters=[[1]]), "char_cnn.filters"),
    ],
)
def test_bad_options(copy, edit, message):
    options = json.loads((copy / "options.json").read_text())
    edit(options)
    (copy / "options.json").write_text(json.dumps(options))
    with pytest.raises(WeightFileError, match=message) as info:
        load_weights(copy / "options.json", copy / "weights.hdf5")
    assert "options.json" in str(info.value)


def test_options_not_json(copy):
    (copy / "options.json").write_text("{not json")
    with pytest.raises(WeightFileError, match="not a valid JSON options file"):
        load_options(copy / "options.json")


def test_weights_module_accepts_float64_free_tensors():
    weights = random_weights(ElmoOptions(projection_dim=4, cell_dim=8, filters=((1, 2),), n_highway=0, char_embed_dim=2))
    assert all(t.dtype == torch.float32 for t in weights.tensors().values())


def test_random_original_config_loads_embeds_and_exports(tmp_path):
    from elmo_fast.weights import ORIGINAL

    weights = random_weights(ORIGINAL, seed=3)
    stored = sum(t.numel() for t in weights.tensors().values()) - weights.options.char_embed_dim
    assert stored == 93_600_848
    save_weights(weights, tmp_path / "w.hdf5", tmp_path / "o.json")
    del weights
    emb = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w.hdf5", state="zero")
    sentence = "The quick brown fox jumps over the lazy dog .".split()
    vectors = emb.embed_sentence(sentence)
    assert vectors.shape == (3, 10, 1024) and np.isfinite(vectors).all()
    save_weights(emb.elmo_bilm.weights(), tmp_path / "w2.hdf5")
    del emb
    again = ElmoEmbedder(tmp_path / "o.json", tmp_path / "w2.hdf5", state="zero").embed_sentence(sentence)
    assert_close(again, vectors, what="original config after export")
