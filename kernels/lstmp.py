"""Triton LSTM with projection (``lstmp``): two fused kernels per time step, both directions at once.

Semantics and layouts are those of :func:`elmo_fast.reference.lstmp_ref`. The input product
``x @ w_ih`` for every position is one batched matrix product before the loop; then each step runs

1. ``lstmp_fwd_cell_kernel``: a ``[BB, BC]`` tile of ``h_{t-1} @ w_hh`` for each of the four gates
   of a block of cells, and in its epilogue the input product and bias, the gates, the clipped
   float32 cell update and ``a = sigmoid(o) * tanh(c)``;
2. ``lstmp_fwd_proj_kernel``: a ``[BB, BP]`` tile of ``a @ w_proj``, the projection clip, the
   residual, and the writes of the output, the carried ``h`` and the final state.

One launch covers both directions (grid axis 2) and every batch row. Per-row lengths are handled in
the kernels: at step ``s`` a row is active while ``s < length``; the forward direction reads and
writes position ``s``, the backward one the row's own position ``length - 1 - s``; an inactive row
writes 0 at position ``s`` and leaves its state alone, so every output position is written exactly
once and the loop needs no per-step decision on the host. No program reads what another program of
the same launch writes, so the kernels are correct however the programs are scheduled.

On CUDA the whole layer (input product and time loop) is captured once per shape bucket in a CUDA
graph and replayed, so a step costs two graph nodes rather than two Python launches.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from elmo_fast.ops.registry import WEIGHT_CACHE

from .utils import block, dot_flags, tanh_f32


@triton.heuristics({
    "USE_INITIAL_STATE": lambda args: args["h0"] is not None,
    "STORE_FINAL_STATE": lambda args: args["ct"] is not None,
    "USE_CELL_CLIP": lambda args: args["cell_clip"] > 0,
})
@triton.jit(do_not_specialize=["s", "T"])
def lstmp_fwd_cell_kernel(
    gx,
    lengths,
    w_hh,
    bias,
    h,
    c,
    h0,
    c0,
    ct,
    a,
    cell_clip,
    s,
    T,
    B,
    C: tl.constexpr,
    P: tl.constexpr,
    BB: tl.constexpr,
    BC: tl.constexpr,
    BK: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr,
    STORE_FINAL_STATE: tl.constexpr,
    USE_CELL_CLIP: tl.constexpr,
):
    i_c, i_b, i_d = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    o_c = i_c * BC + tl.arange(0, BC)
    o_b = i_b * BB + tl.arange(0, BB).to(tl.int64)
    m_c = o_c < C
    m_b = o_b < B
    b_len = tl.minimum(tl.load(lengths + o_b, mask=m_b, other=0), T)
    b_active = m_b & (s < b_len)
    # the backward direction (d = 1) reads each row from its own last position
    b_t = tl.where(i_d == 1, tl.where(b_active, b_len - 1 - s, s), s)
    # row of each batch entry in the [D, B, *] state tensors
    o_state = i_d * B + o_b

    b_i = tl.zeros([BB, BC], dtype=tl.float32)
    b_j = tl.zeros([BB, BC], dtype=tl.float32)
    b_f = tl.zeros([BB, BC], dtype=tl.float32)
    b_o = tl.zeros([BB, BC], dtype=tl.float32)
    p_h = h + o_state * P
    # h_{-1} is zero unless an initial state is given: step 0 then skips the recurrent product
    b_run = tl.max(b_active.to(tl.int32)) > 0
    if USE_INITIAL_STATE:
        if s == 0:
            p_h = h0 + o_state * P
    else:
        b_run = b_run & (s > 0)
    if b_run:
        for k in range(0, P, BK):
            o_k = k + tl.arange(0, BK)
            m_k = o_k < P
            # [BB, BK]
            b_h = tl.load(p_h[:, None] + o_k[None, :], mask=b_active[:, None] & m_k[None, :], other=0).to(DOT_DTYPE)
            # [BK, BC], gate g at column offset g * C
            p_w = w_hh + (i_d * P + o_k[:, None]) * (4 * C) + o_c[None, :]
            m_w = m_k[:, None] & m_c[None, :]
            b_i = tl.dot(b_h, tl.load(p_w, mask=m_w, other=0).to(DOT_DTYPE), b_i, input_precision=DOT_PRECISION)
            b_j = tl.dot(b_h, tl.load(p_w + C, mask=m_w, other=0).to(DOT_DTYPE), b_j, input_precision=DOT_PRECISION)
            b_f = tl.dot(b_h, tl.load(p_w + 2 * C, mask=m_w, other=0).to(DOT_DTYPE), b_f, input_precision=DOT_PRECISION)
            b_o = tl.dot(b_h, tl.load(p_w + 3 * C, mask=m_w, other=0).to(DOT_DTYPE), b_o, input_precision=DOT_PRECISION)

    m_bc = b_active[:, None] & m_c[None, :]
    p_gx = gx + ((o_state * T + b_t) * (4 * C))[:, None] + o_c[None, :]
    p_bias = bias + i_d * (4 * C) + o_c
    b_i += tl.load(p_gx, mask=m_bc, other=0).to(tl.float32) + tl.load(p_bias, mask=m_c, other=0).to(tl.float32)[None, :]
    b_j += tl.load(p_gx + C, mask=m_bc, other=0).to(tl.float32) + tl.load(p_bias + C, mask=m_c, other=0).to(tl.float32)[None, :]
    b_f += tl.load(p_gx + 2 * C, mask=m_bc, other=0).to(tl.float32) + tl.load(p_bias + 2 * C, mask=m_c, other=0).to(tl.float32)[None, :]
    b_o += tl.load(p_gx + 3 * C, mask=m_bc, other=0).to(tl.float32) + tl.load(p_bias + 3 * C, mask=m_c, other=0).to(tl.float32)[None, :]

    o_cell = (o_state * C)[:, None] + o_c[None, :]
    m_rows = m_b[:, None] & m_c[None, :]
    if s == 0:
        if USE_INITIAL_STATE:
            b_c = tl.load(c0 + o_cell, mask=m_rows, other=0).to(tl.float32)
        else:
            b_c = tl.zeros([BB, BC], dtype=tl.float32)
    else:
        b_c = tl.load(c + o_cell, mask=m_rows, other=0)
    # sigmoid(z) = 1 / (1 + exp(-z)) written out; tanh_f32 accurate near 0 (see kernels/utils.py)
    b_cn = b_c / (1 + tl.exp(-b_f)) + tanh_f32(b_j) / (1 + tl.exp(-b_i))
    if USE_CELL_CLIP:
        b_cn = tl.minimum(tl.maximum(b_cn, -cell_clip), cell_clip)
    b_a = tanh_f32(b_cn) / (1 + tl.exp(-b_o))
    tl.store(a + o_cell, b_a.to(a.dtype.element_ty), mask=m_bc)
    # inactive rows keep their cell; step 0 writes every row so that later steps can read it
    b_cn = tl.where(b_active[:, None], b_cn, b_c)
    tl.store(c + o_cell, b_cn, mask=tl.where(s == 0, m_b, b_active)[:, None] & m_c[None, :])
    if STORE_FINAL_STATE:
        b_last = m_b & (s == tl.maximum(b_len - 1, 0))
        tl.store(ct + o_cell, b_cn.to(ct.dtype.element_ty), mask=b_last[:, None] & m_c[None, :])


@triton.heuristics({
    "USE_INITIAL_STATE": lambda args: args["h0"] is not None,
    "STORE_FINAL_STATE": lambda args: args["ht"] is not None,
    "USE_PROJ_CLIP": lambda args: args["proj_clip"] > 0,
    "USE_RESIDUAL": lambda args: args["x"] is not None,
})
@triton.jit(do_not_specialize=["s", "T"])
def lstmp_fwd_proj_kernel(
    a,
    w_proj,
    x,
    lengths,
    h,
    h0,
    ht,
    o,
    proj_clip,
    s,
    T,
    B,
    C: tl.constexpr,
    P: tl.constexpr,
    BB: tl.constexpr,
    BP: tl.constexpr,
    BK: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    USE_INITIAL_STATE: tl.constexpr,
    STORE_FINAL_STATE: tl.constexpr,
    USE_PROJ_CLIP: tl.constexpr,
    USE_RESIDUAL: tl.constexpr,
):
    i_p, i_b, i_d = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    o_p = i_p * BP + tl.arange(0, BP)
    o_b = i_b * BB + tl.arange(0, BB).to(tl.int64)
    m_p = o_p < P
    m_b = o_b < B
    b_len = tl.minimum(tl.load(lengths + o_b, mask=m_b, other=0), T)
    b_active = m_b & (s < b_len)
    b_t = tl.where(i_d == 1, tl.where(b_active, b_len - 1 - s, s), s)
    o_state = i_d * B + o_b

    b_h = tl.zeros([BB, BP], dtype=tl.float32)
    if tl.max(b_active.to(tl.int32)) > 0:
        for k in range(0, C, BK):
            o_k = k + tl.arange(0, BK)
            m_k = o_k < C
            # [BB, BK]
            b_a = tl.load(a + (o_state * C)[:, None] + o_k[None, :], mask=b_active[:, None] & m_k[None, :], other=0)
            # [BK, BP]
            b_w = tl.load(w_proj + (i_d * C + o_k[:, None]) * P + o_p[None, :], mask=m_k[:, None] & m_p[None, :], other=0)
            b_h = tl.dot(b_a.to(DOT_DTYPE), b_w.to(DOT_DTYPE), b_h, input_precision=DOT_PRECISION)
    if USE_PROJ_CLIP:
        b_h = tl.minimum(tl.maximum(b_h, -proj_clip), proj_clip)

    m_bp = b_active[:, None] & m_p[None, :]
    m_rows = m_b[:, None] & m_p[None, :]
    o_out = ((o_state * T + b_t) * P)[:, None] + o_p[None, :]
    b_out = b_h
    if USE_RESIDUAL:
        b_out += tl.load(x + o_out, mask=m_bp, other=0).to(tl.float32)
    # padding positions (inactive rows write their position s) are exactly 0
    tl.store(o + o_out, tl.where(m_bp, b_out, 0).to(o.dtype.element_ty), mask=m_rows)

    o_hid = (o_state * P)[:, None] + o_p[None, :]
    if s == 0:
        if USE_INITIAL_STATE:
            b_h0 = tl.load(h0 + o_hid, mask=m_rows, other=0).to(tl.float32)
        else:
            b_h0 = tl.zeros([BB, BP], dtype=tl.float32)
        b_h = tl.where(b_active[:, None], b_h, b_h0)
    tl.store(h + o_hid, b_h.to(h.dtype.element_ty), mask=tl.where(s == 0, m_b, b_active)[:, None] & m_p[None, :])
    if STORE_FINAL_STATE:
        b_last = m_b & (s == tl.maximum(b_len - 1, 0))
        tl.store(ht + o_hid, b_h.to(ht.dtype.element_ty), mask=b_last[:, None] & m_p[None, :])


def lstmp_tiles(batch: int, cell: int, proj: int, dtype: torch.dtype) -> dict[str, int]:
    """Block sizes and warps of both step kernels for a layer of ``batch`` rows, C = ``cell``, P = ``proj``
    and activations of ``dtype``.

    Keys: ``BB`` (rows per program), ``BC``/``BP`` (cells / projection columns per program), ``BK_H``/``BK_A``
    (K steps of the cell and projection products), ``WARPS_CELL`` (warps of the cell kernel; the projection
    kernel runs 4). The launchers and ``benchmarks/gpu_compile.py`` both take their configurations from here.
    """
    # NOTE: the batch is the M side of every product: at most a few hundred rows against
    # C = 4096 / P = 512 (original model). Up to batch 32 a step only streams the weights
    # (w_hh 2 x 512 x 16384 and w_proj 2 x 4096 x 512, ~40 MB in bf16, which stay in H100's
    # 50 MB L2 across steps), so the tiles are chosen for enough programs to keep all 132 SMs
    # loading: BC = 32 gives 4096 / 32 x 2 directions = 256 cell programs, BP = 16 gives 64
    # projection programs with a long K loop (BK = 128 over C). From batch 33 on, M = 64 tiles and
    # BP = 32 halve how often each projection weight tile is re-read per batch tile, with 8 warps for
    # the cell kernel. BC stays 32 there: compiled ahead of time (benchmarks/gpu_compile.py), four
    # [64, 64] gate accumulators (BC = 64) spilled on sm_80 (bf16: 176 B/thread at 255 registers;
    # fp32: 6456 B), BC = 32 does not (bf16: 190 / 106 registers on sm_80 / sm_90). float32 products
    # (ieee, FMA units) take shorter K steps from batch 17 on, where K = 64 (cell) and K = 128
    # (projection) spilled on sm_80: cell 16 B (batch 17-32) and 2248 B (batch 33+), projection
    # 2600 B (batch 17-32) and 6888 B (batch 33+; K = 64 still 3712 B). tl.dot needs every block
    # dimension >= 16, hence the floor of 16 (masked) for tiny models and batches. Design choices,
    # not measured on a GPU.
    bb = 16 if batch <= 16 else 32 if batch <= 32 else 64
    small = batch <= 32
    if dtype == torch.float32 and batch > 16:
        k_h, k_a = 32, 64 if small else 32
    else:
        k_h, k_a = 64, 128
    return {
        "BB": bb,
        "BC": block(cell, hi=32),
        "BP": block(proj, hi=16 if small else 32),
        "BK_H": block(proj, hi=k_h),
        "BK_A": block(cell, hi=k_a),
        "WARPS_CELL": 4 if small else 8,
    }


class _Buffers:
    """The tensors one layer's time loop reads and writes (shapes in :func:`lstmp_fwd`)."""

    def __init__(self, x, lengths, h0, c0, w_ih, w_hh, bias, w_proj, residual: bool, final: bool) -> None:
        num_dirs, batch, width, _ = x.shape
        cell, proj = w_proj.shape[1], w_proj.shape[2]
        self.x, self.lengths, self.h0, self.c0 = x, lengths, h0, c0
        self.w_ih, self.w_hh, self.bias, self.w_proj = w_ih, w_hh, bias, w_proj
        self.residual = residual
        self.gx = x.new_empty(num_dirs, batch, width, 4 * cell)
        self.o = x.new_empty(num_dirs, batch, width, proj)
        self.h = x.new_empty(num_dirs, batch, proj)
        self.c = x.new_empty(num_dirs, batch, cell, dtype=torch.float32)
        self.a = x.new_empty(num_dirs, batch, cell)
        self.ht = x.new_empty(num_dirs, batch, proj) if final else None
        self.ct = x.new_empty(num_dirs, batch, cell) if final else None


def _run(buf: _Buffers, cell_clip: float, proj_clip: float) -> None:
    """The input product for all positions, then two launches per time step."""
    num_dirs, batch, width, width_in = buf.x.shape
    cell, proj = buf.w_proj.shape[1], buf.w_proj.shape[2]
    torch.bmm(buf.x.view(num_dirs, batch * width, width_in), buf.w_ih, out=buf.gx.view(num_dirs, batch * width, 4 * cell))
    tiles = lstmp_tiles(batch, cell, proj, buf.x.dtype)
    flags = dot_flags(buf.x.dtype)
    grid_cell = (triton.cdiv(cell, tiles["BC"]), triton.cdiv(batch, tiles["BB"]), num_dirs)
    grid_proj = (triton.cdiv(proj, tiles["BP"]), triton.cdiv(batch, tiles["BB"]), num_dirs)
    for s in range(width):
        lstmp_fwd_cell_kernel[grid_cell](
            gx=buf.gx, lengths=buf.lengths, w_hh=buf.w_hh, bias=buf.bias, h=buf.h, c=buf.c, h0=buf.h0, c0=buf.c0,
            ct=buf.ct, a=buf.a, cell_clip=cell_clip, s=s, T=width, B=batch, C=cell, P=proj,
            BB=tiles["BB"], BC=tiles["BC"], BK=tiles["BK_H"], num_warps=tiles["WARPS_CELL"], **flags,
        )
        lstmp_fwd_proj_kernel[grid_proj](
            a=buf.a, w_proj=buf.w_proj, x=buf.x if buf.residual else None, lengths=buf.lengths, h=buf.h, h0=buf.h0,
            ht=buf.ht, o=buf.o, proj_clip=proj_clip, s=s, T=width, B=batch, C=cell, P=proj,
            BB=tiles["BB"], BP=tiles["BP"], BK=tiles["BK_A"], num_warps=4, **flags,
        )


class _StaticLayer:
    """Padded buffers for one shape bucket and one set of weights; on CUDA, a graph over them.

    Batches up to ``batch`` rows and ``width`` positions reuse it: the extra rows get length 0 and
    the extra steps find no active row, so they only write zeros that are sliced away.
    """

    def __init__(self, num_dirs: int, batch: int, width: int, width_in: int, weights, h0: bool, residual: bool,
                 final: bool, cell_clip: float, proj_clip: float, dtype: torch.dtype, device: torch.device) -> None:
        w_ih, w_hh, bias, w_proj = weights
        cell, proj = w_proj.shape[1], w_proj.shape[2]
        x = torch.zeros(num_dirs, batch, width, width_in, dtype=dtype, device=device)
        lengths = torch.zeros(batch, dtype=torch.int64, device=device)
        h0_buf = torch.zeros(num_dirs, batch, proj, dtype=dtype, device=device) if h0 else None
        c0_buf = torch.zeros(num_dirs, batch, cell, dtype=torch.float32, device=device) if h0 else None
        self.buf = _Buffers(x, lengths, h0_buf, c0_buf, w_ih, w_hh, bias, w_proj, residual, final)
        self.clips = (cell_clip, proj_clip)
        self.graph = None
        if device.type == "cuda":
            # warm up on a side stream (compiles the kernels, sets up cuBLAS), then capture
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                _run(self.buf, *self.clips)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                _run(self.buf, *self.clips)

    def __call__(self, x, lengths, h0, c0):
        buf = self.buf
        batch, width = x.shape[1], x.shape[2]
        buf.x[:, :batch, :width].copy_(x)
        buf.lengths.zero_()
        # clamp to the real width, not the padded one: lengths > T count as T (the docstring's promise;
        # the kernels clamp only to the padded width, and the backward direction starts at length - 1)
        buf.lengths[:batch].copy_(lengths.clamp(max=width))
        if buf.h0 is not None:
            buf.h0[:, :batch].copy_(h0)
            buf.c0[:, :batch].copy_(c0)
        if self.graph is not None:
            self.graph.replay()
        else:
            _run(buf, *self.clips)
        out = buf.o[:, :batch, :width].clone()
        if buf.ht is None:
            return out, None, None
        return out, buf.ht[:, :batch].clone(), buf.ct[:, :batch].clone()


GRAPH_FAMILY = "triton.lstmp.graph"
# NOTE: each entry holds its padded buffers (the input product is D x B x T x 4C: 2 GB in bf16 at
# batch 512, 64 positions, original model), so only a few are kept: two layers x two buckets.
GRAPH_CAPACITY = 4


def clear_graph_cache() -> None:
    """Free every cached CUDA graph and its buffers."""
    WEIGHT_CACHE.clear(GRAPH_FAMILY)


def _static_layer(x, weights, h0: bool, residual: bool, final: bool, cell_clip: float, proj_clip: float) -> _StaticLayer:
    num_dirs, batch, width, width_in = x.shape
    tiles = lstmp_tiles(batch, weights[3].shape[1], weights[3].shape[2], x.dtype)
    padded_batch = triton.cdiv(batch, tiles["BB"]) * tiles["BB"]
    padded_width = triton.cdiv(width, 8) * 8
    bucket = (x.device, x.dtype, num_dirs, padded_batch, padded_width, width_in, h0, residual, final, cell_clip, proj_clip)
    # the layer keeps the live weight tensors (the graph reads them), not the detached copies
    return WEIGHT_CACHE.get(
        weights, (GRAPH_FAMILY, *bucket), lambda *_: _StaticLayer(*bucket[2:6], weights, *bucket[6:], x.dtype, x.device),
        capacity=GRAPH_CAPACITY,
    )


def lstmp_fwd(
    x: torch.Tensor,
    lengths: torch.Tensor,
    layer,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    *,
    output_final_state: bool = True,
    cuda_graph: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One LSTM-with-projection layer in D <= 2 directions, as :func:`elmo_fast.reference.lstmp_ref`.

    ``layer`` is any object with the attributes ``w_ih``, ``w_hh``, ``bias``, ``w_proj`` (the
    ``(D, ...)`` weight stacks of :func:`~elmo_fast.reference.lstmp_ref`), ``cell_clip``,
    ``proj_clip`` (float or None) and ``residual`` (bool), such as ``elmo_fast.ops.lstmp.LstmpLayer``
    or a ``types.SimpleNamespace``.

    ``x`` ``(D, B, T, Pin)`` is float32 or bfloat16 (fp16 works the same way); the weights are cast
    to its dtype, products accumulate in float32 and the cell state stays float32. ``lengths`` must
    be <= T (larger values count as T). Returns ``(out (D, B, T, P), h_n (D, B, P), c_n (D, B, C))``
    in ``x``'s dtype; ``h_n`` and ``c_n`` are None when ``output_final_state`` is False.

    ``cuda_graph``: None runs the time loop in a cached CUDA graph on CUDA tensors (unless a graph
    is being captured already). Graphs are kept per shape bucket (batch rounded up to its tile,
    width to a multiple of 8) and per weight tensors. True on CPU tensors runs the same padded,
    cached buffers without a graph, which is how the CPU tests cover that path.
    """
    w_ih, w_hh, bias, w_proj = layer.w_ih, layer.w_hh, layer.bias, layer.w_proj
    cell_clip, proj_clip, residual = layer.cell_clip, layer.proj_clip, layer.residual
    num_dirs, batch, width, width_in = x.shape
    cell, proj = w_proj.shape[-2], w_proj.shape[-1]
    if num_dirs not in (1, 2):
        raise ValueError(f"x must stack 1 or 2 directions on dim 0, got {num_dirs}")
    expected = {"w_ih": (num_dirs, width_in, 4 * cell), "w_hh": (num_dirs, proj, 4 * cell), "bias": (num_dirs, 4 * cell),
                "w_proj": (num_dirs, cell, proj), "lengths": (batch,)}
    given = {"w_ih": w_ih, "w_hh": w_hh, "bias": bias, "w_proj": w_proj, "lengths": lengths}
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(given[name].shape)}, expected {shape} for x of shape {tuple(x.shape)}")
    if residual and width_in != proj:
        raise ValueError(f"residual needs input width {width_in} == projection width {proj}")
    if (h0 is None) != (c0 is None):
        raise ValueError("give both h0 and c0, or neither")
    dtype, device = x.dtype, x.device
    weights = tuple(w.to(device=device, dtype=dtype).contiguous() for w in (w_ih, w_hh, bias, w_proj))
    lengths = lengths.to(device=device, dtype=torch.int64).contiguous()
    if h0 is not None:
        h0 = h0.to(device=device, dtype=dtype).contiguous()
        c0 = c0.to(device=device, dtype=torch.float32).contiguous()
    if batch == 0 or width == 0:
        out = x.new_zeros(num_dirs, batch, width, proj)
        if not output_final_state:
            return out, None, None
        h_n = x.new_zeros(num_dirs, batch, proj) if h0 is None else h0.clone()
        c_n = x.new_zeros(num_dirs, batch, cell) if c0 is None else c0.to(dtype)
        return out, h_n, c_n
    cell_clip, proj_clip = float(cell_clip or 0.0), float(proj_clip or 0.0)
    if cuda_graph is None:
        cuda_graph = x.is_cuda and not torch.cuda.is_current_stream_capturing()
    # the cached path keeps the weight pointers: only when the weights needed no copy
    if cuda_graph and all(w is v for w, v in zip(weights, (w_ih, w_hh, bias, w_proj))):
        static = _static_layer(x, weights, h0 is not None, residual, output_final_state, cell_clip, proj_clip)
        return static(x, lengths, h0, c0)
    buf = _Buffers(x.contiguous(), lengths, h0, c0, *weights, residual, output_final_state)
    _run(buf, cell_clip, proj_clip)
    return buf.o, buf.ht, buf.ct
