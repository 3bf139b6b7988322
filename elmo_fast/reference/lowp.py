"""The arithmetic of reduced-precision products: the twin of the ``cpp`` backend's bf16 and int8 GEMMs.

With ``weight_precision="bf16"`` or ``"int8"`` the ``cpp`` backend multiplies in that precision
(``csrc/cpu/lowp_gemm.h``) unless ``ELMO_FAST_PRODUCTS=fp32`` (:func:`products_precision`):

- ``"bf16"``: both operands rounded to bfloat16 (round to nearest even), the products (exact in
  float32) summed in float32.
- ``"int8"``: the weight as :func:`~elmo_fast.reference.quantize.int8_columns` stores it (``q_w``,
  scale ``s_w`` per column); every activation row quantised on its own, symmetric:
  ``s_a = max|a| / 127``, ``q_a = round(a * (127 / max|a|))`` in [-127, 127] (a row of zeros gives
  ``q_a = 0``, ``s_a = 1``); the integer sum ``q_a @ q_w`` is exact (int32 in the kernel), then
  ``float(q_a @ q_w) * (s_a * s_w)``.

The products are the biLSTM's three (input, recurrent, projection) and the token encoder's highway
and projection ones. In an int8 model the two projections (the biLSTM's cell -> projection and the
encoder's highway -> projection) are stored and multiplied in bf16 (:func:`projection_precision`).
The cell state, gates, clipping, the residual, the highway gate and the character convolutions stay
float32. :func:`product` is what :func:`~elmo_fast.reference.lstmp_ref` and
:func:`~elmo_fast.reference.token_encoder_ref` take as ``product=`` (and ``projection_product=``);
sums are formed in float64 here, so the kernels match it to float32 rounding.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .quantize import INT8_MAX, check_weight_precision, dequantize, int8_columns

PRODUCTS_ENV = "ELMO_FAST_PRODUCTS"
PRODUCT_MODES = ("native", "fp32", "uniform")


def products_mode() -> str:
    """``ELMO_FAST_PRODUCTS``: ``"native"`` (default; products in the weights' precision),
    ``"fp32"`` (float32 products on the reduced weights, the behaviour before reduced products except
    that an int8 model's projections are now stored in bf16) or
    ``"uniform"`` (as native, but an int8 model keeps its projections in int8 too, the arithmetic
    before 2026-12-04: faster, less accurate; see :func:`projection_precision`)."""
    mode = os.environ.get(PRODUCTS_ENV, "native")
    if mode not in PRODUCT_MODES:
        raise ValueError(f"{PRODUCTS_ENV} must be one of {', '.join(PRODUCT_MODES)}, not {mode!r}")
    return mode


def products_precision(weight_precision: str) -> str:
    """The precision the products of ``weight_precision`` weights run in: the weights' own, or
    ``"fp32"`` (the reduced weights dequantized) when the environment sets ``ELMO_FAST_PRODUCTS=fp32``.
    """
    check_weight_precision(weight_precision)
    return "fp32" if products_mode() == "fp32" else weight_precision


def projection_precision(weight_precision: str) -> str:
    """The storage of the projection weights (the biLSTM's ``w_proj``, the token encoder's
    ``proj_weight``) of a ``weight_precision`` model: the same, except ``"bf16"`` for ``"int8"``
    (unless ``ELMO_FAST_PRODUCTS=uniform``). Their products then run in
    ``products_precision(projection_precision(weight_precision))``.

    A projection maps a wide row (4,096 cell outputs; 2,048 highway outputs) to a narrow one that
    every later layer reads, and per-row int8 quantisation of those wide rows costs more accuracy than
    any other product: on the bundled model the int8 model's worst-layer error against fp32 is
    1.38e-2 with int8 projections and 7.1e-3 with bf16 ones (original config, random weights:
    1.33e-2 and 4.7e-3), for 1.05x the time at batch 32 and 1.11x for one sentence
    (``benchmarks/int8_projections.py`` measures both; at the original size the projections hold 6% of
    the encoder's highway and projection weights and 11% of the biLSTM's).
    """
    if check_weight_precision(weight_precision) == "int8" and products_mode() != "uniform":
        return "bf16"
    return weight_precision


def quantize_rows(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., K)`` float32 -> integer-valued float32 ``q_a`` ``(..., K)`` and scales ``(..., 1)``, per row."""
    a = a.float()
    amax = a.abs().amax(dim=-1, keepdim=True)
    nonzero = amax > 0
    inv = torch.where(nonzero, INT8_MAX / torch.where(nonzero, amax, torch.ones_like(amax)), torch.zeros_like(amax))
    q = torch.round(a * inv).clamp_(-INT8_MAX, INT8_MAX)
    scale = torch.where(nonzero, amax / INT8_MAX, torch.ones_like(amax))
    return q, scale


def product(a: torch.Tensor, w: torch.Tensor, precision: str) -> torch.Tensor:
    """``a @ w`` (``matmul`` broadcasting; ``w`` ``(..., K, N)`` float32) with ``precision`` products."""
    check_weight_precision(precision)
    if precision == "fp32":
        return torch.matmul(a, w)
    if precision == "bf16":
        return torch.matmul(a.to(torch.bfloat16).double(), dequantize(w, "bf16").double()).float()
    q_w, s_w = int8_columns(w)
    q_a, s_a = quantize_rows(a)
    return torch.matmul(q_a.double(), q_w.double()).float() * (s_a * s_w.unsqueeze(-2))


def product_fn(precision: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``product`` for ``lstmp_ref(..., product=)``: None for fp32 (plain ``torch.matmul``)."""
    if check_weight_precision(precision) == "fp32":
        return None
    return lambda a, w: product(a, w, precision)


def product_fns(weight_precision: str) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None]:
    """``product=`` and ``projection_product=`` of :func:`~elmo_fast.reference.lstmp_ref` and
    :func:`~elmo_fast.reference.token_encoder_ref` for a ``weight_precision`` model: its products as
    the ``cpp`` backend runs them now (:func:`products_precision`, :func:`projection_precision`)."""
    return {
        "product": product_fn(products_precision(weight_precision)),
        "projection_product": product_fn(products_precision(projection_precision(weight_precision))),
    }

