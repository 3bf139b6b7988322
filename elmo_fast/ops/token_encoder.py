"""``token_encoder``: character ids -> token embeddings (char-CNN, highway layers, projection).

Semantics: :func:`elmo_fast.reference.token_encoder_ref`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from elmo_fast.reference.token_encoder import token_encoder_ref

_IMPLS: dict[str, Callable[..., torch.Tensor]] = {"ref": token_encoder_ref}


def token_encoder(char_ids: torch.Tensor, weights, activation: str = "relu", *, backend: str = "ref") -> torch.Tensor:
    """Embed int64 ``(..., 50)`` character ids as ``(..., P)`` with a :class:`~elmo_fast.weights.CharCNNWeights`."""
    impl = _IMPLS.get(backend, token_encoder_ref)
    return impl(char_ids, weights, activation)
