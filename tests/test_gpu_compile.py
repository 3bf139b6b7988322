"""The Triton kernels compile for sm_80 and sm_90 without a GPU, without spills or shared-memory overflow.

Runs the CI subset of ``benchmarks/gpu_compile.py`` (which compiles every launch configuration and
the CUDA kernels) in a subprocess: the test session runs Triton in its interpreter
(``TRITON_INTERPRET=1``, tests/conftest.py), under which kernels cannot be compiled.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from utils import BENCHMARKS_DIR, load_benchmark_script

pytest.importorskip("triton")

GPU_COMPILE_PY = BENCHMARKS_DIR / "gpu_compile.py"


@pytest.fixture(scope="module")
def gpu_compile():
    return load_benchmark_script("gpu_compile")


def test_launch_configs_cover_every_kernel_and_tile_choice(gpu_compile):
    jobs = gpu_compile.triton_jobs(["original"])
    assert {job["kernel"] for job in jobs} == set(gpu_compile.TRITON_KERNELS)
    # the original model's LSTM tiles change at batch 17 and 33: three tile sets x 2 dtypes x (2 cell + 4 proj) flags
    lstmp = [job for job in jobs if job["kernel"].startswith("lstmp")]
    assert {job["batches"] for job in lstmp} == {"batch 1-16", "batch 17-32", "batch 33-512"}
    assert len(lstmp) == 3 * 2 * 6
    for spec in gpu_compile.CI_SUBSET:
        gpu_compile.select(jobs, *spec)


def test_judge_flags_spills_and_shared_memory(gpu_compile):
    row = {"ok": True, "error": None, "spills": 8, "smem_bytes": 1024}
    assert not gpu_compile.judge(dict(row), 90)["ok"]
    row = {"ok": True, "error": None, "spills": 0, "smem_bytes": gpu_compile.SMEM_OPTIN[80] + 1}
    assert not gpu_compile.judge(dict(row), 80)["ok"] and gpu_compile.judge(dict(row), 90)["ok"]


def test_ci_subset_compiles_for_sm80_and_sm90(tmp_path):
    out = tmp_path / "gpu_compile.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run([sys.executable, str(GPU_COMPILE_PY), "--subset", "ci", "--no-cuda", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert out.exists(), f"exit status {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    rows = json.loads(out.read_text())["rows"]
    bad = [f"{r['kernel']} {r['arch']} {r['config']}: {r['error']}" for r in rows if not r["ok"] or r["spills"]]
    assert not bad, "\n".join(bad)
    assert {(r["kernel"], r["arch"]) for r in rows} == {
        (k, a) for k in ("lstmp_fwd_cell_kernel", "lstmp_fwd_proj_kernel", "char_cnn_fwd_kernel", "highway_fwd_kernel")
        for a in ("sm_80", "sm_90")}
    assert proc.returncode == 0, proc.stdout[-4000:]
