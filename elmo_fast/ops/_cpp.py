"""What the fast backends' op wrappers share: the fallback to ``ref``, and ``cpp``'s packed-weight cache.

The compiled CPU ops (``torch.ops.elmo_fast.*``, built from ``csrc/``) are forward-only and fp32; the
compiled CUDA op and the Triton kernels are forward-only. A call that needs gradients through them
(or, for ``cpp``, runs in another dtype) is served by the reference instead, with a warning that
says so (once per backend, op and reason), so training through a fast backend gives correct
gradients rather than none (:func:`use_reference`).
"""
from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from elmo_fast import _backends

_WARNED: set[tuple[str, str, str]] = set()
T = TypeVar("T")

CPP_DTYPES: frozenset[torch.dtype] = frozenset({torch.float32})
"""The dtypes the compiled CPU ops run."""


def reference_reason(
    tensors: Iterable[torch.Tensor | None], dtypes: frozenset[torch.dtype] | None = CPP_DTYPES
) -> str | None:
    """Why a forward-only fast op cannot serve a call on ``tensors`` (None when it can).

    ``dtypes``: the floating dtypes the op runs (None: any; the op checks its inputs itself).
    """
    present = [t for t in tensors if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return "gradients are required (the fast op has no backward)"
    if dtypes is not None:
        found = {t.dtype for t in present if t.is_floating_point()}
        if found - dtypes:
            allowed = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
            return f"it runs {allowed} only, got {', '.join(sorted(str(d) for d in found))}"
    return None


def use_reference(
    op: str,
    tensors: Iterable[torch.Tensor | None],
    *,
    backend: str = "cpp",
    dtypes: frozenset[torch.dtype] | None = CPP_DTYPES,
) -> bool:
    """True when ``backend``'s ``op`` must run the reference for this call; warns once per backend, op and reason.

    ``dtypes`` as in :func:`reference_reason` (the default is the ``cpp`` ops' float32).
    """
    reason = reference_reason(tensors, dtypes)
    if reason is None:
        return False
    if (backend, op, reason) not in _WARNED:
        _WARNED.add((backend, op, reason))
        weights = " with float32 weights" if dtypes == CPP_DTYPES else ""
        warnings.warn(
            f"elmo_fast: backend {backend!r} runs {op} with the 'ref' implementation because {reason}; "
            f"use torch.no_grad() (or requires_grad=False){weights} for the fast path.",
            stacklevel=3,
        )
    return True


def weight_stamp(weight: torch.Tensor) -> tuple:
    """What identifies a weight's current contents: version counter, storage, shape, dtype, device."""
    try:
        version = weight._version
    except RuntimeError:  # inference tensors keep no version counter
        version = -1
    return (version, weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype, weight.device)


class PackedWeights:
    """Packed copies of weights (``pack_panels`` layouts), made once per weight tensor.

    An entry is keyed by the tensor's identity and the packing kind, and is rebuilt when the tensor
    changes in place (its version counter, storage or shape moved) and dropped when it is freed. So
    a loaded model is packed on its first forward and never again while its weights stay the same.
    Changing a weight through ``.data`` bypasses the version counter: call :meth:`clear` then.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], tuple[tuple, Any]] = {}

    def get(self, weight: torch.Tensor, kind: str, pack: Callable[[torch.Tensor], T]) -> T:
        """The packed form ``pack(weight)``, from the cache when ``weight`` is unchanged.

        Under a tracer (``torch.compile``, ``torch.export``) the packing becomes part of the graph
        (every call packs, unless the compiler folds it, e.g. inductor with ``freezing``): the cache's
        identity and version checks are Python state a graph cannot hold.
        """
        if torch.compiler.is_compiling():
            return pack(weight.detach())
        key = (id(weight), kind)
        stamp = weight_stamp(weight)
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp:
            if entry is None:
                weakref.finalize(weight, self._entries.pop, key, None)
            with torch.no_grad():
                entry = (stamp, pack(weight.detach()))
            self._entries[key] = entry
        return entry[1]

    def clear(self) -> None:
        """Forget every packed copy."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


PACKED = PackedWeights()


def pack_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` or stacked ``(..., K, N)`` -> panels ``(..., ceil(N / 16), K, 16)``."""
    return torch.ops.elmo_fast.pack_panels(weight)


@functools.cache
def available() -> bool:
    """Whether ``elmo_fast._C`` loaded (its ops are then registered); registers shared fake kernels."""
    if not _backends.probe("cpp")[0]:
        return False

    @torch.library.register_fake("elmo_fast::pack_panels")
    def _pack_panels_fake(weight: torch.Tensor) -> torch.Tensor:
        k, n = weight.shape[-2], weight.shape[-1]
        return weight.new_empty(*weight.shape[:-2], (n + 15) // 16, k, 16)

    return True
