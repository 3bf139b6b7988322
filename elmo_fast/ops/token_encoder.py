"""``token_encoder``: character ids -> token embeddings (char-CNN, highway layers, projection).

Semantics: :func:`elmo_fast.reference.token_encoder_ref`. Every backend registers
``fn(char_ids, weights, activation, weight_precision)``. ``weight_precision`` (see
:mod:`elmo_fast.reference.quantize`) is the storage the highway weights stand for, and the
projection weight in :func:`~elmo_fast.reference.lowp.projection_precision` of it (bf16 for int8);
the reference and ``cpp`` multiply them in that precision (:mod:`elmo_fast.reference.lowp`;
``ELMO_FAST_PRODUCTS=fp32`` keeps float32 products), the registry hands the other backends the
float32 weights it stands for. The character embeddings and convolutions stay float32.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from elmo_fast import _backends
from elmo_fast.ops import cpp, registry
from elmo_fast.ops.registry import FLOAT32_ONLY, WEIGHT_CACHE
from elmo_fast.reference.lowp import product_fns, products_precision, projection_precision
from elmo_fast.reference.quantize import check_weight_precision
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


def dequantized_weights(weights, precision: str):
    """``weights`` with the float32 highway and projection weights that ``precision`` storage stands
    for (the projection's: :func:`~elmo_fast.reference.lowp.projection_precision`)."""
    if precision == "fp32":
        return weights
    highway = [
        dataclasses.replace(
            layer, w_transform=registry.dequantized(layer.w_transform, precision), w_carry=registry.dequantized(layer.w_carry, precision)
        )
        for layer in weights.highway
    ]
    return dataclasses.replace(weights, highway=highway, proj_weight=registry.dequantized(weights.proj_weight, projection_precision(precision)))


def _ref(char_ids: torch.Tensor, weights, activation: str, weight_precision: str) -> torch.Tensor:
    """:func:`token_encoder_ref` with the highway and projection products the ``cpp`` backend runs
    (reduced-precision weights multiply in their own precision, or with ``ELMO_FAST_PRODUCTS=fp32``
    as their float32 values), so the reference is the twin of the ``cpp`` kernels in each mode."""
    if products_precision(weight_precision) == "fp32":
        weights = dequantized_weights(weights, weight_precision)
    return token_encoder_ref(char_ids, weights, activation, **product_fns(weight_precision))


def _dequantize(char_ids, weights, activation, weight_precision) -> tuple:
    return char_ids, dequantized_weights(weights, weight_precision), activation, "fp32"


registry.define(
    "token_encoder",
    _ref,
    tensors=lambda char_ids, weights, activation, weight_precision: weight_tensors(weights),
    dequantize=_dequantize,
    native_precision=True,
)


def token_encoder(
    char_ids: torch.Tensor, weights, activation: str = "relu", *, backend: str = "ref", weight_precision: str = "fp32"
) -> torch.Tensor:
    """Embed int64 ``(..., 50)`` character ids as ``(..., P)`` with a :class:`~elmo_fast.weights.CharCNNWeights`.

    ``backend`` must already be resolved. ``weight_precision``: the storage of the highway weights
    (``"fp32"``, ``"bf16"``, ``"int8"``; the projection's: bf16 for int8,
    :func:`~elmo_fast.reference.lowp.projection_precision`); ``cpp`` and ``ref`` multiply in it, the
    GPU backends compute with the rounded weights in float32.
    """
    return registry.call("token_encoder", backend, char_ids, weights, activation, check_weight_precision(weight_precision))


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


def token_encoder_triton(char_ids: torch.Tensor, weights, activation: str = "relu", weight_precision: str = "fp32") -> torch.Tensor:
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


def token_encoder_cuda(char_ids: torch.Tensor, weights, activation: str = "relu", weight_precision: str = "fp32") -> torch.Tensor:
    """The ``cuda`` backend compiles only the LSTM: its encoder is Triton's where triton loaded,
    else the reference (PyTorch's own GPU kernels)."""
    if _backends.probe("triton")[0]:
        return token_encoder_triton(char_ids, weights, activation)
    return token_encoder_ref(char_ids, weights, activation)


registry.register("token_encoder", "cuda", token_encoder_cuda)


def token_encoder_cpp(char_ids: torch.Tensor, weights, activation: str = "relu", weight_precision: str = "fp32") -> torch.Tensor:
    """The ``cpp`` backend: the encoder runs once per distinct token (row of ids) in ``char_ids``.

    ``elmo_fast::char_cnn``, ``highway`` and ``dense`` give each row a result that does not depend on
    the other rows (also with bf16 or int8 products: activations are rounded or quantised per row),
    so computing each distinct row once changes no number.
    """
    lead = char_ids.shape[:-1]
    flat = char_ids.reshape(-1, char_ids.shape[-1])
    if torch.compiler.is_compiling():
        # every row (same numbers): the number of distinct tokens is data-dependent
        return _encode_cpp(flat, weights, activation, weight_precision).reshape(*lead, weights.proj_bias.shape[0])
    unique, inverse = torch.unique(flat, dim=0, return_inverse=True)
    pieces = [
        _encode_cpp(unique[start : start + CPP_CHUNK_ROWS], weights, activation, weight_precision)
        for start in range(0, len(unique), CPP_CHUNK_ROWS)
    ]
    x = torch.cat(pieces) if pieces else weights.proj_bias.new_zeros(0, weights.proj_bias.shape[0])
    return x[inverse].reshape(*lead, x.shape[-1])


def char_cnn_filters(*conv_weights: torch.Tensor) -> torch.Tensor:
    """Every filter of the char-CNN as the one packed matrix ``elmo_fast::char_cnn`` multiplies with:
    ``(wmax * d, F)``, row ``j * d + c`` of filter ``f`` = ``weight[f, c, j]`` (zero past the filter's
    width), as panels (:func:`elmo_fast.ops.cpp.pack_matrix`)."""
    wmax, dim = max(w.shape[2] for w in conv_weights), conv_weights[0].shape[1]
    # (n, d, w) -> (w, d, n), zero-padded to wmax -> (wmax * d, n)
    columns = [torch.nn.functional.pad(w.float().permute(2, 1, 0), (0, 0, 0, 0, 0, wmax - w.shape[2])).reshape(wmax * dim, -1) for w in conv_weights]
    return cpp.pack_matrix(torch.cat(columns, dim=1).contiguous())


def _encode_cpp(char_ids: torch.Tensor, weights, activation: str, precision: str) -> torch.Tensor:
    filters = WEIGHT_CACHE.get(weights.conv_weights, ("cpp.char_cnn_filters",), char_cnn_filters)
    x = torch.ops.elmo_fast.char_cnn(char_ids, weights.char_embed, weights.conv_weights, weights.conv_biases, activation, filters)
    for layer in weights.highway:
        (wt, wt_scale), (wc, wc_scale) = (cpp.packed_lowp(w, precision) for w in (layer.w_transform, layer.w_carry))
        x = torch.ops.elmo_fast.highway(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry, wt, wc, wt_scale, wc_scale)
    proj, proj_scale = cpp.packed_lowp(weights.proj_weight, projection_precision(precision))
    return torch.ops.elmo_fast.dense(x, weights.proj_weight, weights.proj_bias, proj, proj_scale)


if cpp.available():

    @torch.library.register_fake("elmo_fast::char_cnn")
    def _char_cnn_fake(char_ids, char_embed, conv_weights, conv_biases, activation, filters_packed=None):
        return char_embed.new_empty(char_ids.shape[0], sum(w.shape[0] for w in conv_weights))

    @torch.library.register_fake("elmo_fast::highway")
    def _highway_fake(
        x, w_transform, b_transform, w_carry, b_carry, w_transform_packed=None, w_carry_packed=None, w_transform_scale=None, w_carry_scale=None
    ):
        return torch.empty_like(x)

    @torch.library.register_fake("elmo_fast::dense")
    def _dense_fake(x, weight, bias, weight_packed=None, weight_scale=None):
        return x.new_empty(x.shape[0], weight.shape[1])

    registry.register("token_encoder", "cpp", token_encoder_cpp, dtypes=FLOAT32_ONLY, native_precision=True)
    ROW_EXACT.add("cpp")
