"""``scalar_mix``: ``gamma * sum_j softmax(s)_j * layer_j``, optionally layer-normalised.

Semantics: :func:`elmo_fast.reference.scalar_mix_ref`. Only the reference is registered: the mix is
a handful of element-wise PyTorch ops that no backend has beaten yet; a backend adds its own with
``registry.register("scalar_mix", backend, fn)`` with the reference's arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from elmo_fast.ops import registry
from elmo_fast.reference.scalar_mix import scalar_mix_ref

registry.define(
    "scalar_mix", scalar_mix_ref, tensors=lambda layers, scalars, gamma, mask, layer_norm: (*layers, scalars, gamma)
)


def scalar_mix(
    layers: Sequence[torch.Tensor],
    scalars: torch.Tensor,
    gamma: torch.Tensor,
    mask: torch.Tensor | None = None,
    layer_norm: str | None = None,
    *,
    backend: str = "ref",
) -> torch.Tensor:
    """Mix ``L + 1`` same-shaped layers ``(B, T, H)``; arguments as :func:`~elmo_fast.reference.scalar_mix_ref`."""
    return registry.call("scalar_mix", backend, layers, scalars, gamma, mask, layer_norm)
