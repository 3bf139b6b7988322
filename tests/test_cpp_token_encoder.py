"""The compiled CPU token encoder ops (backend ``cpp``) against the reference, on odd shapes."""
from __future__ import annotations

import pytest
import torch

import elmo_fast._C  # noqa: F401  (registers torch.ops.elmo_fast; the cpp backend is always built)
from elmo_fast import batch_to_ids
from elmo_fast.reference import char_cnn_ref, highway_ref, token_encoder_ref
from elmo_fast.reference.char_ids import BOS_IDS, EOS_IDS
from elmo_fast.weights import ElmoOptions, random_weights
from utils import assert_close, random_sentences

import elmo_fast.ops.token_encoder as token_encoder_mod
ops = torch.ops.elmo_fast

# Filters wider than most words, up to the full 50 slots; counts off the 16-column panels.
FILTERS = [(1, 4), (2, 9), (3, 16), (7, 5), (12, 3), (50, 2)]


def _cnn_weights(dim: int = 4, filters=FILTERS, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(262, dim, generator=g)
    embed[0] = 0.0
    weights = [torch.randn(n, dim, w, generator=g) / (dim * w) ** 0.5 for w, n in filters]
    biases = [torch.randn(n, generator=g) * 0.1 for _, n in filters]
    return embed, weights, biases


def _char_ids() -> torch.Tensor:
    """Edge-case token rows: words of every length, padding tokens, boundaries, no trailing run."""
    words = ["a", "of", "Hello", "é東🙂", "x" * 47, "y" * 48, "z" * 60, "", "<S>", "</S>"]
    ids = batch_to_ids([words, random_sentences(1, seed=3, max_len=30)[0] or ["w"]]).reshape(-1, 50)
    g = torch.Generator().manual_seed(1)
    noisy = torch.randint(1, 262, (3, 50), generator=g)
    noisy[1, 49] = 7
    return torch.cat((ids, torch.zeros(2, 50, dtype=torch.int64), noisy, torch.tensor([BOS_IDS, EOS_IDS])))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_char_cnn_matches_reference(activation):
    embed, weights, biases = _cnn_weights()
    ids = _char_ids()
    assert_close(ops.char_cnn(ids, embed, weights, biases, activation), char_cnn_ref(ids, embed, weights, biases, activation))


def test_char_cnn_one_row_and_non_contiguous():
    embed, weights, biases = _cnn_weights(dim=3, filters=[(2, 5), (4, 17)], seed=2)
    ids = _char_ids()
    wide = torch.stack((ids, ids), dim=-1)[..., 1]
    weights_t = [w.transpose(0, 2).contiguous().transpose(0, 2) for w in weights]
    assert not wide.is_contiguous() and not weights_t[0].is_contiguous()
    expected = char_cnn_ref(ids, embed, weights, biases)
    assert_close(ops.char_cnn(wide, embed, weights_t, biases, "relu"), expected)
    assert_close(ops.char_cnn(ids[4:5], embed, weights, biases, "relu"), expected[4:5])


def test_char_cnn_rejects_bad_ids():
    embed, weights, biases = _cnn_weights()
    with pytest.raises(RuntimeError, match="character ids"):
        ops.char_cnn(torch.full((2, 50), 262), embed, weights, biases, "relu")
    with pytest.raises(RuntimeError, match="activation"):
        ops.char_cnn(_char_ids(), embed, weights, biases, "gelu")


@pytest.mark.parametrize("rows,width", [(1, 20), (7, 16), (300, 20), (5, 150)])
def test_highway_matches_reference(rows, width):
    g = torch.Generator().manual_seed(rows + width)
    x = torch.randn(rows, width, generator=g)
    wt, wc = (torch.randn(width, width, generator=g) / width**0.5 for _ in range(2))
    bt, bc = (torch.randn(width, generator=g) for _ in range(2))
    expected = highway_ref(x, wt, bt, wc, bc)
    assert_close(ops.highway(x, wt, bt, wc, bc), expected)
    packed = ops.pack_panels(wt), ops.pack_panels(wc)
    assert torch.equal(ops.highway(x, wt, bt, wc, bc, *packed), ops.highway(x, wt, bt, wc, bc))
    assert_close(ops.highway(x.t().contiguous().t(), wt.t().contiguous().t(), bt, wc, bc), expected)


@pytest.mark.parametrize("rows,k,m", [(1, 5, 3), (200, 33, 17), (9, 64, 128)])
def test_dense_matches_matmul(rows, k, m):
    g = torch.Generator().manual_seed(k)
    x, w, b = torch.randn(rows, k, generator=g), torch.randn(k, m, generator=g), torch.randn(m, generator=g)
    assert_close(ops.dense(x, w, b), x @ w + b)
    assert_close(ops.dense(x, w, b, ops.pack_panels(w)), x @ w + b)


def test_results_do_not_depend_on_other_rows():
    """What makes the word-type dedup and the token cache exact: every row alone = in a batch, bit for bit."""
    options = ElmoOptions(projection_dim=16, cell_dim=32, filters=((1, 4), (2, 8), (3, 16), (9, 5)), n_highway=2, char_embed_dim=4)
    cnn = random_weights(options, seed=5).char_cnn
    ids = _char_ids()
    with torch.no_grad():
        full = token_encoder_mod.token_encoder_cpp(ids, cnn)
        for i in range(len(ids)):
            assert torch.equal(token_encoder_mod.token_encoder_cpp(ids[i : i + 1], cnn)[0], full[i]), f"row {i}"


def test_token_encoder_chunks_join_seamlessly(monkeypatch):
    options = ElmoOptions(projection_dim=8, cell_dim=16, filters=((1, 4), (2, 8)), n_highway=1, char_embed_dim=4)
    cnn = random_weights(options, seed=7).char_cnn
    ids = _char_ids()
    with torch.no_grad():
        whole = token_encoder_mod.token_encoder_cpp(ids, cnn)
        monkeypatch.setattr(token_encoder_mod, "CPP_CHUNK_ROWS", 3)
        assert torch.equal(token_encoder_mod.token_encoder_cpp(ids, cnn), whole)
        assert token_encoder_mod.token_encoder_cpp(ids[:0], cnn).shape == (0, 8)


def test_token_encoder_dedups_and_matches_reference():
    options = ElmoOptions(projection_dim=24, cell_dim=32, filters=((1, 4), (2, 8), (3, 20), (6, 7)), n_highway=2, char_embed_dim=5, activation="tanh")
    cnn = random_weights(options, seed=6).char_cnn
    sentences = random_sentences(6, seed=9)
    ids = batch_to_ids(sentences + sentences[:3])
    with torch.no_grad():
        got = token_encoder_mod.token_encoder_cpp(ids, cnn, "tanh")
        assert_close(got, token_encoder_ref(ids, cnn, "tanh"))
        assert torch.equal(got[6:], got[:3])


def test_opcheck():
    embed, weights, biases = _cnn_weights(filters=[(1, 3), (3, 18)])
    ids = _char_ids()[:6]
    torch.library.opcheck(ops.char_cnn.default, (ids, embed, weights, biases, "relu"))
    g = torch.Generator().manual_seed(0)
    x, wt, wc = torch.randn(5, 20, generator=g), torch.randn(20, 20, generator=g), torch.randn(20, 20, generator=g)
    bt, bc = torch.randn(20, generator=g), torch.randn(20, generator=g)
    torch.library.opcheck(ops.highway.default, (x, wt, bt, wc, bc))
    torch.library.opcheck(ops.highway.default, (x, wt, bt, wc, bc, ops.pack_panels(wt), ops.pack_panels(wc)))
    torch.library.opcheck(ops.dense.default, (x, wt[:, :7], bt[:7]))


def test_char_cnn_with_filters_packed_once():
    """``filters_packed`` (made once per weights by ``char_cnn_filters``, as the cpp backend passes it)
    gives the same bits as packing inside the op; a wrong shape is refused."""
    embed, weights, biases = _cnn_weights()
    ids = _char_ids()
    packed = token_encoder_mod.char_cnn_filters(*weights)
    inside = ops.char_cnn(ids, embed, weights, biases, "relu")
    assert torch.equal(ops.char_cnn(ids, embed, weights, biases, "relu", packed), inside)
    torch.library.opcheck(ops.char_cnn.default, (ids, embed, weights, biases, "relu", packed))
    with pytest.raises(RuntimeError, match="filters_packed"):
        ops.char_cnn(ids, embed, weights, biases, "relu", packed[:, :-1].contiguous())
    with pytest.raises(RuntimeError, match="filters_packed"):
        ops.char_cnn(ids, embed, weights[:-1], biases[:-1], "relu", packed)
