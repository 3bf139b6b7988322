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
and projection ones (in a model, bf16 for both reduced precisions: :func:`encoder_precision`); the cell state, gates, clipping, the residual, the highway gate and the
character convolutions stay float32. :func:`product` is what :func:`~elmo_fast.reference.lstmp_ref`
and :func:`~elmo_fast.reference.token_encoder_ref` take as ``product=``; sums are formed in float64
here, so the kernels match it to float32 rounding.
"""
from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .quantize import INT8_MAX, check_weight_precision, dequantize, int8_columns

PRODUCTS_ENV = "ELMO_FAST_PRODUCTS"


def products_precision(weight_precision: str) -> str:
    """The precision the products of ``weight_precision`` weights run in: the weights' own, or
    ``"fp32"`` (the reduced weights dequantized, the behaviour before reduced products) when the
    environment sets ``ELMO_FAST_PRODUCTS=fp32``.
    """
    check_weight_precision(weight_precision)
    mode = os.environ.get(PRODUCTS_ENV, "native")
    if mode not in ("native", "fp32"):
        raise ValueError(f"{PRODUCTS_ENV} must be 'native' (products in the weight precision) or 'fp32', not {mode!r}")
    return "fp32" if mode == "fp32" else weight_precision


def encoder_precision(weight_precision: str) -> str:
    """The storage of the token encoder's highway and projection weights in a model run with
    ``weight_precision``: the same, except ``"bf16"`` for ``"int8"``.

    The int8 products of the encoder cost accuracy out of proportion to their share of the work:
    on the bundled model (32 sentences, ``state="zero"``, worst biLM layer against fp32) an int8
    encoder takes the int8 model's error from 1.10e-2 to 1.38e-2 (the project's bound is 1.5e-2),
    a bf16 one leaves it at 1.10e-2, and with the token cache (on by default) the encoder's share of
    the run time is small. ``benchmarks/encoder_precision.py`` measures both. The int8 encoder stays
    available as ``token_encoder(..., weight_precision="int8")``.
    """
    return "bf16" if check_weight_precision(weight_precision) == "int8" else weight_precision


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
