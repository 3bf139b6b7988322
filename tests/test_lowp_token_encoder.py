"""The token encoder's highway and projection products in bf16 and int8 (``weight_precision``).

The ``cpp`` ops ``highway`` and ``dense`` take the reduced-precision layouts of
``csrc/cpu/lowp_gemm.h``; their twin is :func:`elmo_fast.reference.highway_ref` /
:func:`~elmo_fast.reference.token_encoder_ref` with ``product=`` from
:mod:`elmo_fast.reference.lowp`. Which kernels run (AVX512-BF16 / AVX512-VNNI or portable) depends on
the CPU; both must follow the twin (test_lowp_products.py checks they give the same bits).
"""
from __future__ import annotations

import pytest
import torch

import elmo_fast._C  # noqa: F401  (registers torch.ops.elmo_fast)
from elmo_fast import ElmoEmbedder, batch_to_ids
from elmo_fast.ops import cpp, registry
from elmo_fast.ops.token_encoder import dequantized_weights, token_encoder
from elmo_fast.reference import highway_ref, token_encoder_ref
from elmo_fast.reference.lowp import PRODUCTS_ENV, product_fn, projection_precision
from elmo_fast.reference.quantize import dequantize
from elmo_fast.weights import ElmoOptions, random_weights
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, assert_follows_twin, random_sentences

PRECISIONS = ["bf16", "int8"]


def test_projection_precision(monkeypatch):
    """int8 models keep their projections in bf16; ELMO_FAST_PRODUCTS=uniform keeps them int8."""
    assert [projection_precision(p) for p in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "bf16"]
    monkeypatch.setenv(PRODUCTS_ENV, "fp32")  # float32 products on the same stored weights
    assert projection_precision("int8") == "bf16"
    monkeypatch.setenv(PRODUCTS_ENV, "uniform")
    assert [projection_precision(p) for p in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]
    monkeypatch.setenv(PRODUCTS_ENV, "fast")
    with pytest.raises(ValueError, match="ELMO_FAST_PRODUCTS must be one of native, fp32, uniform"):
        projection_precision("int8")
    monkeypatch.delenv(PRODUCTS_ENV)
    with pytest.raises(ValueError):
        projection_precision("int4")


# Wider than one 128-column block and not a multiple of 16; three highway layers.
OPTIONS = ElmoOptions(projection_dim=40, cell_dim=64, filters=((1, 30), (2, 70), (3, 100), (5, 37)), n_highway=3, char_embed_dim=8)


def _ids(n_sentences: int = 12, seed: int = 5) -> torch.Tensor:
    return batch_to_ids(random_sentences(n_sentences, seed=seed, max_len=25)).reshape(-1, 50)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("rows,width", [(1, 16), (7, 237), (300, 150)])
def test_highway_op_matches_twin(precision, rows, width):
    """One layer: both products read the same converted rows; elementwise against the twin."""
    g = torch.Generator().manual_seed(rows + width)
    x = torch.relu(torch.randn(rows, width, generator=g))
    if rows > 2:
        x[1] = 0.0  # a row of zeros (int8: q = 0, scale 1)
    wt, wc = (torch.randn(width, width, generator=g) * width**-0.5 for _ in range(2))
    bt, bc = torch.randn(width, generator=g) * 0.1, torch.randn(width, generator=g) * 0.1
    (pt, st), (pc, sc) = (cpp.pack_lowp(w, precision, precision) for w in (wt, wc))
    got = torch.ops.elmo_fast.highway(x, wt, bt, wc, bc, pt, pc, st, sc)
    assert_close(got, highway_ref(x, wt, bt, wc, bc, product_fn(precision)), what=f"{precision} highway {rows}x{width}")
    assert not torch.allclose(got, highway_ref(x, wt, bt, wc, bc), rtol=0, atol=1e-6), "the products were not rounded"


def test_highway_op_checks_layouts():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(3, 32, generator=g), torch.randn(32, 32, generator=g), torch.zeros(32)
    (p8, s8), (p16, _) = cpp.pack_lowp(w, "int8", "int8"), cpp.pack_lowp(w, "bf16", "bf16")
    with pytest.raises(RuntimeError, match="same layout"):
        torch.ops.elmo_fast.highway(x, w, b, w, b, p8, p16, s8, None)
    with pytest.raises(RuntimeError, match="per-column scales"):
        torch.ops.elmo_fast.highway(x, w, b, w, b, p8, p8, None, None)
    torch.library.opcheck(torch.ops.elmo_fast.highway.default, (x, w, b, w, b, p8, p8, s8, s8))


@pytest.mark.parametrize("mode", ["native", "uniform"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_token_encoder_cpp_follows_twin(precision, mode, monkeypatch):
    """char-CNN (fp32), three highway layers in ``precision`` and the projection in bf16 for both
    (int8 too, unless ELMO_FAST_PRODUCTS=uniform): the ``cpp`` backend against the reference
    backend, which computes the same products in PyTorch."""
    monkeypatch.setenv(PRODUCTS_ENV, mode)
    weights = random_weights(OPTIONS, seed=3).char_cnn
    ids = _ids()
    with torch.no_grad():
        got = token_encoder(ids, weights, backend="cpp", weight_precision=precision)
        twin = token_encoder(ids, weights, backend="ref", weight_precision=precision)
        fp32 = token_encoder_ref(ids, weights)
    assert_follows_twin(got, twin, fp32, what=f"{precision} token encoder ({mode})")
    projection = precision if mode == "uniform" else "bf16"
    assert_close(twin, token_encoder_ref(ids, weights, product=product_fn(precision), projection_product=product_fn(projection)))
    if precision == "int8":  # the projection's precision shows: all-int8 products are further away
        all_int8 = token_encoder_ref(ids, weights, product=product_fn("int8"))
        assert (mode == "uniform") == torch.allclose(got, all_int8, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_token_encoder_rows_are_exact(precision):
    """Activations are rounded or quantised per row, so a token's embedding does not depend on the
    other tokens of the call (what makes the token cache exact): bit for bit."""
    weights = random_weights(OPTIONS, seed=4).char_cnn
    ids = _ids(6, seed=9)
    with torch.no_grad():
        together = token_encoder(ids, weights, backend="cpp", weight_precision=precision)
        alone = torch.cat([token_encoder(ids[i : i + 1], weights, backend="cpp", weight_precision=precision) for i in range(0, len(ids), 7)])
    assert torch.equal(together[::7], alone)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fp32_products_mode_and_other_backends_use_the_rounded_weights(precision, monkeypatch):
    """``ELMO_FAST_PRODUCTS=fp32``: the stored weights multiplied in float32, as backends without
    native reduced precision get them (the registry dequantises)."""
    weights = random_weights(OPTIONS, seed=6).char_cnn
    ids = _ids(4, seed=2)
    rounded = token_encoder_ref(ids, dequantized_weights(weights, precision))
    monkeypatch.setenv(PRODUCTS_ENV, "fp32")
    with torch.no_grad():
        assert_close(token_encoder(ids, weights, backend="cpp", weight_precision=precision), rounded)
        assert_close(token_encoder(ids, weights, backend="ref", weight_precision=precision), rounded)
    monkeypatch.delenv(PRODUCTS_ENV)
    seen = []
    with registry.temporarily_registered("token_encoder", "probe", lambda *args: seen.append(args) or token_encoder_ref(*args[:3])):
        token_encoder(ids, weights, backend="probe", weight_precision=precision)
    (_, given, _, given_precision), = seen
    assert given_precision == "fp32" and torch.equal(given.proj_weight, dequantized_weights(weights, precision).proj_weight)
    assert torch.equal(given.proj_weight, dequantize(weights.proj_weight, "bf16"))  # int8 models: a bf16 projection
    assert not torch.equal(given.highway[0].w_carry, weights.highway[0].w_carry)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_whole_model_token_layer_and_cache(precision):
    """Through ElmoEmbedder: layer 0 (the token layer) is the reduced-precision encoder's output, and
    the token cache (on by default for cpp) gives the same bits as encoding every batch afresh."""
    sentences = random_sentences(6, seed=11, max_len=15)
    cached = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", state="zero", weight_precision=precision)
    fresh = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", state="zero", weight_precision=precision, token_cache_size=0)
    base = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", state="zero", token_cache_size=0)
    cached.batch_to_embeddings(sentences[:3])  # fills the cache with some of the words
    got, mask = cached.batch_to_embeddings(sentences)
    want, _ = fresh.batch_to_embeddings(sentences)
    fp32, _ = base.batch_to_embeddings(sentences)
    assert torch.equal(got, want)
    ids = batch_to_ids(sentences)
    weights = fresh.elmo_bilm.weights().char_cnn
    with torch.no_grad():
        tokens = token_encoder(ids, weights, backend="ref", weight_precision=precision)
    layer0 = got[:, 0, :, : tokens.shape[-1]][mask.bool()]
    assert_close(layer0, tokens[mask.bool()], what=f"{precision} token layer")
    rel = float((got[:, 0] - fp32[:, 0]).norm() / fp32[:, 0].norm())
    assert 0 < rel <= (1e-2 if precision == "bf16" else 1.5e-2), rel
