"""The zero-state biLM as one traceable graph: what ``torch.export`` and the ONNX exporter capture.

:class:`EmbeddingsGraph` maps int64 character ids ``(B, T, 50)`` (as :func:`elmo_fast.batch_to_ids`
makes them) to what :meth:`elmo_fast.ElmoEmbedder.batch_to_embeddings` returns for ``state="zero"``:
``embeddings`` ``(B, L + 1, T, 2P)`` float32 with padding positions exactly 0, and the ``(B, T)`` bool
``mask``. It composes the pure-PyTorch reference ops (:func:`elmo_fast.reference.bilm_ref`) with two
changes that only matter to a tracer, not to the numbers:

- the token encoder runs over all tokens at once (the reference cuts long inputs into chunks with a
  Python loop whose trip count depends on B and T);
- each biLSTM layer's time loop is one ``scan`` (:func:`lstmp_scan`), so the graph holds the
  recurrence once and runs it for however many positions the input has: B and T stay dynamic. A
  Python loop would be unrolled into the graph for the example's T alone.
"""
from __future__ import annotations

import torch
from torch import nn
from torch._higher_order_ops.scan import scan

from elmo_fast.reference.bilm import bilm_ref
from elmo_fast.reference.char_ids import length_mask, remove_sentence_boundaries
from elmo_fast.reference.lstmp import reverse_within_lengths
from elmo_fast.reference.token_encoder import char_cnn_ref, highway_ref
from elmo_fast.weights import ElmoWeights


def token_encoder_graph(char_ids: torch.Tensor, weights, activation: str = "relu") -> torch.Tensor:
    """:func:`elmo_fast.reference.token_encoder_ref` in one piece: int64 ``(..., 50)`` -> ``(..., P)``."""
    lead = char_ids.shape[:-1]
    x = char_cnn_ref(char_ids.reshape(-1, char_ids.shape[-1]), weights.char_embed, weights.conv_weights,
                     weights.conv_biases, activation)
    for layer in weights.highway:
        x = highway_ref(x, layer.w_transform, layer.b_transform, layer.w_carry, layer.b_carry)
    x = x @ weights.proj_weight + weights.proj_bias
    return x.reshape(*lead, x.shape[-1])


def lstmp_scan(
    x: torch.Tensor,
    lengths: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    bias: torch.Tensor,
    w_proj: torch.Tensor,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    *,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    residual: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`elmo_fast.reference.lstmp_ref` (same arguments, layouts and results) with the time loop as a ``scan``.

    Every row runs over all ``T`` positions; at a padding position the state is kept and the output is
    0, exactly as the reference does (it stops at the longest row instead). Eager calls work too, but
    ``scan`` outside a tracer compiles its body first: use :func:`lstmp_ref` there.
    """
    num_dirs, batch, width, _ = x.shape
    cell, proj = w_proj.shape[1], w_proj.shape[2]
    if residual and x.shape[-1] != proj:
        raise ValueError(f"residual needs input width {x.shape[-1]} == projection width {proj}")
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    h = x.new_zeros(num_dirs, batch, proj) if h0 is None else h0.to(x.dtype)
    c = x.new_zeros(num_dirs, batch, cell) if c0 is None else c0.to(x.dtype)
    order = reverse_within_lengths(lengths, width)
    if num_dirs > 1:
        backward = torch.gather(x[1], 1, order.unsqueeze(-1).expand(batch, width, x.shape[-1]))
        x = torch.cat((x[:1], backward.unsqueeze(0)))
    # [T, D, B, 4C]: the input products of every position at once
    gates_x = (torch.matmul(x, w_ih.unsqueeze(1)) + bias[:, None, None, :]).permute(2, 0, 1, 3)
    # [T, B]
    active = length_mask(lengths, width).transpose(0, 1)

    def step(carry: tuple[torch.Tensor, torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]):
        h, c = carry
        gx, act = inputs
        z = gx + torch.bmm(h, w_hh)
        i, j, f, o = z.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        if cell_clip:
            c_new = c_new.clamp(-cell_clip, cell_clip)
        h_new = torch.bmm(torch.sigmoid(o) * torch.tanh(c_new), w_proj)
        if proj_clip:
            h_new = h_new.clamp(-proj_clip, proj_clip)
        a = act.view(1, -1, 1)
        out = torch.where(a, h_new, torch.zeros((), dtype=h_new.dtype, device=h_new.device))
        return (torch.where(a, h_new, h), torch.where(a, c_new, c)), out

    (h, c), out = scan(step, (h, c), (gates_x, active))
    # [T, D, B, P] -> [D, B, T, P]
    out = out.permute(1, 2, 0, 3)
    if residual:
        out = out + x * active.transpose(0, 1).unsqueeze(-1).to(x.dtype)
    if num_dirs > 1:
        backward = torch.gather(out[1], 1, order.unsqueeze(-1).expand(batch, width, proj))
        out = torch.cat((out[:1], backward.unsqueeze(0)))
    return out, h, c


class EmbeddingsGraph(nn.Module):
    """``char_ids (B, T, 50) -> (embeddings (B, L + 1, T, 2P), mask (B, T))`` from zero state, traceable.

    The numbers of ``ElmoEmbedder(..., state="zero").batch_to_embeddings`` (up to float32 rounding),
    for any B and T, with no data-dependent Python control flow: ``torch.export`` and
    ``torch.onnx.export`` capture it with dynamic batch and sentence length.

    Args:
        weights: the model, e.g. ``load_weights(options, weights)`` or ``bilm.weights()``. The tensors
            are copied into buffers (inference only: nothing here is trained).
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
        out = bilm_ref(char_ids, self.weights(), encoder=token_encoder_graph, lstmp=lstmp_scan)
        stripped = [remove_sentence_boundaries(layer, out.mask) for layer in out.activations]
        return torch.stack([layer for layer, _ in stripped], dim=1), stripped[0][1]
