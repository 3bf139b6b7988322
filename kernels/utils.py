"""Launch helpers shared by the Triton kernels.

Kernels call no ``@triton.jit`` helper functions in their loops, ``tl.sigmoid`` included: the
interpreter re-patches the language module on every such call (milliseconds each), which made the
CPU tests several times slower. sigmoid is written out as ``1 / (1 + exp(-z))`` (what
``tl.sigmoid`` computes). tanh is the one helper, :func:`tanh_f32` (called twice per LSTM step),
because libdevice's tanh does not exist in the interpreter and the short form
``2 sigmoid(2z) - 1`` loses relative accuracy near 0 (its error is ~1e-7 absolute however small z is).
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` at start)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def dot_flags(dtype: torch.dtype) -> dict[str, object]:
    """Constexpr arguments ``DOT_DTYPE`` and ``DOT_PRECISION`` for ``tl.dot`` on operands of ``dtype``.

    Kernels cast both operands to ``DOT_DTYPE`` (a no-op on a GPU) and accumulate in float32.
    float32 products use ``ieee`` precision: the float32 path promises <= 1e-5 against the
    reference, which tf32 (Triton's default, ~3e-4) cannot keep. Under the interpreter, bf16/fp16
    operands are widened to float32, because the interpreter multiplies the raw bit patterns of
    bf16 (triton-lang/triton#11584); that is the same product with float32 accumulation that the
    tensor cores compute on a GPU.
    """
    if dtype not in _TL_DTYPES:
        raise TypeError(f"Triton kernels take float32, bfloat16 or float16 tensors, got {dtype}")
    dot_dtype = tl.float32 if interpreting() else _TL_DTYPES[dtype]
    return {"DOT_DTYPE": dot_dtype, "DOT_PRECISION": "ieee" if dtype == torch.float32 else "tf32"}


def block(n: int, lo: int = 16, hi: int = 128) -> int:
    """A power-of-two block size for a dimension of ``n``: at least ``lo`` (tl.dot needs 16), at most ``hi``."""
    return max(lo, min(hi, triton.next_power_of_2(max(n, 1))))



@triton.jit
def tanh_f32(z):
    """tanh with small relative error over the whole range, in float32 (the split of Cephes' tanhf,
    as in ``csrc/cpu/vec.h``): ``z + z^3 P(z^2)`` for ``|z| < 0.625``, else
    ``sign(z) (1 - 2 / (exp(2|z|) + 1))``. The same formula runs under the interpreter and on a GPU."""
    b_z = tl.abs(z)
    b_s = b_z * b_z
    b_p = (((-5.70498872745e-3 * b_s + 2.06390887954e-2) * b_s - 5.37397155531e-2) * b_s + 1.33314422036e-1) * b_s - 3.33332819422e-1
    b_t = tl.where(b_z < 0.625, b_p * b_s * b_z + b_z, 1 - 2 / (tl.exp(2 * b_z) + 1))
    return tl.where(z < 0, -b_t, b_t)
