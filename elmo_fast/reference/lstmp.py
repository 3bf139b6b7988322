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

Under a tracer (``torch.compile``, ``torch.export``, the ONNX exporter) :func:`lstmp_ref` runs
:func:`lstmp_scan`, the same recurrence as one ``scan`` over all positions: the graph then holds the
time loop once, for any sentence length, instead of a loop unrolled for one length and a
data-dependent step count (``lengths.max()``) the tracer cannot follow.
"""
from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable

import torch

from .char_ids import length_mask

# Positions whose input projections are computed together: bounds memory for very long sentences
# (the original model needs 128 KiB per position and direction for them).
TIME_CHUNK: int = 256

# what lstmp_ref hands lstmp_scan (a namedtuple: dynamo traces its construction without a graph break,
# a types.SimpleNamespace it does not)
_ScanLayer = namedtuple("_ScanLayer", "w_ih w_hh bias w_proj cell_clip proj_clip residual")


def reverse_within_lengths(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Index ``(B, width)`` that reverses each row's first ``length`` positions and keeps the rest.

    It is its own inverse, so the same index maps back.
    """
    positions = torch.arange(width, device=lengths.device).unsqueeze(0)
    lens = lengths.unsqueeze(1)
    return torch.where(positions < lens, lens - 1 - positions, positions)


def _cell(
    z: torch.Tensor,
    c: torch.Tensor,
    w_proj: torch.Tensor,
    cell_clip: float | None,
    proj_clip: float | None,
    mm: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = torch.bmm,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step from the gate pre-activations ``z`` ``(D, B, 4C)`` and cell ``c``: the new ``(h, c)`` (clipped).

    ``mm``: the projection product (see ``product`` of :func:`lstmp_ref`).
    """
    i, j, f, o = z.chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
    if cell_clip:
        c_new = c_new.clamp(-cell_clip, cell_clip)
    h_new = mm(torch.sigmoid(o) * torch.tanh(c_new), w_proj)
    if proj_clip:
        h_new = h_new.clamp(-proj_clip, proj_clip)
    return h_new, c_new


def _start(
    x: torch.Tensor, lengths: torch.Tensor, w_proj: torch.Tensor, h0: torch.Tensor | None, c0: torch.Tensor | None, residual: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checks and initial values of a layer: ``(xs, lengths, h, c, order)``.

    ``xs`` is ``x`` with the backward direction in reading order (row b's position s holds its token
    ``len_b - 1 - s``; ``order`` is that index, its own inverse), ``lengths`` int64, ``h``/``c`` the
    initial state (zeros when None).
    """
    num_dirs, batch, width, _ = x.shape
    cell, proj = w_proj.shape[1], w_proj.shape[2]
    if residual and x.shape[-1] != proj:
        raise ValueError(f"residual needs input width {x.shape[-1]} == projection width {proj}")
    lengths = lengths.to(device=x.device, dtype=torch.int64)
    h = x.new_zeros(num_dirs, batch, proj) if h0 is None else h0.to(x.dtype)
    c = x.new_zeros(num_dirs, batch, cell) if c0 is None else c0.to(x.dtype)
    order = reverse_within_lengths(lengths, width)
    xs = list(x.unbind(0))
    if num_dirs > 1:
        xs[1] = torch.gather(xs[1], 1, order.unsqueeze(-1).expand(batch, width, x.shape[-1]))
    return torch.stack(xs), lengths, h, c, order


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
    projection_product: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one LSTM-with-projection layer in D directions over a padded batch.

    Returns ``(out, h_n, c_n)``: ``out`` ``(D, B, T, P)`` (plus ``x`` at real positions when
    ``residual``), and the state after each row's last processed position, ``(D, B, P)`` and
    ``(D, B, C)``. The clipped cell is what is carried; the residual is not part of the state.
    ``product(a, w)``: the input and recurrent matrix products (default ``torch.matmul``), and the
    projection's unless ``projection_product`` is given; see :func:`elmo_fast.reference.lowp.product`
    for reduced-precision ones.
    """
    if product is None and projection_product is None and torch.compiler.is_compiling():
        layer = _ScanLayer(w_ih, w_hh, bias, w_proj, cell_clip, proj_clip, residual)
        return lstmp_scan(x, lengths, layer, h0, c0)
    mm = torch.matmul if product is None else product
    mm_proj = mm if projection_product is None else projection_product
    num_dirs, batch, width, _ = x.shape
    proj = w_proj.shape[2]
    xs, lengths, h, c, order = _start(x, lengths, w_proj, h0, c0, residual)

    out = x.new_zeros(num_dirs, batch, width, proj)
    steps = min(int(lengths.max()) if batch else 0, width)
    for s in range(steps):
        if s % TIME_CHUNK == 0:
            # Input GEMM for a block of positions at once: [D, B, TIME_CHUNK, 4C]
            gates_x = mm(xs[:, :, s : s + TIME_CHUNK], w_ih.unsqueeze(1)) + bias[:, None, None, :]
        # [D, B, 4C]
        h_new, c_new = _cell(gates_x[:, :, s % TIME_CHUNK] + mm(h, w_hh), c, w_proj, cell_clip, proj_clip, mm_proj)
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


def lstmp_scan(
    x: torch.Tensor,
    lengths: torch.Tensor,
    layer,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`lstmp_ref` (same layouts and results) with the time loop as one ``scan``.

    ``layer`` is any object with the attributes ``w_ih``, ``w_hh``, ``bias``, ``w_proj``,
    ``cell_clip``, ``proj_clip`` and ``residual`` (the arguments of :func:`lstmp_ref` of those
    names), such as ``elmo_fast.ops.lstmp.LstmpLayer``.
    Every row runs over all ``T`` positions (T >= 1); at a padding position the state is kept and the
    output is 0, as in the loop (which stops at the longest row instead). The input products of all
    positions are one ``matmul``. :func:`lstmp_ref` calls this under a tracer; in eager mode ``scan``
    compiles its body on first use, so eager code calls :func:`lstmp_ref`.
    """
    w_ih, w_hh, bias, w_proj = layer.w_ih, layer.w_hh, layer.bias, layer.w_proj
    cell_clip, proj_clip, residual = layer.cell_clip, layer.proj_clip, layer.residual
    # imported here: torch._higher_order_ops.scan is newer than the oldest torch elmo_fast supports
    from torch._higher_order_ops.scan import scan

    num_dirs, batch, width, _ = x.shape
    proj = w_proj.shape[2]
    x, lengths, h, c, order = _start(x, lengths, w_proj, h0, c0, residual)
    # [T, D, B, 4C]: the input products of every position at once
    gates_x = (torch.matmul(x, w_ih.unsqueeze(1)) + bias[:, None, None, :]).permute(2, 0, 1, 3)
    # [T, B]
    active = length_mask(lengths, width).transpose(0, 1)

    def step(carry: tuple[torch.Tensor, torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]):
        h, c = carry
        gx, act = inputs
        h_new, c_new = _cell(gx + torch.bmm(h, w_hh), c, w_proj, cell_clip, proj_clip)
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
