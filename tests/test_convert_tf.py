"""``elmo-fast convert tf``: checkpoints written by TensorFlow itself, round-tripped to identical outputs.

The test writes the fixture model's tensors into TF1-format checkpoints under bilm-tf's training
variable names (``lm/...``) and under the TF-Hub elmo module's names (``bilm/...`` in
``variables/variables``), plus variables a real checkpoint also holds (optimizer slots, softmax,
step counter, the Hub module's scalar mix), converts them and compares the model's outputs.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.cli import main  # noqa: E402
from elmo_fast.models.tf import convert_tf, hdf5_name  # noqa: E402
from tests.utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS  # noqa: E402

LSTM = "RNN_{r}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"
TRAIN_LSTM = "lm/RNN_{r}/rnn/multi_rnn_cell/cell_{k}/lstm_cell/"
HUB_LSTM = "bilm/RNN_{r}/RNN/MultiRNNCell/Cell{k}/rnn/lstm_cell/"
EXTRA = {"lm/softmax/W": (7, 3), "lm/CNN/W_cnn_0/Adagrad": (1, 1, 1, 1), "global_step": (), "aggregation/weights": (3,)}


def _fixture_tensors() -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(FIXTURE_WEIGHTS, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _tf_name(name: str, style: str) -> str:
    for r in range(2):
        for k in range(4):
            prefix = LSTM.format(r=r, k=k)
            if name.startswith(prefix):
                leaf = {"W_0": "kernel", "B": "bias", "W_P_0": "projection/kernel"}[name[len(prefix):]]
                return (TRAIN_LSTM if style == "train" else HUB_LSTM).format(r=r, k=k) + leaf
    return ("lm/" if style == "train" else "bilm/") + name


def _write_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=tf.constant(value)) for name, value in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)


@pytest.mark.parametrize("style", ["train", "hub"])
def test_checkpoint_round_trips_to_identical_outputs(tmp_path, style):
    tensors = _fixture_tensors()
    named = {_tf_name(n, style): v for n, v in tensors.items()}
    named.update({n: np.ones(s, np.float32) for n, s in EXTRA.items()})
    if style == "train":
        source = tmp_path / "ckpt"
        source.mkdir()
        _write_checkpoint(str(source / "model.ckpt-10"), named)
        checkpoint = source
    else:
        checkpoint = tmp_path / "hub_module"
        (checkpoint / "variables").mkdir(parents=True)
        _write_checkpoint(str(checkpoint / "variables" / "variables"), named)
    dest = tmp_path / "out"
    options, weights = convert_tf(checkpoint, dest, options_file=FIXTURE_OPTIONS)
    with h5py.File(weights, "r") as f:
        names = set()
        f.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
        assert names == set(tensors)
        for name, value in tensors.items():
            np.testing.assert_array_equal(f[name][...], value)
    sentences = [["The", "cat", "sat", "on", "the", "mat", "."], ["ELMo", "!"]]
    want = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend="ref").embed_batch(sentences)
    got = ElmoEmbedder(options, weights, state="zero", backend="ref").embed_batch(sentences)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_options_are_inferred_from_shapes_without_an_options_file(tmp_path):
    tensors = _fixture_tensors()
    prefix = tmp_path / "model.ckpt"
    _write_checkpoint(str(prefix), {_tf_name(n, "train"): v for n, v in tensors.items()})
    assert main(["convert", "tf", str(prefix), str(tmp_path / "out")]) == 0
    inferred = json.loads((tmp_path / "out" / "options.json").read_text())
    given = json.loads(FIXTURE_OPTIONS.read_text())
    for key in ("projection_dim", "dim", "n_layers"):
        assert inferred["lstm"][key] == given["lstm"][key]
    assert inferred["char_cnn"]["filters"] == given["char_cnn"]["filters"]
    assert inferred["char_cnn"]["n_highway"] == given["char_cnn"]["n_highway"]


def test_names_follow_dump_weights():
    assert hdf5_name("lm/RNN_1/rnn/multi_rnn_cell/cell_0/lstm_cell/projection/kernel:0") == LSTM.format(r=1, k=0) + "W_P_0"
    assert hdf5_name("bilm/RNN_0/RNN/MultiRNNCell/Cell1/rnn/lstm_cell/bias") == LSTM.format(r=0, k=1) + "B"
    assert hdf5_name("lm/CNN_high_0/W_carry") == "CNN_high_0/W_carry"
    assert hdf5_name("lm/softmax/W") is None and hdf5_name("lm/CNN/W_cnn_0/Adagrad") is None


def test_not_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["convert", "tf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "checkpoint" in capsys.readouterr().err
