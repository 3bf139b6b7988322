"""Every key of the AllenNLP recording that elmo_fast's public API can produce, at <= 1e-5 absolute."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, load_fixture

from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids
from elmo_fast.modules.elmo import load_bilm

BACKENDS = ["ref"]


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


def make_elmo(backend: str, **kwargs) -> Elmo:
    kwargs.setdefault("dropout", 0.0)
    return Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, kwargs.pop("n", 2), backend=backend, **kwargs).eval()


def rep(out, k=0):
    return out["elmo_representations"][k]


def test_char_ids(fixture):
    z, sentences, batch_b = fixture
    assert torch.equal(batch_to_ids(sentences), torch.from_numpy(z["char_ids"]))
    assert torch.equal(batch_to_ids(batch_b), torch.from_numpy(z["char_ids_batch_b"]))
    assert batch_to_ids(sentences).dtype == torch.int64


def test_lengths(fixture):
    """The recorded sentence lengths equal the token counts of batch_to_ids' mask (AllenNLP's rule:
    a token is present when any of its character ids is non-zero)."""
    z, sentences, _ = fixture
    lengths = (batch_to_ids(sentences) > 0).any(dim=-1).sum(dim=-1)
    assert torch.equal(lengths, torch.from_numpy(z["lengths"]))
    assert lengths.tolist() == [len(s) for s in sentences]
    elmo = make_elmo("ref")
    assert torch.equal(elmo(batch_to_ids(sentences))["mask"].sum(dim=-1), torch.from_numpy(z["lengths"]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bilm_fresh_and_carried(fixture, backend):
    z, sentences, _ = fixture
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend=backend)
    ids = batch_to_ids(sentences)
    out = bilm(ids)
    assert_close(torch.stack(out.activations), z["bilm_activations"], what="bilm_activations")
    assert torch.equal(out.mask, torch.from_numpy(z["bilm_mask"]))
    assert_close(out.token_embedding, z["token_embedding"], what="token_embedding")
    assert_close(out.final_h, z["bilm_final_h"], what="bilm_final_h")
    assert_close(out.final_c, z["bilm_final_c"], what="bilm_final_c")
    second = bilm(ids)
    assert_close(torch.stack(second.activations), z["bilm_activations_second_call_no_reset"], what="second call")
    bilm.reset_states()
    assert_close(torch.stack(bilm(ids).activations), z["bilm_activations"], what="after reset_states")


@pytest.mark.parametrize("backend", BACKENDS)
def test_bilm_single_sentences(fixture, backend):
    z, sentences, _ = fixture
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend=backend, state="zero")
    expected = z["bilm_activations_single_sentence_fresh"]
    for i, sentence in enumerate(sentences):
        out = torch.stack(bilm(batch_to_ids([sentence])).activations)[:, 0]
        width = out.shape[1]
        assert_close(out, expected[:, i, :width], what=f"sentence {i} alone")
        assert not expected[:, i, width:].any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_elmo_fresh_carried_and_batch_b(fixture, backend):
    z, sentences, batch_b = fixture
    elmo = make_elmo(backend)
    ids = batch_to_ids(sentences)
    out = elmo(ids)
    assert_close(rep(out, 0), z["elmo_rep0"], what="elmo_rep0")
    assert_close(rep(out, 1), z["elmo_rep1"], what="elmo_rep1")
    assert torch.equal(out["mask"], torch.from_numpy(z["elmo_mask"]))
    assert out["mask"].dtype == torch.bool
    assert_close(rep(elmo(ids)), z["elmo_rep0_second_call_no_reset"], what="second call")
    assert_close(rep(elmo(batch_to_ids(batch_b))), z["elmo_rep0_batch_b_after_two_calls_no_reset"], what="batch_b carried")
    elmo.reset_states()
    assert_close(rep(elmo(batch_to_ids(batch_b))), z["elmo_rep0_batch_b_fresh"], what="batch_b fresh")


@pytest.mark.parametrize("backend", BACKENDS)
def test_elmo_custom_mix_via_state_dict(fixture, backend):
    z, sentences, _ = fixture
    elmo = make_elmo(backend)
    s0, s1, s2, gamma = (float(v) for v in z["custom_mix_params"])
    state = elmo.state_dict()
    for key in ("scalar_mix_1.scalar_parameters.0", "scalar_mix_1.scalar_parameters.1", "scalar_mix_1.scalar_parameters.2", "scalar_mix_1.gamma"):
        assert key in state and state[key].shape == (1,)
    state.update(
        {
            "scalar_mix_1.scalar_parameters.0": torch.tensor([s0]),
            "scalar_mix_1.scalar_parameters.1": torch.tensor([s1]),
            "scalar_mix_1.scalar_parameters.2": torch.tensor([s2]),
            "scalar_mix_1.gamma": torch.tensor([gamma]),
        }
    )
    elmo.load_state_dict(state)
    out = elmo(batch_to_ids(sentences))
    assert_close(rep(out, 0), z["elmo_custom_mix_rep0"], what="custom mix rep0")
    assert_close(rep(out, 1), z["elmo_custom_mix_rep1"], what="custom mix rep1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_elmo_layer_norm_keep_boundaries_fixed_mix(fixture, backend):
    z, sentences, _ = fixture
    ids = batch_to_ids(sentences)
    assert_close(rep(make_elmo(backend, do_layer_norm=True)(ids)), z["elmo_layernorm_rep0"], what="layer norm")
    kept = make_elmo(backend, keep_sentence_boundaries=True)(ids)
    assert_close(rep(kept), z["elmo_keepbounds_rep0"], what="keep boundaries")
    assert torch.equal(kept["mask"], torch.from_numpy(z["elmo_keepbounds_mask"]))
    fixed = make_elmo(backend, scalar_mix_parameters=[-9e10, 1.0, -9e10])
    assert not any(p.requires_grad for p in fixed.scalar_mix_0.parameters())
    assert_close(rep(fixed(ids)), z["elmo_fixedmix_layer1_only_rep0"], what="fixed mix")


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedder_variants(fixture, backend):
    z, sentences, _ = fixture
    width = z["embedder_bs64"].shape[2]

    def padded(arrays):
        out = np.zeros((len(arrays), 3, width, arrays[0].shape[-1]), np.float32)
        for i, a in enumerate(arrays):
            assert a.dtype == np.float32 and a.shape[0] == 3
            out[i, :, : a.shape[1]] = a
        return out

    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend=backend)
    assert_close(padded(list(emb.embed_sentences(sentences, batch_size=64))), z["embedder_bs64"], what="bs64")
    assert_close(
        padded(list(emb.embed_sentences(sentences, batch_size=64))), z["embedder_bs64_second_call_no_reset"], what="bs64 again"
    )
    emb.reset_states()
    assert_close(padded(list(emb.embed_sentences(sentences, batch_size=4))), z["embedder_bs4"], what="bs4")
    emb.reset_states()
    assert_close(padded([emb.embed_sentence(s) for s in sentences]), z["embedder_embed_sentence_sequential_no_reset"], what="sequential")
    each = []
    for s in sentences:
        emb.reset_states()
        each.append(emb.embed_sentence(s))
    assert_close(padded(each), z["embedder_embed_sentence_each_fresh"], what="each fresh")
    emb.reset_states()
    activations, mask = emb.batch_to_embeddings(sentences)
    assert_close(activations, z["embedder_batch_to_embeddings"], what="batch_to_embeddings")
    assert torch.equal(mask, torch.from_numpy(z["embedder_batch_to_embeddings_mask"]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_embedder_empty_sentences(fixture, backend):
    z, _, _ = fixture
    emb = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend=backend)
    first, empty, last = emb.embed_batch([["Hello", "world"], [], ["x"]])
    assert_close(first, z["embedder_batch_with_empty_0"], what="batch with empty, 0")
    assert_close(last, z["embedder_batch_with_empty_2"], what="batch with empty, 2")
    assert empty.shape[:2] == tuple(z["embedder_batch_with_empty_1_shape"][:2]) == (3, 0)
    assert empty.shape[2] == emb.elmo_bilm.get_output_dim() == 32
    # [[]] does not run the model, so it leaves the carried state alone.
    emb.reset_states()
    (only,) = emb.embed_batch([[]])
    assert only.shape[:2] == tuple(z["embedder_only_empty_shape"][:2]) and only.shape[2] == 32
    assert emb.elmo_bilm._states is None
