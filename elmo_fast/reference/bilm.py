"""Reference biLM: token encoder, then ``n_layers`` biLSTM layers; returns the ``L + 1`` layers.

The two ops it composes are parameters so that :class:`elmo_fast.modules.BiLm` runs the same
composition with a faster backend; with the defaults this is the pure reference.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .char_ids import MAX_CHARS, add_sentence_boundaries
from .lstmp import lstmp_ref
from .token_encoder import token_encoder_ref


class BiLmOutput(NamedTuple):
    """What the biLM returns for a batch of ``B`` sentences padded to ``T`` tokens.

    ``activations``: ``L + 1`` tensors ``(B, T + 2, 2P)`` with boundaries: ``[e ; e]`` masked, then
    each biLSTM layer (forward half, backward half). ``mask``: ``(B, T + 2)`` bool.
    ``token_embedding``: ``(B, T + 2, P)``, the raw encoder output (not masked).
    ``final_h`` ``(L, B, 2P)`` and ``final_c`` ``(L, B, 2C)``: per layer, forward state after the end
    token ; backward state after the start token (AllenNLP's stored-state layout).
    """

    activations: list[torch.Tensor]
    mask: torch.Tensor
    token_embedding: torch.Tensor
    final_h: torch.Tensor
    final_c: torch.Tensor


def _split_dirs(state: torch.Tensor, width: int) -> torch.Tensor:
    # (B, 2W) -> (2, B, W)
    return torch.stack((state[:, :width], state[:, width:]))


def bilm_ref(
    char_ids: torch.Tensor,
    weights,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    *,
    token_embedding: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    encoder: Callable[..., torch.Tensor] = token_encoder_ref,
    lstmp: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = lstmp_ref,
) -> BiLmOutput:
    """Run the biLM on int64 char ids ``(B, T, 50)`` with an :class:`~elmo_fast.weights.ElmoWeights`.

    ``h0`` ``(L, B, 2P)`` / ``c0`` ``(L, B, 2C)``: initial state per layer (zeros when None).
    ``token_embedding`` + ``mask``: precomputed ``(B, T + 2, P)`` embeddings with boundaries and
    their mask (the cached-vocabulary path); ``char_ids`` is then ignored. A model with a word table
    (``options.n_words``) takes ``(B, T, 51)`` ids: slot 50 is the word id, whose row of
    ``char_cnn.word_proj`` is added to the token embedding.
    """
    opts = weights.options
    if token_embedding is None:
        token_mask = (char_ids[..., :MAX_CHARS] > 0).any(dim=-1)
        ids, mask = add_sentence_boundaries(char_ids, token_mask, opts.bos_ids, opts.eos_ids)
        token_embedding = encoder(ids[..., :MAX_CHARS].contiguous(), weights.char_cnn, opts.activation)
        if opts.n_words:
            token_embedding = token_embedding + weights.char_cnn.word_proj[ids[..., MAX_CHARS]]
    elif mask is None:
        raise ValueError("a precomputed token_embedding needs its mask")
    lengths = mask.sum(dim=1)
    e = token_embedding * mask.unsqueeze(-1).to(token_embedding.dtype)
    activations = [torch.cat((e, e), dim=-1)]
    x = torch.stack((e, e))
    finals_h, finals_c = [], []
    for layer, lw in enumerate(weights.lstm):
        out, h_n, c_n = lstmp(
            x,
            lengths,
            lw.w_ih,
            lw.w_hh,
            lw.bias,
            lw.w_proj,
            None if h0 is None else _split_dirs(h0[layer], opts.projection_dim),
            None if c0 is None else _split_dirs(c0[layer], opts.cell_dim),
            cell_clip=opts.cell_clip,
            proj_clip=opts.proj_clip,
            residual=layer > 0 and opts.use_skip_connections,
        )
        activations.append(torch.cat((out[0], out[1]), dim=-1))
        finals_h.append(torch.cat((h_n[0], h_n[1]), dim=-1))
        finals_c.append(torch.cat((c_n[0], c_n[1]), dim=-1))
        x = out
    return BiLmOutput(activations, mask, token_embedding, torch.stack(finals_h), torch.stack(finals_c))
