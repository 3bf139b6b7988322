"""``token_encoder``: character ids -> token embeddings (char-CNN, highway layers, projection).

Semantics: :func:`elmo_fast.reference.token_encoder_ref`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from elmo_fast import _backends
from elmo_fast.ops import cpp, registry
from elmo_fast.ops.registry import FLOAT32_ONLY, WEIGHT_CACHE
from elmo_fast.reference.token_encoder import token_encoder_ref

# Backends whose result for a token does not depend on the other tokens of the call (bit for bit),
# so that caching token embeddings across batches changes no number.
ROW_EXACT: set[str] = set()

# Distinct tokens encoded per call of the compiled ops: bounds working memory (the original model's
# highway layers hold 2 x 8 KiB per token).
CPP_CHUNK_ROWS: int = 4096


def weight_tensors(weights) -> list[torch.Tensor]:
    """Every tensor of a :class:`~elmo_fast.weights.CharCNNWeights` (what decides the fallback)."""
    tensors = [weights.char_embed, *weights.conv_weights, *weights.conv_biases, weights.proj_weight, weights.proj_bias]
    for layer in weights.highway:
        tensors += [layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry]
    return tensors


registry.define("token_encoder", token_encoder_ref, tensors=lambda char_ids, weights, activation: weight_tensors(weights))


def token_encoder(char_ids: torch.Tensor, weights, activation: str = "relu", *, backend: str = "ref") -> torch.Tensor:
    """Embed int64 ``(..., 50)`` character ids as ``(..., P)`` with a :class:`~elmo_fast.weights.CharCNNWeights`."""
    return registry.call("token_encoder", backend, char_ids, weights, activation)


def packed_conv_weights(
    conv_weights: Sequence[torch.Tensor], conv_biases: Sequence[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Triton char-CNN's packed filters (:func:`elmo_fast.kernels.char_cnn.pack_conv_weights`),
    made once per weight contents (:data:`~elmo_fast.ops.registry.WEIGHT_CACHE`)."""
    from elmo_fast.kernels.char_cnn import pack_conv_weights

    count = len(conv_weights)
    return WEIGHT_CACHE.get(
        (*conv_weights, *conv_biases), ("triton.char_cnn", dtype), lambda *ts: pack_conv_weights(ts[:count], ts[count:], dtype)
    )


def token_encoder_triton(char_ids: torch.Tensor, weights, activation: str = "relu") -> torch.Tensor:
    """Triton char-CNN and highway kernels, then the projection as one ``addmm`` (imported on first use)."""
    from elmo_fast.kernels.char_cnn import char_cnn_fwd
    from elmo_fast.kernels.highway import highway_fwd

    lead = char_ids.shape[:-1]
    x = char_cnn_fwd(char_ids.reshape(-1, char_ids.shape[-1]), weights.char_embed,
                     packed_conv_weights(weights.conv_weights, weights.conv_biases, weights.char_embed.dtype), activation)
    for layer in weights.highway:
        x = highway_fwd(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry)
    x = torch.addmm(weights.proj_bias.to(x.dtype), x, weights.proj_weight.to(x.dtype))
    return x.reshape(*lead, x.shape[-1])


registry.register("token_encoder", "triton", token_encoder_triton)


def token_encoder_cuda(char_ids: torch.Tensor, weights, activation: str = "relu") -> torch.Tensor:
    """The ``cuda`` backend compiles only the LSTM: its encoder is Triton's where triton loaded,
    else the reference (PyTorch's own GPU kernels)."""
    impl = token_encoder_triton if _backends.probe("triton")[0] else token_encoder_ref
    return impl(char_ids, weights, activation)


registry.register("token_encoder", "cuda", token_encoder_cuda)


def token_encoder_cpp(char_ids: torch.Tensor, weights, activation: str = "relu") -> torch.Tensor:
    """The ``cpp`` backend: the encoder runs once per distinct token (row of ids) in ``char_ids``.

    ``elmo_fast::char_cnn``, ``highway`` and ``dense`` give each row a result that does not depend on
    the other rows, so computing each distinct row once changes no number.
    """
    lead = char_ids.shape[:-1]
    flat = char_ids.reshape(-1, char_ids.shape[-1])
    if torch.compiler.is_compiling():
        # every row (same numbers): the number of distinct tokens is data-dependent
        return _encode_cpp(flat, weights, activation).reshape(*lead, weights.proj_bias.shape[0])
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    pieces = [_encode_cpp(unique[start : start + CPP_CHUNK_ROWS], weights, activation) for start in range(0, len(unique), CPP_CHUNK_ROWS)]
    x = torch.cat(pieces) if pieces else weights.proj_bias.new_zeros(0, weights.proj_bias.shape[0])
    return x[inverse].reshape(*lead, x.shape[-1])


def _encode_cpp(char_ids: torch.Tensor, weights, activation: str) -> torch.Tensor:
    x = torch.ops.elmo_fast.char_cnn(char_ids, weights.char_embed, weights.conv_weights, weights.conv_biases, activation)
    for layer in weights.highway:
        x = torch.ops.elmo_fast.highway(
            x,
            layer.w_transform,
            layer.b_transform,
            layer.w_carry,
            layer.b_carry,
            cpp.packed(layer.w_transform, "highway"),
            cpp.packed(layer.w_carry, "highway"),
        )
    return torch.ops.elmo_fast.dense(x, weights.proj_weight, weights.proj_bias, cpp.packed(weights.proj_weight, "dense"))


if cpp.available():

    @torch.library.register_fake("elmo_fast::char_cnn")
    def _char_cnn_fake(char_ids, char_embed, conv_weights, conv_biases, activation):
        return char_embed.new_empty(char_ids.shape[0], sum(w.shape[0] for w in conv_weights))

    @torch.library.register_fake("elmo_fast::highway")
    def _highway_fake(x, w_transform, b_transform, w_carry, b_carry, w_transform_packed=None, w_carry_packed=None):
        return torch.empty_like(x)

    @torch.library.register_fake("elmo_fast::dense")
    def _dense_fake(x, weight, bias, weight_packed=None, weight_scale=None):
        return x.new_empty(x.shape[0], weight.shape[1])

    registry.register("token_encoder", "cpp", token_encoder_cpp, dtypes=FLOAT32_ONLY)
    ROW_EXACT.add("cpp")
