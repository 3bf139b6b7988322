"""Reference LSTM with projection, cell/projection clipping and residual, both directions at once.

Weights are in bilm-tf's ``x @ W`` layout with TF gate order i, j, f, o (j = candidate), stacked
over directions D (index 0 reads left to right, index 1 right to left):

======== ================= ===================================================
name     shape             meaning
======== ================= ===================================================
x        (D, B, T, Pin)    layer input per direction, padded on the right
lengths  (B,)              tokens per row (<= T); positions >= length are padding
w_ih     (D, Pin, 4C)      input part of ``W_0``
w_hh     (D, P, 4C)        recurrent part of ``W_0``
bias     (D, 4C)           ``B`` with the +1 forget bias already added
w_proj   (D, C, P)         ``W_P_0``
h0, c0   (D, B, P/C)       initial state (zeros when None)
======== ================= ===================================================

Each row runs over exactly its own ``length`` positions; the backward direction starts at the row's
last real position. Padding outputs are exactly 0 and never touch the state.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .char_ids import length_mask

# Positions whose input projections are computed together: bounds memory for very long sentences
# (the original model needs 128 KiB per position and direction for them).
TIME_CHUNK: int = 256


def reverse_within_lengths(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Index ``(B, width)`` that reverses each row's first ``length`` positions and keeps the rest.

    It is its own inverse, so the same index maps back.
    """
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    lens = lengths.unsqueeze(1)
    return torch.where(positions < lens, lens - 1 - positions, positions)


def lstmp_ref(
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
    product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one LSTM-with-projection layer in D directions over a padded batch.

    Returns ``(out, h_n, c_n)``: ``out`` ``(D, B, T, P)`` (plus ``x`` at real positions when
    ``residual``), and the state after each row's last processed position, ``(D, B, P)`` and
    ``(D, B, C)``. The clipped cell is what is carried; the residual is not part of the state.
    ``product(a, w)``: the three matrix products (default ``torch.matmul``); see
    :func:`elmo_fast.reference.lowp.product` for reduced-precision ones.
    """
    mm = torch.matmul if product is None else product
    num_dirs, batch, width, _ = x.shape
    cell = w_proj.shape[1]
    proj = w_proj.shape[2]
    if residual and x.shape[-1] != proj:
        raise ValueError(f"residual needs input width {x.shape[-1]} == projection width {proj}")
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    h = x.new_zeros(num_dirs, batch, proj) if h0 is None else h0.to(x.dtype)
    c = x.new_zeros(num_dirs, batch, cell) if c0 is None else c0.to(x.dtype)

    # Put the backward direction in reading order: row b's position s is its token len_b - 1 - s.
    order = reverse_within_lengths(lengths, width)
    gather_index = order.unsqueeze(-1).expand(batch, width, x.shape[-1])
    xs = list(x.unbind(0))
    if num_dirs > 1:
        xs[1] = torch.gather(xs[1], 1, gather_index)
    xs = torch.stack(xs)

    out = x.new_zeros(num_dirs, batch, width, proj)
    steps = min(int(lengths.max()) if batch else 0, width)
    for s in range(steps):
        if s % TIME_CHUNK == 0:
            # Input GEMM for a block of positions at once: [D, B, TIME_CHUNK, 4C]
            gates_x = mm(xs[:, :, s : s + TIME_CHUNK], w_ih.unsqueeze(1)) + bias[:, None, None, :]
        # [D, B, 4C]
        z = gates_x[:, :, s % TIME_CHUNK] + mm(h, w_hh)
        i, j, f, o = z.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        if cell_clip:
            c_new = c_new.clamp(-cell_clip, cell_clip)
        h_new = mm(torch.sigmoid(o) * torch.tanh(c_new), w_proj)
        if proj_clip:
            h_new = h_new.clamp(-proj_clip, proj_clip)
        active = (s < lengths).view(1, batch, 1)
        h = torch.where(active, h_new, h)
        c = torch.where(active, c_new, c)
        out[:, :, s] = torch.where(active, h_new, torch.zeros((), dtype=x.dtype, device=x.device))

    if residual:
        valid = length_mask(lengths, width).unsqueeze(-1)
        out = out + xs * valid.to(x.dtype)
    if num_dirs > 1:
        outs = list(out.unbind(0))
        outs[1] = torch.gather(outs[1], 1, order.unsqueeze(-1).expand(batch, width, proj))
        out = torch.stack(outs)
    return out, h, c
