"""Launch helpers shared by the Triton kernels.

Kernels call no ``@triton.jit`` helper functions in their loops, ``tl.sigmoid`` included: the
interpreter re-patches the language module on every such call (milliseconds each), which made the
CPU tests several times slower. sigmoid is written out as ``1 / (1 + exp(-z))`` (what
``tl.sigmoid`` computes) and tanh as ``2 sigmoid(2z) - 1`` (absolute error ~1e-7 in float32),
because libdevice's tanh does not exist in the interpreter.
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

