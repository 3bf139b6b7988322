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
from elmo_fast.jobs import ResumeError

MODEL = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]


def cli(*args: str, wait: bool = True):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "elmo_fast", "embed", *args, *MODEL, "--quiet"]
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env)
    # The child gets SIGINT's default action (KeyboardInterrupt) even when pytest itself was started
    # with SIGINT ignored (a background job of a non-interactive shell passes that on to its children).
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


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
    # Complete segments (written under a .tmp name, renamed when done); resume must keep them as they are.
    finished = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts.glob("segment-*.h5")}
    assert len(finished) >= 4 and sorted(finished) == [f"segment-{i:06d}.h5" for i in range(len(finished))]
    again = cli(str(corpus), str(out), *common)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = cli(str(corpus), str(out), *common, "--resume", wait=False)
    first_new = parts / f"segment-{len(finished):06d}.h5"
    deadline = time.time() + 60
    while not first_new.exists():
        assert resumed.poll() is None, "the resumed run finished before its first new segment was seen; make the corpus larger"
        assert time.time() < deadline
        time.sleep(0.005)
    kept = {name: ((parts / name).stat().st_ino, (parts / name).stat().st_mtime_ns) for name in finished}
    assert kept == finished, "resume rewrote segments the interrupted run had finished"
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
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
    # The chunk sizes belong to the reference ops: pin that backend, or the patches change nothing.
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, state="zero", backend="ref").eval()
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
    from elmo_fast.jobs.segments import read_segment, segment_complete, write_segment

    rng = np.random.default_rng(0)
    records = [
        (str(i), f"sentence {i}", rng.standard_normal([n if d is None else d for d in shape]).astype(np.float32))
        for i, n in enumerate([3, 1, 7, 2])
    ]
    path = tmp_path / "segment-000000.h5"
    write_segment(path, records, None)
    assert segment_complete(path)
    back = list(read_segment(path))
    assert [(k, s) for k, s, _ in back] == [(k, s) for k, s, _ in records]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(back, records))
    write_segment(path, [], None)
    assert segment_complete(path) and list(read_segment(path)) == []


def test_segment_of_another_format_is_recomputed(tmp_path):
    from elmo_fast.jobs.segments import segment_complete

    path = tmp_path / "segment-000000.h5"
    with h5py.File(path, "w") as f:  # the layout of an older elmo_fast: one dataset per sentence
        f.create_dataset("keys", data=["0"], dtype=h5py.string_dtype())
        f.create_group("data").create_dataset("0", data=np.zeros((3, 2, 4), np.float32))
    assert not segment_complete(path)


def test_ids_out_of_range_or_of_the_wrong_type_are_refused():
    vocab = ["@@PADDING@@", "the", "cat"]
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, state="zero", backend="ref", vocab_to_cache=vocab).eval()
    bilm = elmo._elmo_lstm
    ids = batch_to_ids([["the", "cat"], ["cat"]])
    for bad in (262, -1):
        broken = ids.clone()
        broken[1, 0, 3] = bad
        with pytest.raises(ValueError, match=rf"character ids must lie in \[0, 262\).*{bad}"):
            elmo(broken)
        with pytest.raises(ValueError, match=r"character ids must lie in \[0, 262\)"):
            bilm(broken)
    with pytest.raises(TypeError, match="character ids must be an integer tensor.*float32"):
        bilm(ids.float())
    with pytest.raises(TypeError, match="character ids must be a torch.Tensor"):
        bilm(ids.tolist())
    words = torch.tensor([[1, 2], [2, 0]])
    assert_close(elmo(ids, words)["elmo_representations"][0], elmo(ids)["elmo_representations"][0], what="word ids")
    for bad in (3, -1):
        with pytest.raises(ValueError, match=rf"word_inputs must lie in \[0, 3\).*{bad}"):
            elmo(ids, torch.tensor([[1, bad], [2, 0]]))
    with pytest.raises(TypeError, match="word_inputs must be an integer tensor"):
        elmo(ids, words.double())
    with pytest.raises(ValueError, match=r"word_inputs must have shape \(B, T\) with B = 2"):
        bilm(ids, words[:1])


def test_carried_and_warm_state_follow_the_model_dtype():
    from elmo_fast.modules.elmo import load_bilm

    sentences = random_sentences(4, seed=43, max_len=9)
    ids, fewer = batch_to_ids(sentences), batch_to_ids(sentences[:2])
    single = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="ref", state="carry")
    single(ids)
    expected = single(fewer).activations
    moved = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="ref", state="carry")
    moved(ids)
    moved.to(torch.float64)
    got = moved(fewer).activations
    assert all(a.dtype == torch.float64 for a in got) and all(s.dtype == torch.float64 for s in moved._states)
    for a, e in zip(got, expected):
        assert_close(a, e, what="float64 after a float32 call")
    moved.to(torch.float32)
    for a, e in zip(moved(ids).activations, single(ids).activations):
        assert_close(a, e, what="float32 again after a float64 call")
    assert all(s.dtype == torch.float32 for s in moved._states)

    warm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="ref", state="warm")
    warm(ids)
    warm.to(torch.float64)
    fresh = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="ref", state="warm").to(torch.float64)
    for a, e in zip(warm(ids).activations, fresh(ids).activations):
        assert_close(a, e, dtype=torch.float64, what="warm state recomputed in float64")


def test_huge_tokens_and_lone_surrogates_in_files(tmp_path):
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    path = tmp_path / "long.txt"
    # 5,000-byte tokens: only the first 48 UTF-8 bytes of a token reach the model.
    path.write_text(f"a {'é' * 2500} b\n{'x' * 5000}\n", encoding="utf-8")
    emb.embed_file(path, tmp_path / "long.hdf5", progress=False)
    with h5py.File(tmp_path / "long.hdf5") as f:
        assert_close(f["0"][...], emb.embed_sentence(["a", "é" * 24, "b"]), what="5,000-byte token")
        assert_close(f["1"][...], emb.embed_sentence(["x" * 48]), what="5,000-byte token alone")
    # A lone surrogate cannot be valid UTF-8; its 3-byte encoding (CESU-8 / WTF-8) is undecodable.
    surrogate = "a\ud800b".encode("utf-8", "surrogatepass")
    bad = tmp_path / "surrogate.txt"
    bad.write_bytes(b"fine\n" + surrogate + b" c\r\n")
    with pytest.raises(ValueError, match=r"line 1 \(0-based\) is not valid UTF-8"):
        emb.embed_file(bad, tmp_path / "s.hdf5", progress=False)
    for errors, token in (("replace", "a\ufffd\ufffd\ufffdb"), ("ignore", "ab")):
        emb.embed_file(bad, tmp_path / f"{errors}.hdf5", encoding_errors=errors, progress=False)
        with h5py.File(tmp_path / f"{errors}.hdf5") as f:
            assert json.loads(f["sentence_to_index"][0]) == {"fine": "0", f"{token} c": "1"}
            assert_close(f["1"][...], emb.embed_sentence([token, "c"]), what=errors)
    # In a Python string a lone surrogate is dropped, as AllenNLP's encode("utf-8", "ignore") drops it.
    assert_close(emb.embed_sentence(["a\ud800b"]), emb.embed_sentence(["ab"]), what="lone surrogate in a str")


def test_cli_encoding_errors_and_sentence_limit(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"one\ntwo\nthree \xff four\n")
    out = tmp_path / "out.hdf5"
    strict = cli(str(bad), str(out))
    assert strict.returncode == 2 and "line 2 (0-based) is not valid UTF-8" in strict.stderr and "Traceback" not in strict.stderr
    assert not out.exists()
    assert cli(str(bad), str(out), "--encoding-errors", "ignore").returncode == 0
    with h5py.File(out) as f:
        assert json.loads(f["sentence_to_index"][0])["three  four"] == "2" and f["2"].shape == (3, 2, 32)
    text = tmp_path / "long.txt"
    text.write_text("a b c\nd e f g h i\n", encoding="utf-8")
    limited = cli(str(text), str(tmp_path / "l.hdf5"), "--max-sentence-length", "5")
    assert limited.returncode == 2 and "line 1 (0-based) has 6 tokens, more than max_sentence_length=5" in limited.stderr
    assert not (tmp_path / "l.hdf5.parts").exists(), "the limit is checked before any work"
    assert cli(str(text), str(tmp_path / "l.hdf5"), "--max-sentence-length", "6").returncode == 0
    zero = cli(str(text), str(tmp_path / "z.hdf5"), "--max-sentence-length", "0")
    assert zero.returncode == 2 and "max_sentence_length must be a positive integer, got 0" in zero.stderr


def test_bad_limits_and_iterables_fail_at_the_call():
    for limit in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="max_sentence_length must be a positive integer"):
            ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, max_sentence_length=limit)
    with pytest.raises(ValueError, match="max_sentence_length must be a positive integer"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, max_sentence_length=0)
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    for bad, name in ((None, "NoneType"), (3, "int"), ("a b", "str")):
        with pytest.raises(TypeError, match=f"list of sentences.*got {name}"):
            emb.embed_sentences(bad)
    with pytest.raises(TypeError, match="sentence 1 must be a list of token strings, got NoneType"):
        list(emb.embed_sentences(iter([["a"], None])))
    lazy = emb.embed_sentences(([w] for w in "abc"), batch_size=2)
    assert [a.shape for a in lazy] == [(3, 1, 32)] * 3


def test_merge_reopening_the_output_changes_nothing(tmp_path, monkeypatch):
    """The merge closes and reopens the output every MERGE_REOPEN_EVERY datasets (bounded HDF5
    metadata memory): with a tiny interval the file holds exactly what one handle writes."""
    import elmo_fast.jobs.segments as segments

    sentences = [s for s in random_sentences(30, seed=41, max_len=6) if s]
    text = tmp_path / "in.txt"
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    embedder.embed_file(text, tmp_path / "one_handle.hdf5", batch_size=4)
    reopened = []
    real_file = h5py.File

    def counting_file(path, mode="r", *args, **kwargs):
        if mode == "a":
            reopened.append(path)
        return real_file(path, mode, *args, **kwargs)

    monkeypatch.setattr(segments, "MERGE_REOPEN_EVERY", 4)
    monkeypatch.setattr(h5py, "File", counting_file)
    embedder.embed_file(text, tmp_path / "reopened.hdf5", batch_size=4)
    monkeypatch.undo()
    assert len(reopened) == len(sentences) // 4
    assert_same_hdf5(tmp_path / "one_handle.hdf5", tmp_path / "reopened.hdf5")
