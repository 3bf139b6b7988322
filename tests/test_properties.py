"""Property-based tests over random unicode tokens, sentence shapes and invalid input (hypothesis).

Default profile: a few dozen cases per property. `ELMO_FAST_HYPOTHESIS=thorough` runs 2,500 per
property (eight properties: 20,000 cases).
"""
from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close

import elmo_fast
from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids
from elmo_fast.reference.char_ids import token_to_ids

tokens = st.one_of(
    st.text(max_size=8),
    st.text(min_size=40, max_size=80),
    st.sampled_from(["<S>", "</S>", "", "a\ud800b", "\U0001f389" * 13, "é" * 30]),
)
sentences = st.lists(tokens, max_size=7)
batches = st.lists(sentences, min_size=1, max_size=4)

ELMO = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, state="zero").eval()
EMBEDDER = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="carry")
EMBEDDER_ZERO = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
PACKAGE = Path(elmo_fast.__file__).parent

# Anything a caller might pass: valid batches, and wrong types, None, bytes, dicts, one sentence
# instead of a batch, nesting too deep or too shallow, empty containers.
scalars = st.one_of(st.none(), st.integers(), st.floats(), st.booleans(), st.binary(max_size=4))
garbage = st.recursive(
    st.one_of(tokens, scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.tuples(inner, inner), st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=12,
)
inputs = st.one_of(garbage, batches, st.lists(st.lists(st.lists(tokens, max_size=2), max_size=2), max_size=2))


@st.composite
def id_tensors(draw) -> torch.Tensor:
    """Character-id tensors of random shape and dtype, values mostly in range, some not."""
    lead = draw(st.one_of(st.lists(st.integers(1, 3), min_size=2, max_size=3), st.lists(st.integers(0, 3), max_size=3)))
    shape = lead + [draw(st.sampled_from([50, 50, 50, 49, 1]))]
    low, high = draw(st.sampled_from([(0, 262), (0, 262), (1, 262), (-3, 262), (0, 300)]))
    dtype = draw(st.sampled_from([torch.int64, torch.int64, torch.int32, torch.int16, torch.float32, torch.bool]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    return torch.randint(low, high, shape, generator=generator).to(dtype)


def assert_refused_clearly(exc: Exception) -> None:
    """A TypeError/ValueError with a message, raised by elmo_fast's own checks (not deep in torch)."""
    assert isinstance(exc, (TypeError, ValueError)) and str(exc), repr(exc)
    origin = traceback.extract_tb(exc.__traceback__)[-1].filename
    assert Path(origin).is_relative_to(PACKAGE), f"{exc!r} raised in {origin}"


def is_batch(value) -> bool:
    """Whether ``value`` is a valid batch: a sequence of sequences of str, neither str itself."""
    def seq(x) -> bool:
        return isinstance(x, (list, tuple))

    return seq(value) and all(seq(s) and all(isinstance(t, str) for t in s) for s in value)


@given(st.lists(sentences, max_size=5))
def test_batch_to_ids_layout(batch):
    ids = batch_to_ids(batch)
    width = max((len(s) for s in batch), default=0)
    assert ids.shape == (len(batch), width, 50) and ids.dtype == torch.int64
    if ids.numel():
        assert int(ids.min()) >= 0 and int(ids.max()) <= 261
    for i, sentence in enumerate(batch):
        for j, token in enumerate(sentence):
            row = ids[i, j].tolist()
            assert row == token_to_ids(token) and row[0] == 259 and 260 in row
        assert not ids[i, len(sentence) :].any()


@given(st.one_of(st.none(), st.integers(), st.text(min_size=1), st.lists(st.integers(), min_size=1), st.lists(st.lists(st.none(), min_size=1), min_size=1)))
def test_batch_to_ids_rejects_garbage_with_a_message(bad):
    with pytest.raises(TypeError, match="must be|list of sentences"):
        batch_to_ids(bad)


@given(batches)
def test_elmo_zero_state_shapes_padding_and_batch_independence(batch):
    out = ELMO(batch_to_ids(batch))
    rep, mask = out["elmo_representations"][0], out["mask"]
    width = max(len(s) for s in batch)
    assert rep.shape == (len(batch), width, 32) and mask.shape == (len(batch), width)
    assert not torch.isnan(rep).any()
    for i, sentence in enumerate(batch):
        assert mask[i].tolist() == [True] * len(sentence) + [False] * (width - len(sentence))
        assert not rep[i, len(sentence) :].any()
        if sentence:
            alone = ELMO(batch_to_ids([sentence]))["elmo_representations"][0][0]
            assert_close(rep[i, : len(sentence)], alone, what="alone vs in batch")


@given(batches)
def test_embedder_carry_shapes(batch):
    arrays = EMBEDDER.embed_batch(batch)
    assert len(arrays) == len(batch)
    for array, sentence in zip(arrays, batch):
        assert array.dtype == np.float32 and array.shape == (3, len(sentence), 32)
        assert np.isfinite(array).all()


EXAMPLES = (None, [], [[]], ["one", "sentence"], [["a", None]], [[["too", "deep"]]], [["a"], "b c"], {"a": ["b"]}, [[b"bytes"]])


def with_examples(test):
    """``test`` also runs on :data:`EXAMPLES`, the cases every run must see."""
    for value in reversed(EXAMPLES):
        test = example(value)(test)
    return test


@given(inputs)
@with_examples
def test_elmo_embeds_or_clearly_refuses_any_input(value):
    try:
        out = ELMO(batch_to_ids(value))
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions escape
        assert not is_batch(value), f"valid batch refused: {exc!r}"
        assert_refused_clearly(exc)
        return
    assert is_batch(value)
    width = max((len(s) for s in value), default=0)
    assert out["elmo_representations"][0].shape == (len(value), width, 32) and out["mask"].shape == (len(value), width)


@given(id_tensors())
@example(torch.full((1, 2, 50), 262))
@example(torch.full((2, 1, 50), -1))
@example(torch.ones(1, 2, 50))
@example(torch.ones(1, 2, 50, dtype=torch.bool))
@example(torch.ones(2, 50, dtype=torch.long))
@example(torch.ones(2, 0, 50, dtype=torch.long))
def test_elmo_embeds_or_clearly_refuses_any_id_tensor(ids):
    valid = ids.dim() >= 3 and ids.shape[-1] == 50 and ids.dtype not in (torch.float32, torch.bool)
    valid = valid and (ids.numel() == 0 or (int(ids.min()) >= 0 and int(ids.max()) < 262))
    try:
        out = ELMO(ids)
    except Exception as exc:  # noqa: BLE001
        assert not valid, f"valid ids refused: {exc!r}"
        assert_refused_clearly(exc)
        return
    assert valid
    rep = out["elmo_representations"][0]
    assert rep.shape == (*ids.shape[:-1], 32) and out["mask"].shape == ids.shape[:-1] and not torch.isnan(rep).any()


@given(inputs)
@with_examples
def test_embedder_embeds_or_clearly_refuses_any_input(value):
    for call, batch in ((EMBEDDER_ZERO.embed_batch, value), (EMBEDDER_ZERO.embed_sentence, [value])):
        try:
            result = call(value)
        except Exception as exc:  # noqa: BLE001
            assert not is_batch(batch), f"valid input refused by {call.__name__}: {exc!r}"
            assert_refused_clearly(exc)
            continue
        assert is_batch(batch)
        arrays = result if call == EMBEDDER_ZERO.embed_batch else [result]
        assert [a.shape for a in arrays] == [(3, len(s), 32) for s in batch]


@given(batches)
def test_embedder_zero_state_is_batch_independent(batch):
    together = EMBEDDER_ZERO.embed_batch(batch)
    assert [a.shape for a in together] == [(3, len(s), 32) for s in batch]
    for i, sentence in enumerate(batch):
        assert_close(together[i], EMBEDDER_ZERO.embed_sentence(sentence), what=f"sentence {i} alone vs in batch")
