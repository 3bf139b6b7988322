"""``lstmp``: one LSTM-with-projection layer over a padded batch, in one or two directions.

Semantics and tensor layouts: :func:`elmo_fast.reference.lstmp_ref`. Backends fill ``_IMPLS``
with functions of the same signature.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from elmo_fast.ops import _cpp
from elmo_fast.reference.lstmp import lstmp_ref
from elmo_fast.reference.lowp import product_fn, products_precision
from elmo_fast.reference.quantize import check_weight_precision, dequantize, int8_columns

LstmpFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

_IMPLS: dict[str, LstmpFn] = {"ref": lstmp_ref}


def _lstmp_triton(x, lengths, w_ih, w_hh, bias, w_proj, h0=None, c0=None, *, cell_clip=None, proj_clip=None, residual=False):
    """The Triton kernels (:func:`elmo_fast.kernels.lstmp.lstmp_fwd`; forward only, imported on first use).

    When autograd records (an input requires grad), the differentiable reference runs instead, with
    a warning (:func:`elmo_fast.ops._cpp.use_reference`).
    """
    args = (x, lengths, w_ih, w_hh, bias, w_proj, h0, c0)
    if _cpp.use_reference("lstmp", (x, w_ih, w_hh, bias, w_proj, h0, c0), backend="triton", dtypes=None):
        return lstmp_ref(*args, cell_clip=cell_clip, proj_clip=proj_clip, residual=residual)
    from elmo_fast.kernels.lstmp import lstmp_fwd

    return lstmp_fwd(*args, cell_clip=cell_clip, proj_clip=proj_clip, residual=residual)


_IMPLS["triton"] = _lstmp_triton


def _lstmp_compiled(
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
    """The compiled ``elmo_fast::lstmp`` op; the dispatcher runs the kernel of ``x``'s device.

    Forward only: when autograd records (an input requires grad), the differentiable reference runs
    instead, with a warning (:func:`elmo_fast.ops._cpp.use_reference`).
    """
    if _cpp.use_reference("lstmp", (x, w_ih, w_hh, bias, w_proj, h0, c0), backend="cuda", dtypes=None):
        return lstmp_ref(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=cell_clip, proj_clip=proj_clip, residual=residual)
    return torch.ops.elmo_fast.lstmp(
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0,
        None if cell_clip is None else float(cell_clip), None if proj_clip is None else float(proj_clip), residual,
    )


try:
    # imports elmo_fast._C (the op schema) and registers the CUDA kernel with the dispatcher
    from elmo_fast import _C_cuda  # noqa: F401
except ImportError:
    pass
else:
    _IMPLS["cuda"] = _lstmp_compiled


def lstmp(
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
    backend: str = "ref",
    weight_precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one biLSTM layer; returns ``(out (D,B,T,P), h_n (D,B,P), c_n (D,B,C))``.

    ``backend`` must already be resolved (see :func:`elmo_fast._backends.resolve`); a backend with
    no implementation of this op runs the reference. ``weight_precision`` (see
    :mod:`elmo_fast.reference.quantize`): the ``cpp`` backend stores ``w_ih``, ``w_hh`` and
    ``w_proj`` in that precision and multiplies in it (:mod:`elmo_fast.reference.lowp`), ``ref``
    computes the same products in PyTorch, the others compute with the rounded weights in float32.
    """
    check_weight_precision(weight_precision)
    impl = _IMPLS.get(backend, lstmp_ref)
    if impl is lstmp_cpp:
        return lstmp_cpp(
            x, lengths, w_ih, w_hh, bias, w_proj, h0, c0,
            cell_clip=cell_clip, proj_clip=proj_clip, residual=residual, weight_precision=weight_precision,
        )
    if impl is lstmp_ref:
        return _lstmp_ref_precision(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual, weight_precision)
    w_ih, w_hh, w_proj = _dequantized((w_ih, w_hh, w_proj), weight_precision)
    return impl(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=cell_clip, proj_clip=proj_clip, residual=residual)


def _lstmp_ref_precision(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual, precision):
    """:func:`lstmp_ref` with ``precision`` weights and products as the ``cpp`` backend runs them."""
    products = products_precision(precision)
    if products == "fp32":
        w_ih, w_hh, w_proj = _dequantized((w_ih, w_hh, w_proj), precision)
    return lstmp_ref(
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0,
        cell_clip=cell_clip, proj_clip=proj_clip, residual=residual, product=product_fn(products),
    )


def _dequantized(weights: tuple[torch.Tensor, ...], precision: str) -> tuple[torch.Tensor, ...]:
    """The float32 weights that ``precision`` storage stands for (cached per weight tensor)."""
    if precision == "fp32":
        return weights
    return tuple(_cpp.PACKED.get(w, f"dequantize.{precision}", lambda t: dequantize(t, precision)) for w in weights)


def _pack_gates(weight: torch.Tensor) -> torch.Tensor:
    # (D, K, 4C) -> per gate (D, 4, K, C) -> panels (D, 4, C / 16, K, 16)
    return _cpp.pack_matrix(weight.unflatten(-1, (4, weight.shape[-1] // 4)).transpose(1, 2))


def _pad_columns(scale: torch.Tensor) -> torch.Tensor:
    # (..., N) -> (..., round_up(N, 16)): padded columns hold int8 zeros, any scale will do
    return torch.nn.functional.pad(scale, (0, -scale.shape[-1] % 16), value=1.0).contiguous()


def _interleave_k(panels: torch.Tensor, group: int) -> torch.Tensor:
    # (..., N / 16, K, 16) -> (..., N / 16, ceil(K / group), 16, group): `group` consecutive k side by side
    # per column, the layout of csrc/cpu/lowp_gemm.h (bf16 pairs, uint8 quads); padded k are zero
    padded = torch.nn.functional.pad(panels, (0, 0, 0, -panels.shape[-2] % group))
    return padded.unflatten(-2, (-1, group)).transpose(-1, -2).contiguous()


def _packer(precision: str, gates: bool, products: str):
    """``weight -> (panels, scales or None)`` for ``precision`` storage and ``products`` arithmetic;
    ``gates``: ``w_ih``/``w_hh``."""
    pack = _pack_gates if gates else _cpp.pack_matrix

    def packed(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if precision == "fp32":
            return pack(weight), None
        if precision == "bf16":
            panels = pack(weight.to(torch.bfloat16))
            return (_interleave_k(panels, 2) if products == "bf16" else panels), None
        q, scale = int8_columns(weight)
        if products == "int8":
            # the unsigned bytes q + 128 (see csrc/cpu/lowp_gemm.h)
            q = (q.to(torch.int16) + 128).to(torch.uint8)
        if gates:
            # (D, 4C) -> per gate (D, 4, C)
            scale = scale.unflatten(-1, (4, scale.shape[-1] // 4))
        panels = pack(q) if products != "int8" else _interleave_k(pack(q.view(torch.int8)).view(torch.uint8), 4)
        return panels, _pad_columns(scale)

    return packed


def lstmp_cpp(
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
    weight_precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``cpp`` backend: ``torch.ops.elmo_fast.lstmp`` on weights packed once per weight tensor.

    The packed copies take as much memory as ``w_ih``, ``w_hh`` and ``w_proj`` themselves (300 MB
    for the original model; the encoder adds ~70 MB), half that in ``weight_precision="bf16"``
    and a quarter in ``"int8"`` (see :mod:`elmo_fast.reference.quantize`).

    With bf16 or int8 weights the products run in that precision (:mod:`elmo_fast.reference.lowp`;
    ``ELMO_FAST_PRODUCTS=fp32`` keeps them in float32 on the reduced weights).

    Forward only, fp32: a call that needs gradients or another dtype runs :func:`lstmp_ref` (with a
    warning), see :mod:`elmo_fast.ops._cpp`.
    """
    products = products_precision(weight_precision)
    if _cpp.use_reference("lstmp", (x, w_ih, w_hh, bias, w_proj, h0, c0)):
        return _lstmp_ref_precision(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual, weight_precision)
    (ih, ih_s), (hh, hh_s), (pr, pr_s) = (
        _cpp.PACKED.get(w, f"lstmp.{kind}.{weight_precision}.{products}", _packer(weight_precision, kind == "gates", products))
        for w, kind in ((w_ih, "gates"), (w_hh, "gates"), (w_proj, "w_proj"))
    )
    out, h_n, c_n = torch.ops.elmo_fast.lstmp(
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual, ih, hh, pr, ih_s, hh_s, pr_s
    )
    return out, h_n, c_n


if _cpp.available():

    @torch.library.register_fake("elmo_fast::lstmp")
    def _lstmp_fake(
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual,
        w_ih_packed=None, w_hh_packed=None, w_proj_packed=None, w_ih_scale=None, w_hh_scale=None, w_proj_scale=None,
    ):
        dirs, batch, width, _ = x.shape
        cell, proj = w_proj.shape[1], w_proj.shape[2]
        return x.new_empty(dirs, batch, width, proj), x.new_empty(dirs, batch, proj), x.new_empty(dirs, batch, cell)

    _IMPLS["cpp"] = lstmp_cpp
