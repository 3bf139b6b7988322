"""Triton highway layer: both products of ``x`` and the gate in one kernel
(semantics: :func:`elmo_fast.reference.highway_ref`).

A program computes a ``[BM, BN]`` tile of ``x @ w_transform`` and of ``x @ w_carry`` in the same
K loop (each ``x`` tile is loaded once for both), then in the epilogue
``g * relu(t + b_t) + (1 - g) * x`` with ``g = sigmoid(c + b_c)``. The output is a new tensor: every
program reads whole rows of ``x``, so writing in place would race.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import block, dot_flags


@triton.jit
def highway_fwd_kernel(
    x,
    w_transform,
    b_transform,
    w_carry,
    b_carry,
    y,
    M,
    F: tl.constexpr,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    i_m, i_n = tl.program_id(0).to(tl.int64), tl.program_id(1)
    o_m = i_m * BM + tl.arange(0, BM)
    o_n = i_n * BN + tl.arange(0, BN)
    m_m = o_m < M
    m_n = o_n < F

    b_t = tl.zeros([BM, BN], dtype=tl.float32)
    b_c = tl.zeros([BM, BN], dtype=tl.float32)
    for k in range(0, F, BK):
        o_k = k + tl.arange(0, BK)
        m_k = o_k < F
        # [BM, BK]
        b_x = tl.load(x + o_m[:, None] * F + o_k[None, :], mask=m_m[:, None] & m_k[None, :], other=0).to(DOT_DTYPE)
        # [BK, BN]
        o_w = o_k[:, None] * F + o_n[None, :]
        m_w = m_k[:, None] & m_n[None, :]
        b_t = tl.dot(b_x, tl.load(w_transform + o_w, mask=m_w, other=0).to(DOT_DTYPE), b_t, input_precision=DOT_PRECISION)
        b_c = tl.dot(b_x, tl.load(w_carry + o_w, mask=m_w, other=0).to(DOT_DTYPE), b_c, input_precision=DOT_PRECISION)

    b_t = tl.maximum(b_t + tl.load(b_transform + o_n, mask=m_n, other=0).to(tl.float32)[None, :], 0)
    # sigmoid written out, not tl.sigmoid (see kernels/utils.py: no jit helpers in the kernels)
    b_g = 1 / (1 + tl.exp(-(b_c + tl.load(b_carry + o_n, mask=m_n, other=0).to(tl.float32)[None, :])))
    o_y = o_m[:, None] * F + o_n[None, :]
    m_y = m_m[:, None] & m_n[None, :]
    b_x = tl.load(x + o_y, mask=m_y, other=0).to(tl.float32)
    tl.store(y + o_y, (b_g * b_t + (1 - b_g) * b_x).to(y.dtype.element_ty), mask=m_y)


def highway_tiles(width: int) -> dict[str, int]:
    """The launch configuration of :func:`highway_fwd` for ``width`` features: ``BM``, ``BN``, ``BK``
    and ``num_warps``."""
    # NOTE: two fp32 accumulators of [64, 128] per program (8 warps: 64 registers each), a K step
    # of 64; F = 2048 in the original model gives 16 column blocks per 64 tokens. Design choice for
    # the H100, not measured.
    return {"BM": 64, "BN": block(width, hi=128), "BK": block(width, hi=64), "num_warps": 8}


def highway_fwd(
    x: torch.Tensor,
    w_transform: torch.Tensor,
    b_transform: torch.Tensor,
    w_carry: torch.Tensor,
    b_carry: torch.Tensor,
) -> torch.Tensor:
    """One highway layer on ``x`` ``(M, F)`` with ``(F, F)`` matrices (``x @ W`` layout); returns a new ``(M, F)``."""
    if x.dim() != 2 or tuple(w_transform.shape) != (x.shape[1], x.shape[1]) or w_carry.shape != w_transform.shape:
        raise ValueError(
            f"highway needs x (M, F) and (F, F) matrices, got x {tuple(x.shape)}, "
            f"w_transform {tuple(w_transform.shape)}, w_carry {tuple(w_carry.shape)}"
        )
    rows, width = x.shape
    x = x.contiguous()
    y = torch.empty_like(x)
    if rows == 0:
        return y
    tiles = highway_tiles(width)
    grid = (triton.cdiv(rows, tiles["BM"]), triton.cdiv(width, tiles["BN"]))
    highway_fwd_kernel[grid](
        x=x, w_transform=w_transform.contiguous(), b_transform=b_transform, w_carry=w_carry.contiguous(), b_carry=b_carry,
        y=y, M=rows, F=width, BM=tiles["BM"], BN=tiles["BN"], BK=tiles["BK"], num_warps=tiles["num_warps"], **dot_flags(x.dtype),
    )
    return y
