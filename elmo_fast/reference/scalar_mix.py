"""Reference ScalarMix: ``gamma * sum_j softmax(s)_j * layer_j``, optionally layer-normalised."""
from __future__ import annotations

from collections.abc import Sequence

import torch

LAYER_NORM_EPS: float = 1e-13


def _batch_layer_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # AllenNLP's statistics: one mean and variance over every unmasked element of the whole batch.
    m = mask.unsqueeze(-1).to(x.dtype)
    count = mask.sum().to(x.dtype) * x.shape[-1]
    mean = (x * m).sum() / count
    var = (((x * m - mean) * m) ** 2).sum() / count
    return (x - mean) / torch.sqrt(var + LAYER_NORM_EPS)


def _token_layer_norm(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + LAYER_NORM_EPS)


def scalar_mix_ref(
    layers: Sequence[torch.Tensor],
    scalars: torch.Tensor,
    gamma: torch.Tensor,
    mask: torch.Tensor | None = None,
    layer_norm: str | None = None,
) -> torch.Tensor:
    """Mix ``L + 1`` same-shaped layers ``(B, T, H)`` with softmax weights of ``scalars`` times ``gamma``.

    ``layer_norm``: None (plain mix), ``"batch"`` (AllenNLP's ``do_layer_norm=True``: statistics over
    all unmasked elements of the batch, needs ``mask`` ``(B, T)``), or ``"token"`` (each position
    normalised over its own H values, so the output does not depend on the rest of the batch).
    """
    weights = torch.softmax(scalars, dim=0)
    total = None
    for j, layer in enumerate(layers):
        if layer_norm == "batch":
            if mask is None:
                raise ValueError("layer_norm='batch' needs the mask")
            layer = _batch_layer_norm(layer, mask)
        elif layer_norm == "token":
            layer = _token_layer_norm(layer)
        elif layer_norm is not None:
            raise ValueError(f"layer_norm must be None, 'batch' or 'token', not {layer_norm!r}")
        piece = weights[j] * layer
        total = piece if total is None else total + piece
    return gamma * total
