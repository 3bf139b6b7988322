"""Length bucketing and the token budget: same vectors as in-order batches, in the caller's order."""
from __future__ import annotations

import itertools
import json

import h5py
import pytest
from hypothesis import given
from hypothesis import strategies as st
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import ElmoEmbedder
from elmo_fast.batching import BUCKET_WINDOW_BATCHES, plan_batches
from elmo_fast.cli import main
from elmo_fast.jobs import JobSpec, ResumeError
from elmo_fast.jobs.segments import prepare

MODEL = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]


@pytest.fixture(scope="module")
def sentences():
    # mixed lengths 0..15, some empty; more than one look-ahead window at batch size 2
    return random_sentences(2 * BUCKET_WINDOW_BATCHES + 9, seed=31, max_len=15)


def recording(embedder: ElmoEmbedder) -> list[list[int]]:
    """Wrap the step that runs the model on one batch (below the public, checking methods): the list
    it returns fills with each batch's sentence lengths."""
    seen: list[list[int]] = []
    inner = embedder._embeddings

    def embeddings(batch):
        seen.append([len(s) for s in batch])
        return inner(batch)

    embedder._embeddings = embeddings
    return seen


def test_plan_batches_examples():
    lengths = [5, 1, 3, 1, 0, 9]
    assert plan_batches(lengths, 2) == [[0, 1], [2, 3], [4, 5]]
    assert plan_batches(lengths, 2, bucket=True) == [[4, 1], [3, 2], [0, 5]]
    assert plan_batches(lengths, 4, bucket=True, max_tokens=6) == [[4, 1, 3], [2], [0], [5]]
    assert plan_batches(lengths, 6, max_tokens=10) == [[0, 1], [2, 3, 4], [5]]
    assert plan_batches([], 3, bucket=True, max_tokens=5) == []


@given(
    st.lists(st.integers(0, 40), max_size=60),
    st.integers(1, 9),
    st.booleans(),
    st.one_of(st.none(), st.integers(1, 80)),
)
def test_plan_batches_properties(lengths, batch_size, bucket, max_tokens):
    plan = plan_batches(lengths, batch_size, bucket=bucket, max_tokens=max_tokens)
    flat = [i for rows in plan for i in rows]
    assert sorted(flat) == list(range(len(lengths)))
    if not bucket:
        assert flat == list(range(len(lengths)))
    else:
        assert [lengths[i] for i in flat] == sorted(lengths)
    for rows in plan:
        assert 1 <= len(rows) <= batch_size
        if max_tokens is not None and len(rows) > 1:
            assert len(rows) * max(lengths[i] for i in rows) <= max_tokens
    if max_tokens is None:
        assert all(len(rows) == batch_size for rows in plan[:-1])


@pytest.mark.parametrize("state", ["zero", "warm"])
@pytest.mark.parametrize("batch_size, max_tokens", [(2, None), (5, None), (8, 30)])
def test_bucketed_equals_in_order_and_keeps_order(sentences, state, batch_size, max_tokens):
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state=state)
    in_order = list(embedder.embed_sentences(sentences, batch_size, bucket=False))
    batches = recording(embedder)
    bucketed = list(embedder.embed_sentences(iter(sentences), batch_size, max_tokens=max_tokens))
    assert len(bucketed) == len(sentences)
    for i, (got, want) in enumerate(zip(bucketed, in_order)):
        assert got.shape == want.shape == (3, len(sentences[i]), 32)
        assert_close(got, want, what=f"sentence {i}")
    # bucketed: each window's batches run in order of length
    window = batch_size * BUCKET_WINDOW_BATCHES
    firsts = list(itertools.accumulate((len(b) for b in batches), initial=0))
    for start in range(0, len(sentences), window):
        lengths = [n for b, first in zip(batches, firsts) if start <= first < start + window for n in b]
        assert lengths == sorted(len(s) for s in sentences[start : start + window])


def test_token_budget_is_respected(sentences):
    lengths = [len(s) for s in sentences]
    assert len(sentences) <= 16 * BUCKET_WINDOW_BATCHES
    for bucket in (True, False):
        embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
        batches = recording(embedder)
        list(embedder.embed_sentences(sentences, 16, bucket=bucket, max_tokens=40))
        assert any(len(b) > 1 for b in batches)
        for b in batches:
            assert len(b) <= 16 and (len(b) == 1 or len(b) * max(b) <= 40), b
        # the batches formed are the plan's ([[]] alone is answered without the model)
        plan = plan_batches(lengths, 16, bucket=bucket, max_tokens=40)
        assert batches == [[lengths[i] for i in rows] for rows in plan if [lengths[i] for i in rows] != [0]]


def test_default_is_bucketed_for_zero_and_in_order_for_carry(sentences):
    zero = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    carry = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    first = sentences[:12]
    zero_batches, carry_batches = recording(zero), recording(carry)
    list(zero.embed_sentences(first, 4))
    list(carry.embed_sentences(first, 4))
    assert [n for b in zero_batches for n in b] == sorted(map(len, first))
    assert carry_batches == [[len(s) for s in first[i : i + 4]] for i in range(0, 12, 4)]


def test_carry_refuses_bucketing_and_budget(tmp_path):
    carry = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    with pytest.raises(ValueError, match="bucket=True needs state 'zero' or 'warm', not 'carry'"):
        carry.embed_sentences([["a"]], bucket=True)
    with pytest.raises(ValueError, match="max_tokens needs state 'zero' or 'warm'"):
        carry.embed_sentences([["a"]], max_tokens=100)
    path = tmp_path / "in.txt"
    path.write_text("a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bucket=True needs state"):
        carry.embed_file(path, tmp_path / "o.hdf5", bucket=True, progress=False)
    assert not (tmp_path / "o.hdf5.parts").exists()
    assert len(list(carry.embed_sentences([["a"]], bucket=False))) == 1
    zero = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_tokens must be a positive integer"):
            zero.embed_sentences([["a"]], max_tokens=bad)
    with pytest.raises(ValueError, match="bucket must be True, False or None"):
        zero.embed_sentences([["a"]], bucket="yes")


def test_streaming_reads_one_window_ahead():
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield ["word"] * (i % 7 + 1)

    out = embedder.embed_sentences(endless(), 2)
    first = [next(out) for _ in range(3)]
    assert [a.shape[1] for a in first] == [1, 2, 3]
    assert pulled == 2 * BUCKET_WINDOW_BATCHES


def test_embed_file_and_cli_bucketed(tmp_path, sentences):
    lines = [" ".join(s) for s in sentences if s]
    path = tmp_path / "in.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    plain, bucketed = tmp_path / "plain.hdf5", tmp_path / "bucketed.hdf5"
    embedder.embed_file(path, plain, batch_size=4, bucket=False, segment_size=16, progress=False)
    batches = recording(embedder)
    embedder.embed_file(path, bucketed, batch_size=4, max_tokens=24, segment_size=16, progress=False)
    assert all(len(b) <= 4 and (len(b) == 1 or len(b) * max(b) <= 24) for b in batches)
    assert sum(map(len, batches)) == len(lines)
    cli = tmp_path / "cli.hdf5"
    args = ["embed", str(path), str(cli), *MODEL, "--state", "zero", "--batch-size", "4", "--max-tokens", "24", "--quiet"]
    assert main([*args, "--checkpoint-every", "16"]) == 0
    with h5py.File(plain) as fp, h5py.File(bucketed) as fb, h5py.File(cli) as fc:
        assert set(fp.keys()) == set(fb.keys()) == set(fc.keys())
        assert json.loads(fb["sentence_to_index"][0]) == json.loads(fp["sentence_to_index"][0])
        for key in set(fp.keys()) - {"sentence_to_index"}:
            assert_close(fb[key][...], fp[key][...], what=key)
            assert (fc[key][...] == fb[key][...]).all(), key


def test_cli_budget_needs_zero_or_warm(tmp_path, capsys):
    path = tmp_path / "in.txt"
    path.write_text("a b\n", encoding="utf-8")
    assert main(["embed", str(path), str(tmp_path / "o.hdf5"), *MODEL, "--max-tokens", "50", "--quiet"]) == 2
    assert "--max-tokens needs --state zero or warm" in capsys.readouterr().err
    assert main(["embed", str(path), str(tmp_path / "o.hdf5"), *MODEL, "--no-bucket", "--quiet"]) == 0


def test_resume_checks_the_batching(tmp_path):
    spec = JobSpec("in", 1, 1, "all", 4, 16, False, False, "zero", "strict", "m", bucket=True, max_tokens=24)
    parts = tmp_path / "o.parts"
    assert prepare(parts, spec, False, None) == 0
    with pytest.raises(ResumeError, match="bucket, max_tokens differ"):
        prepare(parts, JobSpec(*list(vars(spec).values())[:-2]), True, None)
    # a job.json written before these fields existed means in-order batches without a budget
    old = {k: v for k, v in vars(spec).items() if k not in ("bucket", "max_tokens")}
    (parts / "job.json").write_text(json.dumps(old))
    assert prepare(parts, JobSpec(**old), True, None) == 0
