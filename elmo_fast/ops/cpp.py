"""What the ``cpp`` backend's ops share: whether ``elmo_fast._C`` loaded, and packed weight panels.

The compiled CPU ops (``torch.ops.elmo_fast.*``, built from ``csrc/``) are forward-only and
float32; the registry (:mod:`elmo_fast.ops.registry`) sends other calls to the reference.
"""
from __future__ import annotations

import functools

import torch

from elmo_fast import _backends
from elmo_fast.ops.registry import WEIGHT_CACHE


def pack_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` or stacked ``(..., K, N)`` -> panels ``(..., ceil(N / 16), K, 16)``."""
    return torch.ops.elmo_fast.pack_panels(weight)


def interleave_k(panels: torch.Tensor, group: int) -> torch.Tensor:
    """Panels ``(..., N / 16, K, 16)`` -> ``(..., N / 16, ceil(K / group), 16, group)``.

    ``group`` consecutive k side by side per column: the layout of ``csrc/cpu/lowp_gemm.h`` (bf16
    pairs, uint8 quads); padded k are zero.
    """
    padded = torch.nn.functional.pad(panels, (0, 0, 0, -panels.shape[-2] % group))
    return padded.unflatten(-2, (-1, group)).transpose(-1, -2).contiguous()


def pack_gates(weight: torch.Tensor) -> torch.Tensor:
    """An LSTM ``w_ih`` / ``w_hh`` ``(D, K, 4C)`` packed per gate: ``(D, 4, K, C)`` -> panels ``(D, 4, C / 16, K, 16)``."""
    return pack_matrix(weight.unflatten(-1, (4, weight.shape[-1] // 4)).transpose(1, 2))


def _pad_columns(scale: torch.Tensor) -> torch.Tensor:
    # (..., N) -> (..., round_up(N, 16)): padded columns hold int8 zeros, any scale will do
    return torch.nn.functional.pad(scale, (0, -scale.shape[-1] % 16), value=1.0).contiguous()


def pack_lowp(weight: torch.Tensor, precision: str, products: str, gates: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``weight`` ``(..., K, N)`` stored in ``precision`` and packed for ``products`` arithmetic:
    ``(panels, per-column scales or None)``, the operands of the compiled ops' ``*_packed`` /
    ``*_scale`` arguments.

    ``precision``: ``"fp32"``, ``"bf16"`` or ``"int8"`` (:mod:`elmo_fast.reference.quantize`).
    ``products`` (:func:`elmo_fast.reference.lowp.products_precision`): the precision's own (bf16
    pairs, or the unsigned bytes ``q + 128`` in quads, ``csrc/cpu/lowp_gemm.h``) or ``"fp32"``
    (the stored values as k-major panels, multiplied in float32). ``gates``: an LSTM ``w_ih`` /
    ``w_hh`` ``(D, K, 4C)``, packed per gate ``(D, 4, C / 16, ...)`` with scales ``(D, 4, Cp)``.
    """
    from elmo_fast.reference.quantize import int8_columns

    pack = pack_gates if gates else pack_matrix

    if precision == "fp32":
        return pack(weight), None
    if precision == "bf16":
        panels = pack(weight.to(torch.bfloat16))
        return (interleave_k(panels, 2) if products == "bf16" else panels), None
    q, scale = int8_columns(weight)
    if gates:
        # (D, 4C) -> per gate (D, 4, C)
        scale = scale.unflatten(-1, (4, scale.shape[-1] // 4))
    if products != "int8":
        return pack(q), _pad_columns(scale)
    # the unsigned bytes q + 128 (see csrc/cpu/lowp_gemm.h)
    unsigned = (q.to(torch.int16) + 128).to(torch.uint8)
    return interleave_k(pack(unsigned.view(torch.int8)).view(torch.uint8), 4), _pad_columns(scale)


def packed_lowp(weight: torch.Tensor, precision: str, gates: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`pack_lowp` of ``weight`` for the products ``precision`` runs in now
    (:func:`~elmo_fast.reference.lowp.products_precision`), made once per weight contents and
    products (:data:`WEIGHT_CACHE`)."""
    from elmo_fast.reference.lowp import products_precision

    products = products_precision(precision)
    kind = ("cpp.pack_lowp", precision, products, gates)
    return WEIGHT_CACHE.get(weight, kind, lambda w: pack_lowp(w, precision, products, gates))


@functools.cache
def available() -> bool:
    """Whether ``elmo_fast._C`` loaded (its ops are then registered); registers shared fake kernels."""
    if not _backends.probe("cpp")[0]:
        return False

    @torch.library.register_fake("elmo_fast::pack_panels")
    def _pack_panels_fake(weight: torch.Tensor) -> torch.Tensor:
        k, n = weight.shape[-2], weight.shape[-1]
        return weight.new_empty(*weight.shape[:-2], (n + 15) // 16, k, 16)

    return True
