"""Long inputs, bad files, interrupted jobs: clear errors and nothing lost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

import elmo_fast.reference.lstmp as lstmp_module
import elmo_fast.reference.token_encoder as encoder_module
from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids
from elmo_fast.embed_job import ResumeError

MODEL = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]


def cli(*args: str, wait: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "elmo_fast", "embed", *args, *MODEL, "--quiet"]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def assert_same_hdf5(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        assert set(fa.keys()) == set(fb.keys())
        for key in fa.keys():
            assert np.array_equal(fa[key][...], fb[key][...]), key


COMMON = ["--batch-size", "8", "--checkpoint-every", "40", "--state", "carry"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    sentences = [s for s in random_sentences(2000, seed=31, max_len=10) if s]
    path = tmp_path_factory.mktemp("corpus") / "in.txt"
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uninterrupted(corpus):
    reference = corpus.with_name("reference.hdf5")
    done = cli(str(corpus), str(reference), *COMMON)
    assert done.returncode == 0, done.stderr
    return reference


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_identical_file(tmp_path, corpus, uninterrupted, sig):
    common = COMMON
    reference = uninterrupted
    out = tmp_path / "out.hdf5"
    parts = tmp_path / "out.hdf5.parts"
    proc = cli(str(corpus), str(out), *common, wait=False)
    deadline = time.time() + 60
    while not (parts / "segment-000003.h5").exists():
        assert proc.poll() is None, "the run finished before it could be interrupted; make the corpus larger"
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0 and not out.exists() and parts.exists()
    again = cli(str(corpus), str(out), *common)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = cli(str(corpus), str(out), *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not parts.exists()
    assert_same_hdf5(reference, out)


def test_resume_refuses_a_different_job(tmp_path, corpus):
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    out = tmp_path / "o.hdf5"
    (tmp_path / "o.hdf5.parts").mkdir()
    (tmp_path / "o.hdf5.parts" / "job.json").write_text('{"batch_size": 99}')
    with pytest.raises(ResumeError, match="batch_size"):
        emb.embed_file(corpus, out, batch_size=8, resume=True, progress=False)
    with pytest.raises(ResumeError, match="interrupted run"):
        emb.embed_file(corpus, out, batch_size=8, progress=False)


def test_bad_utf8_crlf_and_file_objects(tmp_path):
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line\nbad \xff\xfe byte\n")
    with pytest.raises(ValueError, match=r"line 1 \(0-based\) is not valid UTF-8"):
        emb.embed_file(bad, tmp_path / "bad.hdf5", progress=False)
    emb.embed_file(bad, tmp_path / "bad.hdf5", encoding_errors="replace", progress=False)
    with h5py.File(tmp_path / "bad.hdf5") as f:
        assert "bad \ufffd\ufffd byte" in json.loads(f["sentence_to_index"][0])
        assert f["1"].shape == (3, 3, 32)
    crlf, lf = tmp_path / "crlf.txt", tmp_path / "lf.txt"
    crlf.write_bytes(b"one two\r\nthree\r\n")
    lf.write_bytes(b"one two\nthree\n")
    emb.embed_file(crlf, tmp_path / "crlf.hdf5", progress=False)
    with open(lf, encoding="utf-8") as handle:
        emb.embed_file(handle, tmp_path / "lf.hdf5", progress=False)
        assert handle.closed
    assert_same_hdf5(tmp_path / "crlf.hdf5", tmp_path / "lf.hdf5")


def test_duplicate_sentence_keys_fail_before_any_work(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("a b\nc\na b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 repeats the sentence 'a b'"):
        ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS).embed_file(path, tmp_path / "o.hdf5", use_sentence_keys=True, progress=False)
    assert not (tmp_path / "o.hdf5.parts").exists()


def test_long_sentence_and_limit():
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", max_sentence_length=12_000)
    words = [f"w{i % 313}" for i in range(10_001)]
    vectors = emb.embed_sentence(words)
    assert vectors.shape == (3, 10_001, 32) and np.isfinite(vectors).all()
    with pytest.raises(ValueError, match="exceeds max_sentence_length=12000"):
        emb.embed_sentence(words + words)


def test_chunked_ops_equal_unchunked(monkeypatch):
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, state="zero").eval()
    ids = batch_to_ids(random_sentences(7, seed=41, max_len=30))
    whole = elmo(ids)["elmo_representations"][0]
    monkeypatch.setattr(lstmp_module, "TIME_CHUNK", 3)
    monkeypatch.setattr(encoder_module, "CHUNK_ELEMENTS", 28 * 50 * 5)
    assert_close(elmo(ids)["elmo_representations"][0], whole, what="chunked")


def test_empty_batches():
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0).eval()
    out = elmo(batch_to_ids([]))
    assert out["elmo_representations"][0].shape == (0, 0, 32) and out["mask"].shape == (0, 0)
    assert ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS).embed_batch([]) == []
    with pytest.raises(ValueError, match=r"\(B, T, 50\)"):
        elmo._elmo_lstm(torch.zeros(2, 50, dtype=torch.long))


@pytest.mark.parametrize("shape", [(3, None, 4), (None, 4)], ids=["all", "top"])
def test_segment_file_round_trip(tmp_path, shape):
    from elmo_fast.embed_job import _read_segment, _write_segment, segment_complete

    rng = np.random.default_rng(0)
    records = [
        (str(i), f"sentence {i}", rng.standard_normal([n if d is None else d for d in shape]).astype(np.float32))
        for i, n in enumerate([3, 1, 7, 2])
    ]
    path = tmp_path / "segment-000000.h5"
    _write_segment(path, records, None)
    assert segment_complete(path)
    back = list(_read_segment(path))
    assert [(k, s) for k, s, _ in back] == [(k, s) for k, s, _ in records]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(back, records))
    _write_segment(path, [], None)
    assert segment_complete(path) and list(_read_segment(path)) == []


def test_segment_of_another_format_is_recomputed(tmp_path):
    from elmo_fast.embed_job import segment_complete

    path = tmp_path / "segment-000000.h5"
    with h5py.File(path, "w") as f:  # the layout of an older elmo_fast: one dataset per sentence
        f.create_dataset("keys", data=["0"], dtype=h5py.string_dtype())
        f.create_group("data").create_dataset("0", data=np.zeros((3, 2, 4), np.float32))
    assert not segment_complete(path)
