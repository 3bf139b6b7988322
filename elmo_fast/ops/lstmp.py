"""``lstmp``: one LSTM-with-projection layer over a padded batch, in one or two directions.

Semantics and tensor layouts: :func:`elmo_fast.reference.lstmp_ref`. Every backend registers a
function ``fn(x, lengths, layer, h0, c0)`` with ``layer`` a :class:`LstmpLayer` (the weights and
the clips, written out once here); the registry (:mod:`elmo_fast.ops.registry`) falls back to the
reference and dequantises the weights for the backends that do not read them natively. The
reference and ``cpp`` read reduced-precision weights natively and multiply in that precision
(:mod:`elmo_fast.reference.lowp`; ``ELMO_FAST_PRODUCTS=fp32`` keeps float32 products).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from elmo_fast.ops import cpp, registry
from elmo_fast.ops.registry import FLOAT32_ONLY
from elmo_fast.reference.lstmp import lstmp_ref
from elmo_fast.reference.lowp import product_fns, products_precision, projection_precision
from elmo_fast.reference.quantize import check_weight_precision

LstmpOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class LstmpLayer(NamedTuple):
    """One layer's weights (``(D, ...)`` stacks, see :func:`~elmo_fast.reference.lstmp_ref`) and options.

    ``weight_precision`` (see :mod:`elmo_fast.reference.quantize`) is the storage ``w_ih`` and
    ``w_hh`` stand for, and ``w_proj`` in
    :func:`~elmo_fast.reference.lowp.projection_precision` of it (bf16 for int8); the registry hands
    backends without native support the float32 weights.
    """

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    bias: torch.Tensor
    w_proj: torch.Tensor
    cell_clip: float | None = None
    proj_clip: float | None = None
    residual: bool = False
    weight_precision: str = "fp32"

    def dequantized(self) -> LstmpLayer:
        """The same layer with the float32 weights its precision stands for (cached per weight)."""
        if self.weight_precision == "fp32":
            return self
        w_ih, w_hh = (registry.dequantized(w, self.weight_precision) for w in (self.w_ih, self.w_hh))
        w_proj = registry.dequantized(self.w_proj, projection_precision(self.weight_precision))
        return self._replace(w_ih=w_ih, w_hh=w_hh, w_proj=w_proj, weight_precision="fp32")


def _ref(x: torch.Tensor, lengths: torch.Tensor, layer: LstmpLayer, h0: torch.Tensor | None, c0: torch.Tensor | None) -> LstmpOutput:
    """:func:`lstmp_ref` with the layer's weights and products as the ``cpp`` backend runs them.

    Reduced-precision weights multiply in their own precision (:mod:`elmo_fast.reference.lowp`),
    or, with ``ELMO_FAST_PRODUCTS=fp32``, as their float32 values; so the reference (the ``ref``
    backend and every fallback to it) is the twin of the ``cpp`` kernels in each mode.
    """
    products = product_fns(layer.weight_precision)
    if products_precision(layer.weight_precision) == "fp32":
        layer = layer.dequantized()
    return lstmp_ref(
        x, lengths, *layer[:4], h0, c0, cell_clip=layer.cell_clip, proj_clip=layer.proj_clip, residual=layer.residual, **products
    )


def _tensors(x, lengths, layer: LstmpLayer, h0, c0) -> tuple[torch.Tensor | None, ...]:
    return (x, *layer[:4], h0, c0)


def _dequantize(x, lengths, layer: LstmpLayer, h0, c0) -> tuple:
    return x, lengths, layer.dequantized(), h0, c0


registry.define("lstmp", _ref, tensors=_tensors, dequantize=_dequantize, native_precision=True)


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
) -> LstmpOutput:
    """Run one biLSTM layer; returns ``(out (D,B,T,P), h_n (D,B,P), c_n (D,B,C))``.

    ``backend`` must already be resolved (see :func:`elmo_fast._backends.resolve`); a backend with
    no implementation of this op runs the reference. ``weight_precision`` (see
    :mod:`elmo_fast.reference.quantize`): the ``cpp`` backend stores ``w_ih``, ``w_hh`` and
    ``w_proj`` in that precision and multiplies in it (:mod:`elmo_fast.reference.lowp`), ``ref``
    computes the same products in PyTorch, the others compute with the rounded weights in float32.
    """
    layer = LstmpLayer(w_ih, w_hh, bias, w_proj, cell_clip, proj_clip, residual, check_weight_precision(weight_precision))
    return lstmp_layer(x, lengths, layer, h0, c0, backend=backend)


def lstmp_layer(
    x: torch.Tensor,
    lengths: torch.Tensor,
    layer: LstmpLayer,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    *,
    backend: str = "ref",
) -> LstmpOutput:
    """:func:`lstmp` with the layer's weights and options in one :class:`LstmpLayer`."""
    return registry.call("lstmp", backend, x, lengths, layer, h0, c0)


def lstmp_triton(x, lengths, layer: LstmpLayer, h0, c0) -> LstmpOutput:
    """The Triton kernels (:func:`elmo_fast.kernels.lstmp.lstmp_fwd`; imported on first use)."""
    from elmo_fast.kernels.lstmp import lstmp_fwd

    return lstmp_fwd(x, lengths, layer, h0, c0)


registry.register("lstmp", "triton", lstmp_triton)


def lstmp_cpp(x, lengths, layer: LstmpLayer, h0, c0) -> LstmpOutput:
    """The ``cpp`` backend: ``torch.ops.elmo_fast.lstmp`` on weights packed once per weight tensor.

    The packed copies take as much memory as ``w_ih``, ``w_hh`` and ``w_proj`` themselves (300 MB
    for the original model; the encoder adds ~70 MB), half that in ``weight_precision="bf16"``
    and about 0.28 in ``"int8"``, whose projection stays bf16 (see :mod:`elmo_fast.reference.quantize`).

    With bf16 or int8 weights the products run in that precision, the projection's in bf16 for int8
    (:mod:`elmo_fast.reference.lowp`; ``ELMO_FAST_PRODUCTS=fp32`` keeps them in float32 on the
    reduced weights).
    """
    (ih, ih_s), (hh, hh_s) = (cpp.packed_lowp(w, layer.weight_precision, gates=True) for w in (layer.w_ih, layer.w_hh))
    pr, pr_s = cpp.packed_lowp(layer.w_proj, projection_precision(layer.weight_precision))
    out, h_n, c_n = torch.ops.elmo_fast.lstmp(
        x, lengths, *layer[:4], h0, c0, layer.cell_clip, layer.proj_clip, layer.residual, ih, hh, pr, ih_s, hh_s, pr_s
    )
    return out, h_n, c_n


def lstmp_cuda(x, lengths, layer: LstmpLayer, h0, c0) -> LstmpOutput:
    """The compiled ``elmo_fast::lstmp`` op; the dispatcher runs the kernel of ``x``'s device."""
    clips = (None if clip is None else float(clip) for clip in (layer.cell_clip, layer.proj_clip))
    return torch.ops.elmo_fast.lstmp(x, lengths, *layer[:4], h0, c0, *clips, layer.residual)


try:
    # imports elmo_fast._C (the op schema) and registers the CUDA kernel with the dispatcher
    from elmo_fast import _C_cuda  # noqa: F401
except ImportError:
    pass
else:
    registry.register("lstmp", "cuda", lstmp_cuda)


if cpp.available():

    @torch.library.register_fake("elmo_fast::lstmp")
    def _lstmp_fake(
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip, proj_clip, residual,
        w_ih_packed=None, w_hh_packed=None, w_proj_packed=None, w_ih_scale=None, w_hh_scale=None, w_proj_scale=None,
    ):
        dirs, batch, width, _ = x.shape
        cell, proj = w_proj.shape[1], w_proj.shape[2]
        return x.new_empty(dirs, batch, width, proj), x.new_empty(dirs, batch, proj), x.new_empty(dirs, batch, cell)

    registry.register("lstmp", "cpp", lstmp_cpp, dtypes=FLOAT32_ONLY, native_precision=True)
