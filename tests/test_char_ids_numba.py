"""The numba char-ids kernel against the reference ``batch_to_ids_ref``: identical tensors, same errors.

Skipped where numba is not installed (``pip install 'elmo_fast[numba]'``); the fallback without it
is tested in test_char_ids.py.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from utils import load_fixture, random_sentences

pytest.importorskip("numba")

from elmo_fast import batch_to_ids, env_report  # noqa: E402
from elmo_fast.ops.char_ids import batch_to_ids_numba, encode_batch, probe_numba  # noqa: E402
from elmo_fast.reference.char_ids import batch_to_ids_ref  # noqa: E402

EDGE_TOKENS = ["<S>", "</S>", "", " ", "<S\ud800>", "<S", "S>", "\ud800", "a\udfffb", "a" * 47 + "é", "é" * 30, "x" * 200]


def assert_identical(batch) -> None:
    expected = batch_to_ids_ref(batch)
    actual = batch_to_ids_numba(batch)
    assert actual.dtype == expected.dtype == torch.int64
    assert actual.shape == expected.shape and actual.is_contiguous()
    assert torch.equal(actual, expected)


def test_numba_is_what_batch_to_ids_runs():
    ok, why = probe_numba()
    assert ok, why
    assert "char ids: numba kernel" in env_report()
    sentences = random_sentences(7, seed=3)
    assert torch.equal(batch_to_ids(sentences), batch_to_ids_ref(sentences))


def test_fixture_sentences():
    _, sentences, batch_b = load_fixture()
    assert_identical(sentences)
    assert_identical(batch_b)
    assert_identical(random_sentences(64, seed=11, max_len=30))


@pytest.mark.parametrize(
    "batch",
    [[], [[]], [[], []], [[], ["a"], []], [["a"], [], ["b", "c"]], [EDGE_TOKENS], [[t] for t in EDGE_TOKENS]],
    ids=["empty-batch", "one-empty", "two-empty", "empty-around", "mixed", "edge-row", "edge-column"],
)
def test_empty_and_edge_batches(batch):
    assert_identical(batch)


def test_encoding_buffer():
    p_bytes, o_tokens, lengths = encode_batch([["<S>", "ab"], [], ["é", "</S>", ""]])
    assert p_bytes.tobytes() == b"\xffab\xc3\xa9\xfe" and p_bytes.dtype.itemsize == 1
    assert o_tokens.tolist() == [0, 1, 3, 5, 6, 6] and lengths.tolist() == [2, 0, 3]


_chars = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("<>/S"))
_tokens = st.one_of(
    st.text(_chars, max_size=12),
    st.text(_chars, min_size=40, max_size=70),
    st.sampled_from(EDGE_TOKENS),
)


@given(st.lists(st.lists(_tokens, max_size=8), max_size=6))
def test_random_unicode_batches(batch):
    assert_identical(batch)


@pytest.mark.parametrize(
    "bad",
    [None, 5, [["ok"], None], [["ok"], 7], [["ok", None]], [["ok", 3]], [["ok", b"bytes"]], "abc", ["tok", "ens"]],
)
def test_same_errors_as_the_reference(bad):
    try:
        batch_to_ids_ref(bad)
    except Exception as exc:  # the reference's own error, whatever it is
        with pytest.raises(type(exc)) as info:
            batch_to_ids_numba(bad)
        assert str(info.value) == str(exc)
    else:
        assert_identical(bad)
