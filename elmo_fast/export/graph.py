"""The zero-state biLM as one traceable module: what ``torch.export`` and the ONNX exporter capture.

:class:`EmbeddingsGraph` maps int64 character ids ``(B, T, 50)`` (as :func:`elmo_fast.batch_to_ids`
makes them) to what :meth:`elmo_fast.ElmoEmbedder.batch_to_embeddings` returns for ``state="zero"``:
``embeddings`` ``(B, L + 1, T, 2P)`` float32 with padding positions exactly 0, and the ``(B, T)`` bool
``mask``. It is the pure-PyTorch reference (:func:`elmo_fast.reference.bilm_ref`), which under a
tracer runs each biLSTM layer's time loop as one ``scan`` (:func:`elmo_fast.reference.lstmp_scan`)
and the token encoder in one piece: the traced graph has no data-dependent control flow, and batch
size and sentence length stay dynamic.
"""
from __future__ import annotations

import torch
from torch import nn

from elmo_fast.reference.bilm import bilm_ref
from elmo_fast.reference.char_ids import remove_sentence_boundaries
from elmo_fast.weights import ElmoWeights


class EmbeddingsGraph(nn.Module):
    """``char_ids (B, T, 50) -> (embeddings (B, L + 1, T, 2P), mask (B, T))`` from zero state, traceable.

    The numbers of ``ElmoEmbedder(..., state="zero").batch_to_embeddings`` (up to float32 rounding)
    for any B and T; ``torch.export`` and ``torch.onnx.export`` capture it with both dynamic.

    Args:
        weights: the model, e.g. ``load_weights(options, weights)`` or ``bilm.weights()``. The tensors
            are copied into float32 buffers (inference only: nothing here is trained).
    """

    def __init__(self, weights: ElmoWeights) -> None:
        super().__init__()
        self.options = weights.options
        for name, tensor in weights.tensors().items():
            self.register_buffer(name, tensor.detach().float().clone())

    def weights(self) -> ElmoWeights:
        """The buffers as an :class:`ElmoWeights` (shares storage)."""
        return ElmoWeights.from_tensors(self.options, dict(self.named_buffers()))

    def forward(self, char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed int64 character ids; see the class docstring."""
        out = bilm_ref(char_ids, self.weights())
        stripped = [remove_sentence_boundaries(layer, out.mask) for layer in out.activations]
        return torch.stack([layer for layer, _ in stripped], dim=1), stripped[0][1]
