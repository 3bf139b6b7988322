"""``token_encoder``: character ids -> token embeddings (char-CNN, highway layers, projection).

Semantics: :func:`elmo_fast.reference.token_encoder_ref`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from elmo_fast.reference.token_encoder import token_encoder_ref

_IMPLS: dict[str, Callable[..., torch.Tensor]] = {"ref": token_encoder_ref}


def _token_encoder_triton(char_ids: torch.Tensor, weights, activation: str = "relu") -> torch.Tensor:
    """Triton char-CNN and highway kernels, then the projection as one ``addmm`` (forward only;
    imported on first use). When autograd records (a weight requires grad), the reference runs."""
    tensors = [weights.char_embed, *weights.conv_weights, *weights.conv_biases, weights.proj_weight, weights.proj_bias]
    tensors += [t for hw in weights.highway for t in (hw.w_transform, hw.b_transform, hw.w_carry, hw.b_carry)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return token_encoder_ref(char_ids, weights, activation)
    from elmo_fast.kernels.char_cnn import char_cnn_fwd, packed_conv_weights
    from elmo_fast.kernels.highway import highway_fwd

    lead = char_ids.shape[:-1]
    x = char_cnn_fwd(char_ids.reshape(-1, char_ids.shape[-1]), weights.char_embed,
                     packed_conv_weights(weights.conv_weights, weights.conv_biases, weights.char_embed.dtype), activation)
    for layer in weights.highway:
        x = highway_fwd(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry)
    x = torch.addmm(weights.proj_bias.to(x.dtype), x, weights.proj_weight.to(x.dtype))
    return x.reshape(*lead, x.shape[-1])


_IMPLS["triton"] = _token_encoder_triton


def token_encoder(char_ids: torch.Tensor, weights, activation: str = "relu", *, backend: str = "ref") -> torch.Tensor:
    """Embed int64 ``(..., 50)`` character ids as ``(..., P)`` with a :class:`~elmo_fast.weights.CharCNNWeights`."""
    impl = _IMPLS.get(backend, token_encoder_ref)
    return impl(char_ids, weights, activation)
