"""The language model that pretraining optimises: elmo_fast's biLM plus a softmax shared by both
directions.

The network is the inference network: :class:`elmo_fast.modules.BiLm` holds the parameters
(:class:`~elmo_fast.weights.ElmoWeights` names and layouts) and every forward pass composes the
same ops (:func:`elmo_fast.ops.token_encoder.token_encoder`, :func:`elmo_fast.ops.lstmp.lstmp`) that embedding runs, so
an exported model computes exactly what was trained.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from elmo_fast.modules.bilm import BiLm
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.ops.token_encoder import token_encoder
from elmo_fast.reference.char_ids import length_mask
from elmo_fast.reference.lstmp import reverse_within_lengths
from elmo_fast.train.data import Window
from elmo_fast.train.softmax import full_softmax_nll, sampled_softmax_nll
from elmo_fast.weights import N_CHAR_ROWS, CharCNNWeights, ElmoOptions, ElmoWeights, HighwayWeights, LstmLayerWeights

LstmState = tuple[torch.Tensor, torch.Tensor]
"""Carried state: ``h`` ``(L, 2, B, P)`` and ``c`` ``(L, 2, B, C)`` (direction 0 forward, 1 backward)."""


def initial_weights(options: ElmoOptions, seed: int) -> ElmoWeights:
    """Fresh weights with bilm-tf's initialisers.

    char embeddings U(-1, 1); conv kernels U(-0.05, 0.05) for relu (Kim et al.), N(0, 1/(w d)) for
    tanh; highway and projection N(0, 1/F) with the carry bias at -2 (the layer starts close to the
    identity); LSTM matrices Glorot-uniform, biases 0 plus TF's forget bias 1; biases 0 elsewhere.
    """
    g = torch.Generator().manual_seed(seed)

    def uniform(limit: float, *shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=g) * 2.0 - 1.0) * limit

    def normal(std: float, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    d, f, p, c = options.char_embed_dim, options.n_filters, options.projection_dim, options.cell_dim
    char_embed = uniform(1.0, N_CHAR_ROWS, d)
    char_embed[0] = 0.0
    if options.activation == "relu":
        convs = [uniform(0.05, n, d, w) for w, n in options.filters]
    else:
        convs = [normal(math.sqrt(1.0 / (w * d)), n, d, w) for w, n in options.filters]
    highway = [
        HighwayWeights(normal(math.sqrt(1.0 / f), f, f), torch.zeros(f), normal(math.sqrt(1.0 / f), f, f), torch.full((f,), -2.0))
        for _ in range(options.n_highway)
    ]
    cnn = CharCNNWeights(
        char_embed=char_embed,
        conv_weights=convs,
        conv_biases=[torch.zeros(n) for _, n in options.filters],
        highway=highway,
        proj_weight=normal(math.sqrt(1.0 / f), f, p),
        proj_bias=torch.zeros(p),
    )
    layers = []
    w0_limit, wp_limit = math.sqrt(6.0 / (2 * p + 4 * c)), math.sqrt(6.0 / (c + p))
    for _ in range(options.n_layers):
        w0 = uniform(w0_limit, 2, 2 * p, 4 * c)
        bias = torch.zeros(2, 4 * c)
        bias[:, 2 * c : 3 * c] = 1.0
        layers.append(LstmLayerWeights(w0[:, :p].contiguous(), w0[:, p:].contiguous(), bias, uniform(wp_limit, 2, c, p)))
    return ElmoWeights(options, cnn, layers)


class BiLanguageModel(nn.Module):
    """Forward and backward LMs over one token encoder, with one softmax ``(V, P)`` for both.

    Args:
        weights: the biLM's starting weights (:func:`initial_weights` or a loaded model).
        vocab_size: V, the softmax size.
        backend: the op backend for training (``"ref"``: plain autograd PyTorch; a backend without
            a backward pass cannot train).
        seed: seeds the softmax initialisation N(0, 1/P).
    """

    def __init__(self, weights: ElmoWeights, vocab_size: int, *, backend: str = "ref", seed: int = 0) -> None:
        super().__init__()
        self.bilm = BiLm(weights, requires_grad=True, state="zero", backend=backend)
        p = weights.options.projection_dim
        g = torch.Generator().manual_seed(seed + 1)
        self.softmax_weight = nn.Parameter(torch.randn(vocab_size, p, generator=g) / math.sqrt(p))
        self.softmax_bias = nn.Parameter(torch.zeros(vocab_size))

    @property
    def options(self) -> ElmoOptions:
        return self.bilm.options

    def weights(self) -> ElmoWeights:
        """The biLM's current parameters (shares storage; export with :func:`elmo_fast.weights.save_weights`)."""
        return self.bilm.weights()

    def zero_state(self, batch_size: int) -> LstmState:
        """All-zero carried state for ``batch_size`` rows."""
        o = self.options
        h = self.softmax_weight.new_zeros(o.n_layers, 2, batch_size, o.projection_dim)
        c = self.softmax_weight.new_zeros(o.n_layers, 2, batch_size, o.cell_dim)
        return h, c

    def hidden(
        self, window: Window, char_ids: torch.Tensor, state: LstmState, dropout: float = 0.0
    ) -> tuple[torch.Tensor, LstmState]:
        """Top-layer outputs ``(2, B, W, P)`` in each direction's reading order, and the new state.

        ``char_ids`` ``(n_types, 50)``: characters of every type id in ``window.inputs``. Dropout
        (training mode only) applies to every LSTM layer's input and to the top output, as in bilm-tf.
        """
        w = self.weights()
        opts = w.options
        device = self.softmax_weight.device
        backend = self.bilm.resolved_backend(device)
        drop = dropout if self.training else 0.0
        # The encoder runs once per distinct type in the window (both directions share it).
        types, inverse = torch.unique(window.inputs, return_inverse=True)
        type_embedding = token_encoder(char_ids[types].to(device, torch.int64), w.char_cnn, opts.activation, backend=backend)
        e = type_embedding[inverse.to(device)]
        lengths = window.lengths.to(device)
        width = e.shape[2]
        # lstmp reads direction 1 right to left within each row's length: store it reversed.
        order = reverse_within_lengths(lengths, width).unsqueeze(-1).expand(-1, -1, opts.projection_dim)
        x = torch.stack((e[0], torch.gather(e[1], 1, order)))
        h0, c0 = state
        final_h, final_c = [], []
        for layer, lw in enumerate(w.lstm):
            x, h_n, c_n = lstmp(
                F.dropout(x, drop),
                lengths,
                lw.w_ih,
                lw.w_hh,
                lw.bias,
                lw.w_proj,
                h0[layer],
                c0[layer],
                cell_clip=opts.cell_clip,
                proj_clip=opts.proj_clip,
                residual=layer > 0 and opts.use_skip_connections,
                backend=backend,
            )
            final_h.append(h_n)
            final_c.append(c_n)
        top = F.dropout(x, drop)
        top = torch.stack((top[0], torch.gather(top[1], 1, order)))
        return top, (torch.stack(final_h), torch.stack(final_c))

    def window_nll(
        self,
        window: Window,
        char_ids: torch.Tensor,
        state: LstmState,
        *,
        dropout: float = 0.0,
        samples: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, int, LstmState]:
        """Summed negative log-likelihood per direction ``(2,)``, the number of predictions per
        direction, and the new carried state. ``samples``: negative ids for the sampled softmax
        (None: full softmax)."""
        top, new_state = self.hidden(window, char_ids, state, dropout)
        device = top.device
        mask = length_mask(window.lengths.to(device), top.shape[2])
        # [2, N, P] and [2, N]
        hidden = top[:, mask]
        targets = window.targets.to(device)[:, mask]
        n = hidden.shape[1]
        flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        if samples is None:
            nll = full_softmax_nll(flat_h, flat_t, self.softmax_weight, self.softmax_bias)
        else:
            nll = sampled_softmax_nll(flat_h, flat_t, self.softmax_weight, self.softmax_bias, samples.to(device))
        return nll.reshape(2, n).sum(dim=1), n, new_state
