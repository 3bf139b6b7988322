"""The elmo-fast command end to end: hdf5 layout as AllenNLP's `elmo` command, equal to the Python API."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import ElmoEmbedder
from elmo_fast.cli import main

MODEL = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]


@pytest.fixture()
def text(tmp_path):
    sentences = [s for s in random_sentences(9, seed=21) if s] + [["The", "same", "line"], ["The", "same", "line"]]
    path = tmp_path / "in.txt"
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    return path, sentences


def test_subprocess_embed_all_matches_python_api(tmp_path, text):
    path, sentences = text
    out = tmp_path / "out.hdf5"
    done = subprocess.run(
        [sys.executable, "-m", "elmo_fast", "embed", str(path), str(out), *MODEL, "--batch-size", "4", "--state", "zero"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    expected = list(ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero").embed_sentences(sentences, batch_size=4))
    with h5py.File(out) as f:
        assert set(f.keys()) == {str(i) for i in range(len(sentences))} | {"sentence_to_index"}
        for i, vectors in enumerate(expected):
            assert f[str(i)].dtype == np.float32
            assert_close(f[str(i)][...], vectors, what=f"line {i}")
        mapping = json.loads(f["sentence_to_index"][0])
    lines = [" ".join(s) for s in sentences]
    assert mapping == {line: str(max(i for i, other in enumerate(lines) if other == line)) for line in lines}


@pytest.mark.parametrize("fmt", ["top", "average"])
def test_top_and_average_carry_state_like_the_api(tmp_path, text, fmt):
    path, sentences = text
    out = tmp_path / f"{fmt}.hdf5"
    assert main(["embed", str(path), str(out), *MODEL, f"--{fmt}", "--batch-size", "3", "--quiet"]) == 0
    expected = list(ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS).embed_sentences(sentences, batch_size=3))
    with h5py.File(out) as f:
        for i, vectors in enumerate(expected):
            want = vectors[-1] if fmt == "top" else np.average(vectors, axis=0)
            assert_close(f[str(i)][...], want, what=f"{fmt} line {i}")


def test_sentence_keys_and_forget(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("one two\nthree\n", encoding="utf-8")
    out = tmp_path / "keys.hdf5"
    assert main(["embed", str(path), str(out), *MODEL, "--use-sentence-keys", "--quiet"]) == 0
    with h5py.File(out) as f:
        assert set(f.keys()) == {"one two", "three"} and f["one two"].shape == (3, 2, 32)
    out2 = tmp_path / "forget.hdf5"
    assert main(["embed", str(path), str(out2), *MODEL, "--forget-sentences", "--quiet"]) == 0
    with h5py.File(out2) as f:
        assert set(f.keys()) == {"0", "1"}


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    path = tmp_path / "in.txt"
    path.write_text("fine\n\nalso fine\n", encoding="utf-8")
    out = tmp_path / "out.hdf5"
    assert main(["embed", str(path), str(out), *MODEL, "--quiet"]) == 2
    assert "empty line(s) at (0-based) line indexes 1" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".out.hdf5*"))
    out.write_bytes(b"precious")
    path.write_text("fine\n", encoding="utf-8")
    assert main(["embed", str(path), str(out), *MODEL]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["embed", str(path), str(out), "--options", str(FIXTURE_OPTIONS), "--weights", str(tmp_path / "no.hdf5"), "--overwrite"]) == 2
    assert "weight file not found" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing.txt"), str(out), *MODEL]) == 2
    assert "missing.txt not found" in capsys.readouterr().err


def test_env_command(capsys):
    import numpy
    import tqdm

    from elmo_fast._backends import BACKENDS

    assert main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for prefix in (f"torch {torch.__version__} ", f"numpy {numpy.__version__}", f"h5py {h5py.__version__}", f"tqdm {tqdm.__version__}"):
        assert any(line.startswith(prefix) for line in lines), f"no line starting {prefix!r} in {lines}"
    assert "backends:" in lines
    for backend in BACKENDS:
        assert any(re.match(rf"  {backend}\s+(yes|no)\b", line) for line in lines), f"no line for backend {backend!r}"
