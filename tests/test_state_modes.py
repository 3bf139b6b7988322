"""state="zero" makes a sentence's vectors independent of its batch; state="carry" follows AllenNLP."""
from __future__ import annotations

import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids
from elmo_fast.modules.elmo import load_bilm


@pytest.mark.parametrize("backend", ["ref"])
def test_zero_state_sentence_alone_equals_inside_any_batch(backend):
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend=backend)
    sentences = random_sentences(12, seed=5)
    alone = [emb.embed_sentence(s) for s in sentences]
    for batch_size in (3, 5, 12):
        together = list(emb.embed_sentences(list(reversed(sentences)), batch_size=batch_size))[::-1]
        for i, (a, t) in enumerate(zip(alone, together)):
            assert_close(t, a, what=f"sentence {i}, batch size {batch_size}")


def test_zero_state_elmo_repeats_exactly_and_ignores_history():
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, state="zero").eval()
    ids = batch_to_ids(random_sentences(6, seed=1))
    first = elmo(ids)["elmo_representations"][0]
    elmo(batch_to_ids(random_sentences(9, seed=2)))
    assert torch.equal(elmo(ids)["elmo_representations"][0], first)


def test_carry_moves_outputs_and_per_call_override():
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    ids = batch_to_ids(random_sentences(4, seed=3))
    first = bilm(ids).activations[2]
    second = bilm(ids).activations[2]
    assert (first - second).abs().max() > 1e-3
    stored = bilm._states
    zero = bilm(ids, state="zero").activations[2]
    assert torch.equal(zero, first)
    assert bilm._states is stored


def test_carry_larger_then_smaller_batch_keeps_extra_rows():
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    small = batch_to_ids(random_sentences(2, seed=4))
    large = batch_to_ids(random_sentences(5, seed=6))
    bilm(small)
    h_small = bilm._states[0].clone()
    bilm(large)
    assert bilm._states[0].shape[1] == 5
    h_large = bilm._states[0].clone()
    bilm(small)
    h_after = bilm._states[0]
    assert h_after.shape[1] == 5
    assert torch.equal(h_after[:, 2:], h_large[:, 2:])
    assert not torch.equal(h_after[:, :2], h_small)


def test_warm_state_is_fixed_batch_independent_and_not_zero():
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="warm")
    zero = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    sentences = random_sentences(6, seed=15)
    alone = [emb.embed_sentence(s) for s in sentences]
    together = emb.embed_batch(sentences[::-1])[::-1]
    for i, (a, t) in enumerate(zip(alone, together)):
        assert_close(t, a, what=f"warm sentence {i}")
    assert emb.elmo_bilm._states is None
    differs = [abs(a - zero.embed_sentence(s)).max() for a, s in zip(alone, sentences) if s]
    assert min(differs) > 1e-4


def test_warm_state_equals_carry_after_reading_the_warmup_text():
    from elmo_fast.modules.bilm import WARMUP_TEXT

    carry = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    for sentence in WARMUP_TEXT:
        carry(batch_to_ids([sentence.split()]))
    ids = batch_to_ids([["after", "warm", "up"]])
    warm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="warm")
    assert_close(torch.stack(warm(ids).activations), torch.stack(carry(ids).activations), what="warm vs carry")


def test_warm_state_follows_weight_updates():
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="warm", requires_grad=True)
    before = bilm.warm_state()[0].clone()
    with torch.no_grad():
        bilm.lstm_0_bias.add_(0.5)
    assert (bilm.warm_state()[0] - before).abs().max() > 1e-3
