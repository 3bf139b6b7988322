"""How the benchmarks time a call: ``torch.utils.benchmark`` on CPU, CUDA events on a GPU.

One place for it, so every script measures the same way: warm-up outside the timed region, one
value per call (milliseconds), synchronised with the device.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.benchmark import Timer


def cpu_times_ms(fn: Callable[[], object], min_run_time: float = 1.0) -> list[float]:
    """Milliseconds per call from :meth:`torch.utils.benchmark.Timer.blocked_autorange` (at torch's
    current thread count); calls slower than a few ms are timed one per block."""
    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [t * 1e3 for t in timer.blocked_autorange(min_run_time=min_run_time).times]


def cuda_times_ms(fn: Callable[[], object], device: torch.device, runs: int) -> list[float]:
    """Milliseconds of each of ``runs`` calls between two CUDA events on ``device``'s current stream."""
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end))
    return times


def times_ms(fn: Callable[[], object], device: torch.device, runs: int, warmup: int = 0) -> list[float]:
    """``warmup`` untimed calls, then per-call milliseconds: ``runs`` CUDA-event timings on a GPU; on
    CPU ``torch.utils.benchmark`` with each call in its own measurement (``runs`` of them)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return cuda_times_ms(fn, device, runs)
    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return [timer.timeit(number=1).median * 1e3 for _ in range(runs)]
