"""The Triton kernels compile for sm_80 and sm_90 without a GPU, without spills or shared-memory overflow.

A fast subset of ``benchmarks/gpu_compile.py`` (which compiles every launch configuration and the
CUDA kernels): per kernel the original model's configurations with the largest tiles, in the dtype
whose code path differs most (float32 products run on FMA units, bf16 ones on tensor cores).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("triton")

GPU_COMPILE_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_compile.py"


def _load():
    spec = importlib.util.spec_from_file_location("elmo_fast_gpu_compile", GPU_COMPILE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_compile = _load()
JOBS = gpu_compile.triton_jobs(["original"])


def _pick(kernel: str, dtype: str, batches: str, h0: bool = False, residual: bool = False) -> dict:
    for job in JOBS:
        tensors = job["args"]["tensors"]
        if (job["kernel"], job["dtype"], job["batches"]) == (kernel, dtype, batches) and \
                (tensors.get("h0") is not None) == h0 and (job["kernel"] == "lstmp_fwd_proj_kernel" and tensors.get("x") is not None) == residual:
            return job
    raise LookupError(f"no {kernel} {dtype} {batches} job (h0={h0}, residual={residual})")


SUBSET = {
    "cell-bf16-b33+": _pick("lstmp_fwd_cell_kernel", "bf16", "batch 33-512", h0=True),
    "cell-fp32-b1": _pick("lstmp_fwd_cell_kernel", "fp32", "batch 1-16"),
    "proj-bf16-b33+": _pick("lstmp_fwd_proj_kernel", "bf16", "batch 33-512", h0=True, residual=True),
    "char_cnn-fp32": _pick("char_cnn_fwd_kernel", "fp32", "any"),
    "highway-fp32": _pick("highway_fwd_kernel", "fp32", "any"),
    "highway-bf16": _pick("highway_fwd_kernel", "bf16", "any"),
}


def test_launch_configs_cover_every_kernel_and_tile_choice():
    kernels = {job["kernel"] for job in JOBS}
    assert kernels == set(gpu_compile.TRITON_KERNELS)
    # the original model's LSTM tiles change at batch 17 and 33: three tile sets x 2 dtypes x (2 cell + 4 proj) flags
    lstmp = [job for job in JOBS if job["kernel"].startswith("lstmp")]
    assert {job["batches"] for job in lstmp} == {"batch 1-16", "batch 17-32", "batch 33-512"}
    assert len(lstmp) == 3 * 2 * 6


def test_judge_flags_spills_and_shared_memory():
    row = {"ok": True, "error": None, "spills": 8, "smem_bytes": 1024}
    assert not gpu_compile.judge(dict(row), 90)["ok"]
    row = {"ok": True, "error": None, "spills": 0, "smem_bytes": gpu_compile.SMEM_OPTIN[80] + 1}
    assert not gpu_compile.judge(dict(row), 80)["ok"] and gpu_compile.judge(dict(row), 90)["ok"]


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("name", list(SUBSET))
def test_triton_kernel_compiles(name: str, arch: int):
    row = gpu_compile.compile_triton(SUBSET[name], arch)
    assert row["ok"], f"{row['kernel']} sm_{arch} {row['config']}: {row['error']}"
    assert row["spills"] == 0 and 0 < row["regs"] <= 255 and row["blocks_per_sm"] >= 1, row
