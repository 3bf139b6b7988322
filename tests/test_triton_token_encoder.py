"""Triton char-CNN and highway kernels, and the ``token_encoder`` op on them, against the reference."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from utils import TRITON_DEVICE, TRITON_SKIP_REASON, assert_close

from elmo_fast.ops.token_encoder import token_encoder
from elmo_fast.reference import char_cnn_ref, highway_ref, token_encoder_ref
from elmo_fast.weights import CharCNNWeights, ElmoOptions, random_weights

pytestmark = pytest.mark.skipif(TRITON_DEVICE is None, reason=TRITON_SKIP_REASON)

# odd sizes on purpose: d = 5 (padded to 16 in the kernel), widths 1..5 with one skipped, F = 41
OPTIONS = ElmoOptions(projection_dim=12, cell_dim=16, filters=((1, 4), (2, 8), (3, 20), (5, 9)), n_highway=2, char_embed_dim=5)


def _char_ids(num_tokens: int, seed: int) -> torch.Tensor:
    """Random ids: real tokens of varied lengths (ids 1..261 then 0 padding) and all-zero rows."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 262, (num_tokens, 50), generator=g)
    lengths = torch.randint(0, 51, (num_tokens,), generator=g)
    lengths[0] = 50
    ids[torch.arange(50) >= lengths[:, None]] = 0
    return ids.to(TRITON_DEVICE)


def _cast(cnn: CharCNNWeights, dtype: torch.dtype) -> CharCNNWeights:
    """``cnn`` with every tensor on the test device in ``dtype``."""

    def to(t: torch.Tensor) -> torch.Tensor:
        return t.to(TRITON_DEVICE, dtype)

    return replace(
        cnn,
        char_embed=to(cnn.char_embed),
        conv_weights=[to(w) for w in cnn.conv_weights],
        conv_biases=[to(b) for b in cnn.conv_biases],
        highway=[replace(hw, **{k: to(v) for k, v in vars(hw).items()}) for hw in cnn.highway],
        proj_weight=to(cnn.proj_weight),
        proj_bias=to(cnn.proj_bias),
    )


def _weights(dtype=torch.float32) -> CharCNNWeights:
    return _cast(random_weights(OPTIONS, seed=3).char_cnn, dtype)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_char_cnn_matches_reference(activation):
    from elmo_fast.kernels.char_cnn import char_cnn_fwd, pack_conv_weights

    cnn = _weights()
    ids = _char_ids(19, seed=1)
    packed = pack_conv_weights(cnn.conv_weights, cnn.conv_biases, torch.float32)
    got = char_cnn_fwd(ids, cnn.char_embed, packed, activation)
    wide = _cast(cnn, torch.float64)
    want = char_cnn_ref(ids, wide.char_embed, wide.conv_weights, wide.conv_biases, activation)
    assert_close(got, want, torch.float32, f"char cnn {activation}")


def test_highway_matches_reference_on_strided_input():
    from elmo_fast.kernels.highway import highway_fwd

    layer = _weights().highway[0]
    width = layer.w_transform.shape[0]
    x = torch.randn(70, 2 * width, device=TRITON_DEVICE)[:, 1::2]
    got = highway_fwd(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry)
    want = highway_ref(x.double(), *(t.double() for t in (layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry)))
    assert_close(got, want, torch.float32, "highway")


def test_token_encoder_op_matches_reference():
    cnn = _weights()
    ids = _char_ids(2 * 3 * 7, seed=2).view(2, 3, 7, 50)
    got = token_encoder(ids, cnn, "relu", backend="triton")
    assert got.shape == (2, 3, 7, OPTIONS.projection_dim)
    assert_close(got, token_encoder_ref(ids, _cast(cnn, torch.float64), "relu"), torch.float32, "token encoder")


def test_token_encoder_bf16_close_to_fp32_reference():
    low = _weights(torch.bfloat16)
    ids = _char_ids(23, seed=4)
    got = token_encoder(ids, low, "relu", backend="triton")
    assert got.dtype == torch.bfloat16
    assert_close(got, token_encoder_ref(ids, _cast(low, torch.float64), "relu"), torch.bfloat16, "bf16 token encoder")


def test_packed_weights_follow_in_place_updates():
    from elmo_fast.ops.token_encoder import packed_conv_weights

    cnn = _weights()
    before = packed_conv_weights(cnn.conv_weights, cnn.conv_biases, torch.float32)
    assert packed_conv_weights(cnn.conv_weights, cnn.conv_biases, torch.float32) is before
    with torch.no_grad():
        cnn.conv_weights[1].mul_(2.0)
    after = packed_conv_weights(cnn.conv_weights, cnn.conv_biases, torch.float32)
    assert after is not before
    assert_close(after[0][:2, :5, 4:12], cnn.conv_weights[1].permute(2, 1, 0), torch.float32, "repacked filters")


@pytest.mark.parametrize("triton_loaded", [True, False])
def test_cuda_backend_encodes_with_triton_else_reference(monkeypatch, triton_loaded):
    from elmo_fast import _backends
    from elmo_fast.ops.token_encoder import token_encoder_cuda
    monkeypatch.setattr(_backends, "probe", lambda name: (triton_loaded, "test"))
    cnn = _weights()
    ids = _char_ids(7, seed=5)
    got = token_encoder_cuda(ids, cnn)
    want = token_encoder_ref(ids, cnn)
    if triton_loaded:
        assert_close(got, want, torch.float32)
    else:
        assert torch.equal(got, want)
