"""``ScalarMix``: a learned softmax-weighted sum of layers times a scale gamma (AllenNLP's names)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from elmo_fast.ops.scalar_mix import scalar_mix


class ScalarMix(nn.Module):
    """``gamma * sum_j softmax(s)_j * layer_j``.

    Args:
        mixture_size: number of layers mixed (L + 1).
        do_layer_norm: ``False``; ``True`` (AllenNLP: normalise each layer over all unmasked
            elements of the batch, so a sentence's output depends on its batch); or ``"token"``
            (normalise each position on its own; batch-independent).
        initial_scalar_parameters: initial s (default zeros).
        trainable: whether s and gamma are learned.

    State-dict keys: ``scalar_parameters.{j}`` (shape ``(1,)``) and ``gamma`` (shape ``(1,)``).
    """

    def __init__(
        self,
        mixture_size: int,
        do_layer_norm: bool | str = False,
        initial_scalar_parameters: Sequence[float] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        if initial_scalar_parameters is None:
            initial_scalar_parameters = [0.0] * mixture_size
        if len(initial_scalar_parameters) != mixture_size:
            raise ValueError(
                f"scalar_mix_parameters has {len(initial_scalar_parameters)} values, the model has {mixture_size} layers"
            )
        if do_layer_norm not in (False, True, "token"):
            raise ValueError(f"do_layer_norm must be False, True or 'token', not {do_layer_norm!r}")
        self.mixture_size = mixture_size
        self.layer_norm: str | None = {False: None, True: "batch", "token": "token"}[do_layer_norm]
        self.scalar_parameters = nn.ParameterList(
            [nn.Parameter(torch.tensor([float(v)]), requires_grad=trainable) for v in initial_scalar_parameters]
        )
        self.gamma = nn.Parameter(torch.tensor([1.0]), requires_grad=trainable)

    def forward(self, tensors: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix ``tensors`` (each ``(B, T, H)``); ``mask`` ``(B, T)`` is needed for batch layer norm."""
        if len(tensors) != self.mixture_size:
            raise ValueError(f"{len(tensors)} tensors given, mixture_size is {self.mixture_size}")
        scalars = torch.cat(list(self.scalar_parameters))
        return scalar_mix(tensors, scalars, self.gamma, mask, self.layer_norm)
