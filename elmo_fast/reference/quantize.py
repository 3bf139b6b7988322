"""Reduced-precision storage of the weight matrices: what the stored values are, as fp32 tensors.

``weight_precision`` (``BiLm``, ``Elmo``, ``ElmoEmbedder``, ``elmo-fast embed --weight-precision``)
stores ``w_ih``, ``w_hh`` and ``w_proj`` of every biLSTM layer and the token encoder's highway and
projection matrices in fewer bits; the character embeddings and convolutions, biases and state
stay float32 (how the products are computed: :mod:`elmo_fast.reference.lowp`):

- ``"fp32"``: the weights as loaded (the default).
- ``"bf16"``: each weight rounded to bfloat16 (round to nearest even), 2 bytes.
- ``"int8"``: symmetric per output column: ``scale[j] = max_k |w[k, j]| / 127`` and
  ``q[k, j] = round(w[k, j] / scale[j])`` in [-127, 127], 1 byte (plus one float per column);
  the weight used is ``q * scale``.

The ``cpp`` backend reads the stored form directly (batch-1 inference is bound by reading the
weights, so fewer bytes is lower latency) and multiplies in that precision; ``ref`` computes the same
products in PyTorch; the GPU backends compute with :func:`dequantize` of the weights in float32.
"""
from __future__ import annotations

import torch

WEIGHT_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
INT8_MAX: int = 127


def check_weight_precision(precision: str) -> str:
    """Validate a ``weight_precision=`` argument."""
    if precision not in WEIGHT_PRECISIONS:
        raise ValueError(f"weight_precision must be one of {', '.join(repr(p) for p in WEIGHT_PRECISIONS)}, not {precision!r}")
    return precision


def int8_columns(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., K, N)`` float -> int8 values ``(..., K, N)`` and float32 scales ``(..., N)``.

    A column of zeros gets scale 1 (its values are 0 either way).
    """
    w = weight.detach().float()
    amax = w.abs().amax(dim=-2)
    scale = torch.where(amax > 0, amax / INT8_MAX, torch.ones_like(amax))
    q = torch.round(w / scale.unsqueeze(-2)).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize(weight: torch.Tensor, precision: str) -> torch.Tensor:
    """The float32 weight that ``precision`` storage of ``weight`` stands for (a matrix or a stack)."""
    check_weight_precision(precision)
    if precision == "fp32":
        return weight
    if precision == "bf16":
        return weight.detach().to(torch.bfloat16).float()
    q, scale = int8_columns(weight)
    return q.float() * scale.unsqueeze(-2)
