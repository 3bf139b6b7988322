"""``lstmp``: one LSTM-with-projection layer over a padded batch, in one or two directions.

Semantics and tensor layouts: :func:`elmo_fast.reference.lstmp_ref`. Backends fill ``_IMPLS``
with functions of the same signature.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from elmo_fast.reference.lstmp import lstmp_ref

LstmpFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

_IMPLS: dict[str, LstmpFn] = {"ref": lstmp_ref}


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
    """The compiled ``elmo_fast::lstmp`` op; the dispatcher runs the kernel of ``x``'s device."""
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one biLSTM layer; returns ``(out (D,B,T,P), h_n (D,B,P), c_n (D,B,C))``.

    ``backend`` must already be resolved (see :func:`elmo_fast._backends.resolve`); a backend with
    no implementation of this op runs the reference.
    """
    impl = _IMPLS.get(backend, lstmp_ref)
    return impl(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=cell_clip, proj_clip=proj_clip, residual=residual)
