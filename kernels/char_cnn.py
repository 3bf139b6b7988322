"""Triton character CNN: embedding gather, every convolution width, max over positions, bias and
activation in one kernel (semantics: :func:`elmo_fast.reference.char_cnn_ref`).

The convolutions are one implicit matrix product: the filters of all widths are packed into one
``[W, DE, F]`` tensor (W = widest filter, DE = the char embedding dim padded to a power of two),
zero beyond each filter's own width. A program takes BN tokens x 64 positions (50 used) as the M
side and BF filters as the N side; for tap k it gathers the embedding rows of the characters at
``position + k`` (``[BN * 64, DE]``) and multiplies them with tap k of the packed filters
(``[DE, BF]``). Positions where a filter would run past the 50 slots are masked to -inf before the
max. A program loops only over the taps of the widest filter in its own block of filters.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl

from .utils import block, dot_flags, interpreting

ACTIVATIONS: tuple[str, ...] = ("relu", "tanh")


@triton.jit
def char_cnn_fwd_kernel(
    ids,
    char_embed,
    w,
    widths,
    bias,
    y,
    N,
    L: tl.constexpr,
    E: tl.constexpr,
    F: tl.constexpr,
    DE: tl.constexpr,
    BL: tl.constexpr,
    BN: tl.constexpr,
    BF: tl.constexpr,
    ACTIVATION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    i_n, i_f = tl.program_id(0).to(tl.int64), tl.program_id(1)
    # rows of the implicit product: BN tokens x BL positions
    o_m = tl.arange(0, BN * BL)
    o_n = i_n * BN + o_m // BL
    o_l = o_m % BL
    o_f = i_f * BF + tl.arange(0, BF)
    o_e = tl.arange(0, DE)
    m_n = o_n < N
    m_f = o_f < F
    m_e = o_e < E

    b_width = tl.load(widths + o_f, mask=m_f, other=1)
    b_acc = tl.zeros([BN * BL, BF], dtype=tl.float32)
    for k in range(0, tl.max(b_width)):
        m_char = m_n & (o_l + k < L)
        b_id = tl.load(ids + o_n * L + o_l + k, mask=m_char, other=0).to(tl.int64)
        # [BN * BL, DE]: embeddings of the characters under tap k
        b_x = tl.load(char_embed + b_id[:, None] * E + o_e[None, :], mask=m_char[:, None] & m_e[None, :], other=0)
        # [DE, BF]
        b_w = tl.load(w + (k * DE + o_e[:, None]) * F + o_f[None, :], mask=m_f[None, :], other=0)
        b_acc = tl.dot(b_x.to(DOT_DTYPE), b_w.to(DOT_DTYPE), b_acc, input_precision=DOT_PRECISION)

    # a width-w filter has L - w + 1 positions
    b_acc = tl.where(o_l[:, None] + b_width[None, :] <= L, b_acc, float("-inf"))
    # [BN, BF]
    b_y = tl.max(tl.reshape(b_acc, [BN, BL, BF]), axis=1) + tl.load(bias + o_f, mask=m_f, other=0).to(tl.float32)[None, :]
    if ACTIVATION == "relu":
        b_y = tl.maximum(b_y, 0)
    else:
        b_y = 2 / (1 + tl.exp(-2 * b_y)) - 1
    o_rows = i_n * BN + tl.arange(0, BN)
    tl.store(y + o_rows[:, None] * F + o_f[None, :], b_y.to(y.dtype.element_ty), mask=(o_rows < N)[:, None] & m_f[None, :])


def pack_conv_weights(
    conv_weights: Sequence[torch.Tensor], conv_biases: Sequence[torch.Tensor], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pack Conv1d kernels ``(n_i, d, w_i)`` into ``(max w, DE, F)`` (zero-padded), with each
    filter's width ``(F,)`` int32 and the concatenated bias ``(F,)``."""
    embed_dim = conv_weights[0].shape[1]
    max_width = max(wt.shape[2] for wt in conv_weights)
    total = sum(wt.shape[0] for wt in conv_weights)
    device = conv_weights[0].device
    packed = torch.zeros(max_width, block(embed_dim), total, dtype=dtype, device=device)
    widths = torch.empty(total, dtype=torch.int32, device=device)
    start = 0
    for wt in conv_weights:
        count, _, width = wt.shape
        packed[:width, :embed_dim, start : start + count] = wt.permute(2, 1, 0).to(dtype)
        widths[start : start + count] = width
        start += count
    return packed, widths, torch.cat([b.to(dtype) for b in conv_biases])


def char_cnn_tiles(filters: int) -> dict[str, int]:
    """The launch configuration of :func:`char_cnn_fwd` for ``filters`` filters: tokens per program
    ``BN``, filters per program ``BF`` and ``num_warps``."""
    # NOTE: 64 positions (50 used) x 2 tokens = 128 rows per product, and 128 filters: with d = 16
    # each tap is a [128, 16] x [16, 128] bf16 product. Filters are grouped by width in the model
    # (1, 2, ..., 7), so most filter blocks loop over fewer than 7 taps. Design choice, not measured.
    # The interpreter pays a fixed cost per program, so it takes 16 tokens at a time.
    return {"BN": 16 if interpreting() else 2, "BF": block(filters, hi=128), "num_warps": 8}


def char_cnn_fwd(
    char_ids: torch.Tensor,
    char_embed: torch.Tensor,
    packed: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    activation: str = "relu",
) -> torch.Tensor:
    """``(N, 50)`` character ids -> ``(N, F)`` in ``char_embed``'s dtype, as
    :func:`elmo_fast.reference.char_cnn_ref`; ``packed`` comes from :func:`pack_conv_weights`
    (cached per weights by :func:`elmo_fast.ops.token_encoder.packed_conv_weights`)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    if char_ids.dim() != 2:
        raise ValueError(f"char_ids must be (N, max_characters), got shape {tuple(char_ids.shape)}")
    w, widths, bias = packed
    num_tokens, slots = char_ids.shape
    embed_dim = char_embed.shape[1]
    filters = w.shape[2]
    if w.shape[0] > slots:
        raise ValueError(f"a filter of width {w.shape[0]} is wider than the {slots} character slots")
    y = char_embed.new_empty(num_tokens, filters)
    if num_tokens == 0:
        return y
    tiles = char_cnn_tiles(filters)
    grid = (triton.cdiv(num_tokens, tiles["BN"]), triton.cdiv(filters, tiles["BF"]))
    char_cnn_fwd_kernel[grid](
        ids=char_ids.contiguous(), char_embed=char_embed.contiguous(), w=w, widths=widths, bias=bias, y=y,
        N=num_tokens, L=slots, E=embed_dim, F=filters, DE=w.shape[1], BL=triton.next_power_of_2(slots),
        BN=tiles["BN"], BF=tiles["BF"], ACTIVATION=activation, num_warps=tiles["num_warps"], **dot_flags(char_embed.dtype),
    )
    return y
