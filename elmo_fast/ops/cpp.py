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


def packed(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """:func:`pack_matrix` of ``weight``, made once per weight contents (:data:`WEIGHT_CACHE`)."""
    return WEIGHT_CACHE.get(weight, ("cpp.pack", kind), pack_matrix)


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
