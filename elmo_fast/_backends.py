"""Backend discovery and dispatch.

A backend is a family of op implementations: ``cuda`` (compiled CUDA kernels), ``triton``,
``cpp`` (compiled CPU loops) and ``ref`` (the pure-PyTorch reference, always present). Which ones
loaded is probed once; ``auto`` resolves, per device type, to the first usable one in that order.
``ELMO_FAST_BACKEND`` overrides ``auto`` and fails loudly when the backend it names is unusable.
"""
from __future__ import annotations

import functools
import importlib
import logging
import os

import torch

BACKENDS: tuple[str, ...] = ("cuda", "triton", "cpp", "ref")
ENV_VAR = "ELMO_FAST_BACKEND"
logger = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """A requested backend cannot run here; the message says why and how to fix it."""


def _probe_module(module: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure means "not loaded"; report it as it is
        return False, f"{module} did not import: {type(exc).__name__}: {exc}"
    return True, f"{module} loaded"


# A constant of the process for torch.compile: it imports modules, which a graph cannot trace.
@functools.lru_cache(maxsize=None)
@torch.compiler.assume_constant_result
def probe(backend: str) -> tuple[bool, str]:
    """Whether ``backend`` loaded in this process, and why (not)."""
    if backend == "ref":
        return True, "pure PyTorch, always available"
    if backend == "cpp":
        return _probe_module("elmo_fast._C")
    if backend == "cuda":
        return _probe_module("elmo_fast._C_cuda")
    if backend == "triton":
        ok, why = _probe_module("triton")
        if not ok:
            return ok, why
        return _probe_module("elmo_fast.kernels.lstmp")
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'auto'")


def supports(backend: str, device_type: str) -> bool:
    """Whether ``backend`` can run on tensors of ``device_type`` (given that it loaded)."""
    if backend == "ref":
        return True
    if backend == "cpp":
        return device_type == "cpu"
    if backend == "cuda":
        return device_type == "cuda"
    if backend == "triton":
        return device_type == "cuda" or (device_type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
    return False


def _usable(backend: str, device_type: str) -> tuple[bool, str]:
    ok, why = probe(backend)
    if not ok:
        return False, why
    if not supports(backend, device_type):
        return False, f"{backend} does not run on {device_type} tensors"
    return True, why


@functools.lru_cache(maxsize=None)
def _auto(device_type: str) -> str:
    for backend in BACKENDS:
        if backend == "triton" and device_type == "cpu":
            # The Triton interpreter is for tests; they ask for it by name.
            continue
        if _usable(backend, device_type)[0]:
            logger.debug("backend auto on %s: %s", device_type, backend)
            return backend
    return "ref"


def resolve(requested: str | None, device: torch.device | str) -> str:
    """Turn ``"auto"`` (or None) or a backend name into a backend usable on ``device``, or raise."""
    device_type = torch.device(device).type
    if requested in (None, "auto"):
        forced = os.environ.get(ENV_VAR)
        if not forced or forced == "auto":
            return _auto(device_type)
        requested = forced
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
    ok, why = _usable(requested, device_type)
    if not ok:
        raise BackendUnavailable(
            f"backend {requested!r} cannot run on {device_type}: {why}. "
            "Run `elmo-fast env` to see what loaded; rebuild with `pip install -e .` for compiled backends."
        )
    return requested


def _products_line() -> str:
    """What ``weight_precision="bf16"`` / ``"int8"`` multiply in under the current ``ELMO_FAST_PRODUCTS``."""
    from elmo_fast.reference.lowp import PRODUCTS_ENV, products_mode, projection_precision

    try:
        mode = products_mode()
    except ValueError as exc:
        return f"invalid: {exc}"
    if mode == "fp32":
        return f"fp32 on the reduced weights ({PRODUCTS_ENV}=fp32)"
    setting = f"{PRODUCTS_ENV}={mode}" if PRODUCTS_ENV in os.environ else f"{PRODUCTS_ENV} unset: native"
    return f"in the weights' precision; int8 models' projections in {projection_precision('int8')} ({setting})"


def env_report() -> str:
    """A human-readable report: versions, threads, and which backends loaded (and why not)."""
    import platform

    import numpy

    from elmo_fast.version import __version__

    lines = [
        f"elmo_fast {__version__}",
        f"python {platform.python_version()} ({platform.machine()}, {platform.system()})",
        f"torch {torch.__version__} (threads: {torch.get_num_threads()}, cuda build: {torch.version.cuda or 'no'}, "
        f"cuda available: {torch.cuda.is_available()})",
        f"numpy {numpy.__version__}",
    ]
    try:
        import h5py

        lines.append(f"h5py {h5py.__version__}")
    except ImportError as exc:
        lines.append(f"h5py missing: {exc}")
    try:
        import tqdm

        lines.append(f"tqdm {tqdm.__version__}")
    except ImportError as exc:
        lines.append(f"tqdm missing: {exc}")
    lines.append("backends:")
    for backend in BACKENDS:
        ok, why = probe(backend)
        lines.append(f"  {backend:7s} {'yes' if ok else 'no ':3s} {why}")
    if probe("cpp")[0]:
        lines.append("cpp kernels:")
        lines.extend(f"  {line}" for line in torch.ops.elmo_fast.cpu_kernels())
    lines.append(f"reduced-precision products: {_products_line()}")
    from elmo_fast.ops.char_ids import probe_numba

    ok, why = probe_numba()
    lines.append(f"char ids: {'numba kernel' if ok else 'reference'} ({why})")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device_type in devices:
        lines.append(f"auto on {device_type}: {resolve('auto', device_type)}")
    if os.environ.get(ENV_VAR):
        lines.append(f"{ENV_VAR}={os.environ[ENV_VAR]}")
    return "\n".join(lines)
