"""``elmo-fast convert tf``: checkpoints written by TensorFlow itself, round-tripped to identical outputs.

tests/tf_checkpoint_writer.py writes the fixture model's tensors into TF1-format checkpoints under
bilm-tf's training variable names (``lm/...``) and under the TF-Hub elmo module's names (``bilm/...``
in ``variables/variables``), plus variables a real checkpoint also holds (optimizer slots, softmax,
step counter, the Hub module's scalar mix). Writing and converting run in child processes: this
process must not import TensorFlow (it aborts a later Triton import, see the writer's docstring).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from elmo_fast import ElmoEmbedder
from elmo_fast.models.tf import hdf5_name
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS

needs_tf = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="pip install 'elmo_fast[tf]'")
WRITER = Path(__file__).parent / "tf_checkpoint_writer.py"
LSTM = "RNN_{r}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Three checkpoints written by one TensorFlow process: a bilm-tf training folder, a TF-Hub
    module folder, and a bare training checkpoint prefix."""
    root = tmp_path_factory.mktemp("tf")
    (root / "ckpt").mkdir()
    (root / "hub_module" / "variables").mkdir(parents=True)
    prefixes = {"train": root / "ckpt" / "model.ckpt-10", "hub": root / "hub_module" / "variables" / "variables", "bare": root / "model.ckpt"}
    styles = {"train": "train", "hub": "hub", "bare": "train"}
    args = [str(a) for key in prefixes for a in (prefixes[key], styles[key])]
    done = _run(str(WRITER), str(FIXTURE_WEIGHTS), *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return {"train": root / "ckpt", "hub": root / "hub_module", "bare": prefixes["bare"]}


def _convert(*args: str) -> subprocess.CompletedProcess:
    return _run("-m", "elmo_fast", "convert", "tf", *args)


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
    return out


@needs_tf
@pytest.mark.parametrize("style", ["train", "hub"])
def test_checkpoint_round_trips_to_identical_outputs(tmp_path, checkpoints, style):
    dest = tmp_path / "out"
    done = _convert(str(checkpoints[style]), str(dest), "--options", str(FIXTURE_OPTIONS))
    assert done.returncode == 0, done.stderr[-2000:]
    want, got = _datasets(FIXTURE_WEIGHTS), _datasets(dest / "weights.hdf5")
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)
    sentences = [["The", "cat", "sat", "on", "the", "mat", "."], ["ELMo", "!"]]
    expected = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend="ref").embed_batch(sentences)
    converted = ElmoEmbedder(dest / "options.json", dest / "weights.hdf5", state="zero", backend="ref").embed_batch(sentences)
    for a, b in zip(converted, expected):
        np.testing.assert_array_equal(a, b)


@needs_tf
def test_options_are_inferred_from_shapes_without_an_options_file(tmp_path, checkpoints):
    done = _convert(str(checkpoints["bare"]), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    inferred = json.loads((tmp_path / "out" / "options.json").read_text())
    given = json.loads(FIXTURE_OPTIONS.read_text())
    for key in ("projection_dim", "dim", "n_layers"):
        assert inferred["lstm"][key] == given["lstm"][key]
    assert inferred["char_cnn"]["filters"] == given["char_cnn"]["filters"]
    assert inferred["char_cnn"]["n_highway"] == given["char_cnn"]["n_highway"]


def test_not_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    from elmo_fast.cli import main

    assert main(["convert", "tf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no TensorFlow checkpoint" in capsys.readouterr().err
    assert "tensorflow" not in sys.modules


def test_names_follow_dump_weights():
    assert hdf5_name("lm/RNN_1/rnn/multi_rnn_cell/cell_0/lstm_cell/projection/kernel:0") == LSTM.format(r=1, k=0) + "W_P_0"
    assert hdf5_name("bilm/RNN_0/RNN/MultiRNNCell/Cell1/rnn/lstm_cell/bias") == LSTM.format(r=0, k=1) + "B"
    assert hdf5_name("lm/CNN_high_0/W_carry") == "CNN_high_0/W_carry"
    assert hdf5_name("lm/softmax/W") is None and hdf5_name("lm/CNN/W_cnn_0/Adagrad") is None
