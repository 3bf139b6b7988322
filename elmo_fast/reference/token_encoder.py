"""Reference token encoder: character CNN, highway layers and the projection to P.

Weights use the layouts of :class:`elmo_fast.weights.CharCNNWeights` (torch Conv1d kernels,
bilm-tf's ``x @ W`` matrices for highway and projection).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}

Product = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``product(a, w)`` stands for ``a @ w`` (e.g. bf16 or int8 products, :mod:`elmo_fast.reference.lowp`)."""


def char_cnn_ref(
    char_ids: torch.Tensor,
    char_embed: torch.Tensor,
    conv_weights: Sequence[torch.Tensor],
    conv_biases: Sequence[torch.Tensor],
    activation: str = "relu",
) -> torch.Tensor:
    """Embed characters, convolve with every filter width, max over positions, add bias, activate.

    Args:
        char_ids: int64 ``(N, 50)`` character ids (0 = padding, row 0 of ``char_embed`` is zero).
        char_embed: ``(262, d)`` character embedding table.
        conv_weights: per filter width w_i, a Conv1d kernel ``(n_i, d, w_i)``.
        conv_biases: per filter width, ``(n_i,)``.
        activation: ``"relu"`` or ``"tanh"``, applied after the max.

    Returns:
        ``(N, F)`` with F = sum(n_i), filters concatenated in order.
    """
    # [N, d, 50]
    x = F.embedding(char_ids, char_embed).transpose(1, 2)
    act = ACTIVATIONS[activation]
    pieces = []
    for weight, bias in zip(conv_weights, conv_biases):
        # max over positions first: the bias is constant over positions
        pieces.append(act(F.conv1d(x, weight).amax(dim=-1) + bias))
    return torch.cat(pieces, dim=-1)


def highway_ref(
    x: torch.Tensor,
    w_transform: torch.Tensor,
    b_transform: torch.Tensor,
    w_carry: torch.Tensor,
    b_carry: torch.Tensor,
    product: Product | None = None,
) -> torch.Tensor:
    """One highway layer in bilm-tf's naming: ``g * relu(x Wt + bt) + (1 - g) * x``, g = sigmoid(x Wc + bc).

    ``product``: how ``x Wt`` and ``x Wc`` are computed (None: ``torch.matmul``).
    """
    mm = product or torch.matmul
    transform = torch.relu(mm(x, w_transform) + b_transform)
    gate = torch.sigmoid(mm(x, w_carry) + b_carry)
    return gate * transform + (1.0 - gate) * x


# Upper bound on the convolution outputs held at once (elements), so that a 10,000-token sentence
# does not need gigabytes: the original model's convolutions hold ~100k floats per token.
CHUNK_ELEMENTS: int = 1 << 25


def token_encoder_ref(
    char_ids: torch.Tensor, weights, activation: str = "relu", product: Product | None = None, projection_product: Product | None = None
) -> torch.Tensor:
    """Char-CNN, highway layers and projection: int64 ``(..., 50)`` ids -> ``(..., P)`` embeddings.

    ``weights`` is a :class:`elmo_fast.weights.CharCNNWeights` (or anything with its attributes).
    ``product``: how the highway products are computed, and the projection's unless
    ``projection_product`` is given (None: ``torch.matmul``; the convolutions always run in the
    weights' dtype).
    Tokens are processed in chunks so working memory stays bounded however many there are; under a
    tracer (``torch.compile``, ``torch.export``) in one piece, since a loop over chunks would fix the
    number of tokens in the graph.
    """
    lead = char_ids.shape[:-1]
    flat = char_ids.reshape(-1, char_ids.shape[-1])
    if torch.compiler.is_compiling():
        return _encode(flat, weights, activation, product, projection_product).reshape(*lead, weights.proj_bias.shape[0])
    per_row = sum(w.shape[0] for w in weights.conv_weights) * char_ids.shape[-1]
    rows = max(1, CHUNK_ELEMENTS // per_row)
    pieces = []
    for start in range(0, flat.shape[0], rows):
        pieces.append(_encode(flat[start : start + rows], weights, activation, product, projection_product))
    x = torch.cat(pieces) if pieces else weights.proj_bias.new_zeros(0, weights.proj_bias.shape[0])
    return x.reshape(*lead, x.shape[-1])


def _encode(char_ids: torch.Tensor, weights, activation: str, product: Product | None, projection_product: Product | None) -> torch.Tensor:
    # [N, 50] -> [N, P]
    x = char_cnn_ref(char_ids, weights.char_embed, weights.conv_weights, weights.conv_biases, activation)
    for layer in weights.highway:
        x = highway_ref(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry, product)
    return (projection_product or product or torch.matmul)(x, weights.proj_weight) + weights.proj_bias
