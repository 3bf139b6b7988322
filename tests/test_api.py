"""Public API behaviour beyond the fixture: shapes, extra dims, vocab cache, gradients, errors."""
from __future__ import annotations

import warnings

import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

import elmo_fast
from elmo_fast import BackendUnavailable, Elmo, ElmoEmbedder, batch_to_ids


def make(**kwargs) -> Elmo:
    return Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, kwargs.pop("n", 1), dropout=kwargs.pop("dropout", 0.0), state="zero", **kwargs).eval()


def test_extra_leading_dims_are_restored():
    elmo = make()
    sentences = random_sentences(6, seed=11)
    ids = batch_to_ids(sentences)
    flat = elmo(ids)
    nested = elmo(ids.view(2, 3, *ids.shape[1:]))
    assert nested["mask"].shape == (2, 3, ids.shape[1])
    assert nested["elmo_representations"][0].shape == (2, 3, ids.shape[1], 32)
    assert_close(nested["elmo_representations"][0].reshape(6, ids.shape[1], 32), flat["elmo_representations"][0])


def test_padding_is_exactly_zero_even_with_layer_norm():
    elmo = make(do_layer_norm=True)
    ids = batch_to_ids([["a", "b", "c", "d"], ["e"], []])
    out = elmo(ids)
    rep = out["elmo_representations"][0]
    assert not rep[1, 1:].any() and not rep[2].any()
    assert out["mask"].tolist() == [[True] * 4, [True, False, False, False], [False] * 4]


def test_token_layer_norm_is_batch_independent():
    elmo = make(do_layer_norm="token")
    sentences = random_sentences(5, seed=12)
    together = elmo(batch_to_ids(sentences))["elmo_representations"][0]
    for i, s in enumerate(sentences):
        alone = elmo(batch_to_ids([s]))["elmo_representations"][0][0]
        assert_close(together[i, : len(s)], alone[: len(s)], what=f"sentence {i}")


def test_vocab_to_cache_gives_same_numbers():
    vocab = ["@@PADDING@@", "the", "cat", "sat", "naïve", "東京"]
    cached = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, dropout=0.0, vocab_to_cache=vocab, state="zero").eval()
    plain = make()
    sentences = [["the", "cat", "sat"], ["naïve", "東京"], ["cat"]]
    word_ids = torch.tensor([[vocab.index(w) for w in s] + [0] * (3 - len(s)) for s in sentences])
    ids = batch_to_ids(sentences)
    assert_close(cached(ids, word_ids)["elmo_representations"][0], plain(ids)["elmo_representations"][0], what="vocab cache")


def test_scalar_mix_trains_and_biLM_is_frozen():
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 2, dropout=0.5)
    assert elmo.training
    out = elmo(batch_to_ids(random_sentences(3, seed=13)))
    (out["elmo_representations"][0].sum() + out["elmo_representations"][1].sum()).backward()
    assert elmo.scalar_mix_0.gamma.grad is not None and elmo.scalar_mix_1.scalar_parameters[2].grad is not None
    assert all(p.grad is None and not p.requires_grad for p in elmo._elmo_lstm.parameters())


def test_requires_grad_reaches_biLM_weights():
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, requires_grad=True, dropout=0.0, state="zero")
    elmo(batch_to_ids([["grad", "check"]]))["elmo_representations"][0].sum().backward()
    assert elmo._elmo_lstm.lstm_1_w_hh.grad is not None and elmo._elmo_lstm.conv_weight_0.grad.abs().sum() > 0


def test_elmo_input_errors():
    elmo = make()
    with pytest.raises(TypeError, match="torch.Tensor"):
        elmo([["a"]])
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 50\)"):
        elmo(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer character ids"):
        elmo(torch.zeros(1, 2, 50))


def test_constructor_errors():
    with pytest.raises(ValueError, match="state must be one of"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, state="warmish")
    with pytest.raises(ValueError, match="unknown backend"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, backend="fortran")
    with pytest.raises(ValueError, match="num_output_representations"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 0)
    with pytest.raises(ValueError, match="both options_file and weight_file"):
        Elmo(FIXTURE_OPTIONS, None, 1)
    with pytest.raises(ValueError, match="3 layers"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, scalar_mix_parameters=[1.0, 2.0])


def test_unusable_backend_fails_loudly(monkeypatch):
    monkeypatch.setattr(elmo_fast._backends, "probe", lambda b: (b == "ref", "hidden by the test"))
    with pytest.raises(BackendUnavailable, match="hidden by the test"):
        Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 1, backend="cpp")
    monkeypatch.setenv("ELMO_FAST_BACKEND", "cpp")
    with pytest.raises(BackendUnavailable, match="cpp"):
        ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)


def test_default_model_embeds_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb = ElmoEmbedder(state="zero")
    vectors = emb.embed_sentence(["hello", "world"])
    assert vectors.shape == (3, 2, 128)


def test_env_report_names_every_backend():
    report = elmo_fast.env_report()
    for name in ("cuda", "triton", "cpp", "ref", "auto on cpu"):
        assert name in report
