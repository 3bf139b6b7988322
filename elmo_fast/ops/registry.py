"""The op registry: every backend's implementation of every op, and what they all share.

An op is defined once (:func:`define`) with its reference implementation; a backend adds its own
with :func:`register`. Every implementation of an op takes the same arguments, so a call is one dict
lookup (:func:`call`). The registry, not the implementations, owns three things:

- the fallback to the reference: the fast ops are forward-only (and the ``cpp`` ones float32 only),
  so a call that needs gradients, or runs a dtype the implementation does not, is served by the
  reference with a warning (once per backend, op and reason) instead of silently losing gradients;
- dequantisation: an implementation that does not read reduced-precision weights itself
  (``native_precision=False``) receives the float32 weights they stand for;
- :data:`WEIGHT_CACHE`, the one cache of tensors derived from weights (packed panels, dequantised
  copies, Triton's packed filters and CUDA graphs), with one invalidation rule.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")
logger = logging.getLogger(__name__)

FLOAT32_ONLY: frozenset[torch.dtype] = frozenset({torch.float32})
"""The dtypes the compiled CPU ops run."""


@dataclass(frozen=True)
class Impl:
    """One backend's implementation of one op.

    ``dtypes``: the floating dtypes it runs (None: any; it checks its inputs itself).
    ``native_precision``: it reads reduced-precision weights itself (else it gets float32 ones).
    """

    fn: Callable[..., Any]
    dtypes: frozenset[torch.dtype] | None = None
    native_precision: bool = False


@dataclass(frozen=True)
class OpDef:
    """An op: its reference, the tensors that decide the fallback, and how to dequantise its weights.

    ``tensors(*args)`` lists the tensors whose ``requires_grad`` and dtype decide whether a fast
    implementation can serve the call; ``dequantize(*args)`` returns the arguments with float32
    weights (None: the op has no reduced-precision weights).
    """

    name: str
    reference: Impl
    tensors: Callable[..., Iterable[torch.Tensor | None]]
    dequantize: Callable[..., tuple] | None = None


_OPS: dict[str, OpDef] = {}
_IMPLS: dict[str, dict[str, Impl]] = {}
_WARNED: set[tuple[str, str, str]] = set()


def define(
    op: str,
    reference: Callable[..., Any],
    *,
    tensors: Callable[..., Iterable[torch.Tensor | None]],
    dequantize: Callable[..., tuple] | None = None,
    native_precision: bool = False,
) -> None:
    """Define ``op`` with its reference implementation (registered as backend ``ref``).

    ``native_precision``: the reference reads reduced-precision weights itself (it then serves as
    the twin of a kernel that computes in that precision, also when a call falls back to it).
    """
    _OPS[op] = OpDef(op, Impl(reference, native_precision=native_precision), tensors, dequantize)
    _IMPLS[op] = {"ref": _OPS[op].reference}


def register(
    op: str,
    backend: str,
    fn: Callable[..., Any],
    *,
    dtypes: frozenset[torch.dtype] | None = None,
    native_precision: bool = False,
) -> None:
    """Make ``fn`` the ``backend`` implementation of ``op`` (same arguments as the reference's)."""
    if op not in _OPS:
        raise KeyError(f"op {op!r} is not defined; define it first (known: {', '.join(sorted(_OPS))})")
    _IMPLS[op][backend] = Impl(fn, dtypes, native_precision)


def lookup(op: str, backend: str) -> Impl | None:
    """The ``backend`` implementation of ``op``, or None when it has none."""
    return _IMPLS[op].get(backend)


@contextlib.contextmanager
def temporarily_registered(op: str, backend: str, fn: Callable[..., Any], **flags: Any) -> Iterator[None]:
    """Register ``fn`` (as :func:`register`) for the duration of a ``with`` block, then restore."""
    previous = _IMPLS[op].get(backend)
    register(op, backend, fn, **flags)
    try:
        yield
    finally:
        if previous is None:
            del _IMPLS[op][backend]
        else:
            _IMPLS[op][backend] = previous


def implementations(op: str) -> dict[str, Callable[..., Any]]:
    """The registered implementations of ``op`` by backend (a copy)."""
    return {backend: impl.fn for backend, impl in _IMPLS[op].items()}


def reference_reason(tensors: Iterable[torch.Tensor | None], dtypes: frozenset[torch.dtype] | None) -> str | None:
    """Why a forward-only fast implementation cannot serve a call on ``tensors`` (None when it can)."""
    present = [t for t in tensors if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in present):
        return "gradients are required (the fast op has no backward)"
    if dtypes is not None:
        found = {t.dtype for t in present if t.is_floating_point()}
        if found - dtypes:
            allowed = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
            return f"it runs {allowed} only, got {', '.join(sorted(str(d) for d in found))}"
    return None


def _warn_reference(op: str, backend: str, reason: str, dtypes: frozenset[torch.dtype] | None) -> None:
    if (backend, op, reason) in _WARNED:
        return
    _WARNED.add((backend, op, reason))
    weights = " with float32 weights" if dtypes == FLOAT32_ONLY else ""
    warnings.warn(
        f"elmo_fast: backend {backend!r} runs {op} with the 'ref' implementation because {reason}; "
        f"use torch.no_grad() (or requires_grad=False){weights} for the fast path.",
        stacklevel=4,
    )


def call(op: str, backend: str, *args: Any) -> Any:
    """Run ``op`` on ``backend`` (already resolved; one without an implementation runs the reference)."""
    opdef = _OPS[op]
    impl = _IMPLS[op].get(backend, opdef.reference)
    if impl is not opdef.reference:
        reason = reference_reason(opdef.tensors(*args), impl.dtypes)
        if reason is not None:
            _warn_reference(op, backend, reason, impl.dtypes)
            impl = opdef.reference
    if opdef.dequantize is not None and not impl.native_precision:
        args = opdef.dequantize(*args)
    return impl.fn(*args)


def weight_stamp(weight: torch.Tensor) -> tuple:
    """What identifies a weight's current contents: version counter, storage, shape, dtype, device."""
    try:
        version = weight._version
    except RuntimeError:  # inference tensors keep no version counter
        version = -1
    return (version, weight.data_ptr(), tuple(weight.shape), weight.stride(), weight.dtype, weight.device)


class WeightCache:
    """Tensors derived from weights (packed, quantised, captured), made once per weights' contents.

    An entry is keyed by the identity of its source weights and a ``kind`` (a tuple whose first item
    names the family, e.g. ``("cpp.pack_lowp", "int8", "int8", False)``). The one invalidation rule: an entry is
    rebuilt when any source changes in place (its version counter, storage or shape moved), and
    dropped when any source is freed. So a loaded model is packed on its first forward and never
    again while its weights stay the same. A family may be given a ``capacity`` (least recently
    used entries are dropped). Changing a weight through ``.data`` bypasses the version counter:
    call :meth:`clear` then.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()

    def get(
        self,
        weights: torch.Tensor | Sequence[torch.Tensor],
        kind: tuple[Hashable, ...],
        make: Callable[..., T],
        *,
        capacity: int | None = None,
    ) -> T:
        """``make(*weights)`` (detached, without autograd), from the cache while ``weights`` are unchanged.

        Under a tracer (``torch.compile``, ``torch.export``) ``make`` becomes part of the graph (every
        call packs, unless the compiler folds it, e.g. inductor with ``freezing``): the cache's
        identity and version checks are Python state a graph cannot hold.
        """
        sources = (weights,) if isinstance(weights, torch.Tensor) else tuple(weights)
        if torch.compiler.is_compiling():
            return make(*(s.detach() for s in sources))
        key = (tuple(map(id, sources)), kind)
        stamp = tuple(map(weight_stamp, sources))
        entry = self._entries.get(key)
        if entry is None or entry[0] != stamp:
            if entry is None:
                for source in sources:
                    weakref.finalize(source, self._entries.pop, key, None)
            logger.debug("weight cache: making %s for %d weight tensor(s)", kind[0], len(sources))
            with torch.no_grad():
                entry = (stamp, make(*(s.detach() for s in sources)))
            self._entries[key] = entry
            if capacity is not None:
                self._evict(kind[0], capacity)
        self._entries.move_to_end(key)
        return entry[1]

    def _evict(self, family: Hashable, capacity: int) -> None:
        keys = [key for key in self._entries if key[1][0] == family]
        for key in keys[: max(len(keys) - capacity, 0)]:
            del self._entries[key]

    def clear(self, family: Hashable | None = None) -> None:
        """Forget every entry (or only those of ``family``)."""
        if family is None:
            self._entries.clear()
            return
        for key in [key for key in self._entries if key[1][0] == family]:
            del self._entries[key]

    def count(self, family: Hashable | None = None) -> int:
        """How many entries are held (of ``family``, or in all)."""
        if family is None:
            return len(self._entries)
        return sum(1 for key in self._entries if key[1][0] == family)

    def __len__(self) -> int:
        return len(self._entries)


WEIGHT_CACHE = WeightCache()
"""The process's one cache of weight-derived tensors."""


def dequantized(weight: torch.Tensor, precision: str) -> torch.Tensor:
    """The float32 weight that ``precision`` storage of ``weight`` stands for
    (:func:`~elmo_fast.reference.quantize.dequantize`), made once per weight contents."""
    if precision == "fp32":
        return weight
    from elmo_fast.reference.quantize import dequantize

    return WEIGHT_CACHE.get(weight, ("dequantize", precision), lambda t: dequantize(t, precision))
