"""Property-based tests over random unicode tokens and sentence shapes (hypothesis).

Default profile: a few dozen cases per property. `ELMO_FAST_HYPOTHESIS=thorough` runs 2,500 per
property (four properties: over 10,000 cases).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close

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
