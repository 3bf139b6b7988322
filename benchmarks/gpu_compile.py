"""Compile every GPU kernel ahead of time for sm_80 and sm_90 on a machine without a GPU; report resources.

Triton kernels: every launch configuration the launchers can produce — the tile choices of
``lstmp_tiles`` over batch 1-512, ``highway_tiles`` and ``char_cnn_tiles``, for the tiny, small and
original models, in float32 and bfloat16, with every heuristic flag combination that a model run
sets (initial state given or not, residual on layer 1 only; both clips and the final state are on in
every config) — through ``triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32))``. The
arguments are specialised by Triton's own binder on small CPU tensors, so the signature,
constexprs and divisibility hints are the ones a GPU launch would produce.

CUDA kernels: each ``csrc/cuda/*.cu`` through ``nvcc -cubin`` for sm_80, sm_90 and sm_90a (the
explicit instantiations in those files are the kernels); every ``__global__`` function in the cubin
becomes a row.

Resources come from ``cuobjdump --dump-resource-usage`` on each cubin (Triton ships one): registers
per thread, local memory per thread (``spills``: bytes of register spills and local arrays; 0 means
none), shared memory per block (Triton: its metadata's dynamic shared memory; CUDA: the static
amount — the persistent kernel's dynamic shared memory is planned at run time against the device's
opt-in limit). A row is not ok when compilation fails, local memory is used, or shared memory
exceeds the opt-in limit per block of the arch (A100 163 KB, H100 227 KB; CUDA C Programming
Guide, compute capability table). ``blocks_per_sm`` is the occupancy those resources allow.

    python benchmarks/gpu_compile.py --out benchmarks/results/gpu-compile_sm80-sm90.json [--jobs 2] [--configs tiny]
    python benchmarks/gpu_compile.py --summary-of benchmarks/results/gpu-compile_sm80-sm90.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import triton
from tqdm import tqdm
from triton.runtime import Heuristics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import BENCH_CONFIGS  # noqa: E402

from elmo_fast.kernels.char_cnn import char_cnn_fwd_kernel, char_cnn_tiles  # noqa: E402
from elmo_fast.kernels.highway import highway_fwd_kernel, highway_tiles  # noqa: E402
from elmo_fast.kernels.lstmp import lstmp_fwd_cell_kernel, lstmp_fwd_proj_kernel, lstmp_tiles  # noqa: E402
from elmo_fast.kernels.utils import block, dot_flags  # noqa: E402

ARCHS = (80, 90)
CUDA_ARCHS = ("sm_80", "sm_90", "sm_90a")
DEFAULT_CONFIGS = ("original", "small", "tiny")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCHES = range(1, 513)
# Shared memory per block with the opt-in attribute, and per SM (CUDA C Programming Guide, table of
# technical specifications per compute capability: 8.0 -> 163 KB / 164 KB, 9.0 -> 227 KB / 228 KB).
SMEM_OPTIN = {80: 163 * 1024, 90: 227 * 1024}
SMEM_PER_SM = {80: 164 * 1024, 90: 228 * 1024}
TRITON_KERNELS = {
    "lstmp_fwd_cell_kernel": lstmp_fwd_cell_kernel,
    "lstmp_fwd_proj_kernel": lstmp_fwd_proj_kernel,
    "highway_fwd_kernel": highway_fwd_kernel,
    "char_cnn_fwd_kernel": char_cnn_fwd_kernel,
}


def _tensor(kind: str) -> torch.Tensor:
    """A small CPU tensor standing in for a kernel argument: only its dtype and alignment matter."""
    return torch.empty(16, dtype={"fp32": torch.float32, "bf16": torch.bfloat16, "i64": torch.int64, "i32": torch.int32}[kind])


def lstmp_jobs(config: str, dtype: str) -> list[dict]:
    """The two step kernels of one model config and dtype: every tile choice over batch 1-512 x flags."""
    options = BENCH_CONFIGS[config]
    cell, proj = options.cell_dim, options.projection_dim
    tile_sets: dict[tuple, list[int]] = {}
    for batch in BATCHES:
        tile_sets.setdefault(tuple(sorted(lstmp_tiles(batch, cell, proj, DTYPES[dtype]).items())), []).append(batch)
    jobs = []
    for tiles, batches in tile_sets.items():
        t = dict(tiles)
        # the graph path (the CUDA default) pads the batch to a multiple of BB
        padded = -(-batches[-1] // t["BB"]) * t["BB"]
        common = {"C": cell, "P": proj, "BB": t["BB"], "s": 3, "T": 24, "B": padded}
        label = f"batch {batches[0]}-{batches[-1]}"
        for h0 in (False, True):
            jobs.append({"kernel": "lstmp_fwd_cell_kernel", "config": config, "dtype": dtype, "batches": label, "args": {
                **common, "BC": t["BC"], "BK": t["BK_H"], "num_warps": t["WARPS_CELL"], "cell_clip": options.cell_clip or 0.0,
                "tensors": {"gx": dtype, "lengths": "i64", "w_hh": dtype, "bias": dtype, "h": dtype, "c": "fp32",
                            "h0": dtype if h0 else None, "c0": "fp32" if h0 else None, "ct": dtype, "a": dtype}}})
            for residual in (False, True):
                jobs.append({"kernel": "lstmp_fwd_proj_kernel", "config": config, "dtype": dtype, "batches": label, "args": {
                    **common, "BP": t["BP"], "BK": t["BK_A"], "num_warps": 4, "proj_clip": options.proj_clip or 0.0,
                    "tensors": {"a": dtype, "w_proj": dtype, "x": dtype if residual else None, "lengths": "i64", "h": dtype,
                                "h0": dtype if h0 else None, "ht": dtype, "o": dtype}}})
    return jobs


def encoder_jobs(config: str, dtype: str) -> list[dict]:
    """The char-CNN and highway kernels of one model config and dtype (their tiles do not depend on the batch)."""
    options = BENCH_CONFIGS[config]
    filters, slots, embed = options.n_filters, options.max_characters_per_token, options.char_embed_dim
    cnn = char_cnn_tiles(slots, filters)
    hw = highway_tiles(filters, DTYPES[dtype])
    return [
        {"kernel": "char_cnn_fwd_kernel", "config": config, "dtype": dtype, "batches": "any", "args": {
            "N": 20 * 32, "L": slots, "E": embed, "F": filters, "DE": block(embed),
            "ACTIVATION": options.activation, **cnn,
            "tensors": {"ids": "i64", "char_embed": dtype, "w": dtype, "widths": "i32", "bias": dtype, "y": dtype}}},
        {"kernel": "highway_fwd_kernel", "config": config, "dtype": dtype, "batches": "any", "args": {
            "M": 20 * 32 + 3, "F": filters, **hw,
            "tensors": {"x": dtype, "w_transform": dtype, "b_transform": dtype, "w_carry": dtype, "b_carry": dtype, "y": dtype}}},
    ]


def triton_jobs(configs: list[str]) -> list[dict]:
    """Every (kernel, configuration) to compile, before the archs; identical compiles are merged."""
    merged: dict[str, dict] = {}
    for config in configs:
        for dtype in DTYPES:
            for job in lstmp_jobs(config, dtype) + encoder_jobs(config, dtype):
                key = json.dumps([job["kernel"], job["dtype"], job["args"]], sort_keys=True)
                if key in merged:
                    merged[key]["config"] += f",{config}"
                else:
                    merged[key] = job
    return list(merged.values())


def select(jobs: list[dict], kernel: str, dtype: str, batches: str, h0: bool = False, residual: bool = False) -> dict:
    """The job of ``kernel`` in ``dtype`` for ``batches`` (e.g. "batch 33-512", "any") with these flags."""
    for job in jobs:
        tensors = job["args"]["tensors"]
        if (job["kernel"], job["dtype"], job["batches"]) == (kernel, dtype, batches) and (tensors.get("h0") is not None) == h0 \
                and (job["kernel"] == "lstmp_fwd_proj_kernel" and tensors.get("x") is not None) == residual:
            return job
    raise LookupError(f"no {kernel} {dtype} {batches} job (h0={h0}, residual={residual})")


# The CI subset (tests/test_gpu_compile.py): per kernel the original model's largest tiles; both dtypes for
# the LSTM cell kernel (float32 products run on FMA units at ieee precision, bf16 ones on tensor cores).
CI_SUBSET = (
    ("lstmp_fwd_cell_kernel", "bf16", "batch 33-512", True, False),
    ("lstmp_fwd_cell_kernel", "fp32", "batch 33-512", False, False),
    ("lstmp_fwd_proj_kernel", "bf16", "batch 33-512", True, True),
    ("char_cnn_fwd_kernel", "bf16", "any", False, False),
    ("highway_fwd_kernel", "fp32", "any", False, False),
)


def describe(job: dict) -> str:
    """The row's ``config`` text: model config(s), dtype, batches, block sizes and flags."""
    args = job["args"]
    blocks = " ".join(f"{k}={args[k]}" for k in ("BB", "BC", "BP", "BK", "BM", "BN", "BF", "BL") if k in args)
    flags = [name for name, arg in (("h0", "h0"), ("residual", "x"))
             if job["kernel"].startswith("lstmp") and args["tensors"].get(arg) is not None]
    return f"{job['config']} {job['dtype']} {job['batches']}: {blocks} warps={args['num_warps']}" + (
        f" +{'+'.join(flags)}" if flags else "")


def _tools() -> tuple[str, str]:
    nvidia_bin = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return str(nvidia_bin / "cuobjdump"), str(nvidia_bin / "ptxas")


def resource_usage(cubin: Path) -> dict[str, dict[str, int]]:
    """``cuobjdump --dump-resource-usage``: {function: {REG, STACK, SHARED, LOCAL}}."""
    out = subprocess.run([_tools()[0], "--dump-resource-usage", str(cubin)], capture_output=True, text=True, check=True).stdout
    usage: dict[str, dict[str, int]] = {}
    name = None
    for line in out.splitlines():
        found = re.match(r"\s*Function (\S+):", line)
        if found:
            name = found.group(1)
        elif name and "REG:" in line:
            usage[name] = {k: int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", line)}
    return usage


def blocks_per_sm(arch: int, regs: int, warps: int, smem: int) -> int:
    """Resident blocks per SM allowed by registers (64 K per SM, allocated per warp in units of 256),
    shared memory (+1 KB reserved per block) and 64 warps / 32 blocks per SM."""
    regs_per_warp = -(-max(regs, 1) * 32 // 256) * 256
    by_regs = 65536 // (regs_per_warp * warps)
    by_smem = SMEM_PER_SM[arch] // (smem + 1024)
    return max(0, min(by_regs, by_smem, 64 // warps, 32))


def judge(row: dict, arch: int) -> dict:
    """Mark the row not ok on spills (local memory) or shared memory over the arch's per-block limit."""
    problems = []
    if row["spills"]:
        problems.append(f"{row['spills']} bytes of local memory per thread (spills)")
    if row["smem_bytes"] > SMEM_OPTIN[arch]:
        problems.append(f"shared memory {row['smem_bytes']} B > {SMEM_OPTIN[arch]} B per block on sm_{arch}")
    if problems:
        row.update(ok=False, error="; ".join(problems))
    return row


def compile_triton(job: dict, arch: int) -> dict:
    """Compile one job for ``sm_<arch>``; the row with its resources, or with the error."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.compiler import compile as triton_compile
    from triton.runtime.jit import create_function_from_signature

    row = {"kernel": job["kernel"], "kind": "triton", "arch": f"sm_{arch}", "config": describe(job), "ok": False,
           "regs": None, "spills": None, "smem_bytes": None, "error": None, "num_warps": job["args"]["num_warps"]}
    start = time.perf_counter()
    try:
        heuristic = TRITON_KERNELS[job["kernel"]]
        fn = heuristic.fn if isinstance(heuristic, Heuristics) else heuristic
        args = {k: v for k, v in job["args"].items() if k != "tensors"}
        args.update({k: None if v is None else _tensor(v) for k, v in job["args"]["tensors"].items()})
        args.update(dot_flags(DTYPES[job["dtype"]]))
        for name, rule in getattr(heuristic, "values", {}).items():
            args[name] = rule(args)
        target = GPUTarget("cuda", arch, 32)
        backend = make_backend(target)
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound, specialization, options = binder(**args)
        options, signature, constexprs, attrs = fn._pack_args(backend, args, bound, specialization, options)
        kernel = triton_compile(ASTSource(fn, signature, constexprs, attrs), target=target, options=options.__dict__)
        with tempfile.TemporaryDirectory() as tmp:
            cubin = Path(tmp) / "k.cubin"
            cubin.write_bytes(kernel.asm["cubin"])
            usage = next(iter(resource_usage(cubin).values()))
        smem = int(kernel.metadata.shared) + usage["SHARED"]
        row.update(ok=True, regs=usage["REG"], spills=usage["LOCAL"] + usage["STACK"], smem_bytes=smem,
                   blocks_per_sm=blocks_per_sm(arch, usage["REG"], row["num_warps"], smem))
        judge(row, arch)
    except Exception as exc:  # a compile error is a result row, not a crash of the sweep
        row["error"] = f"{type(exc).__name__}: {str(exc)[-2000:]}"
    row["compile_s"] = round(time.perf_counter() - start, 2)
    return row


def compile_cuda(source: str, arch: str) -> list[dict]:
    """``nvcc -cubin`` of one ``.cu`` file for ``arch``; one row per kernel in it (or one error row)."""
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    number = int(re.sub(r"\D", "", arch))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "k.cubin"
        cmd = [nvcc, "-std=c++17", "-O3", "-cubin", f"-arch={arch}", str(ROOT / source), "-o", str(cubin)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        base = {"kind": "cuda", "arch": arch, "ok": False, "regs": None, "spills": None, "smem_bytes": None,
                "error": None, "compile_s": round(time.perf_counter() - start, 2)}
        if proc.returncode != 0:
            return [{**base, "kernel": source, "config": "", "error": (proc.stdout + proc.stderr)[-2000:]}]
        usage = resource_usage(cubin)
    names = subprocess.run(["c++filt"] if shutil.which("c++filt") else ["cat"], input="\n".join(usage), capture_output=True,
                           text=True).stdout.splitlines()
    rows = []
    for (mangled, use), name in zip(usage.items(), names):
        kernel = name.split("<")[0].split("(")[0].replace("elmo_fast::", "").removeprefix("void ")
        config = name[len(name.split("<")[0]):].split(">(")[0] + ">" if "<" in name else ""
        row = {**base, "kernel": kernel, "config": f"{source}: {config}", "ok": True, "regs": use["REG"],
               "spills": use["LOCAL"] + use["STACK"], "smem_bytes": use["SHARED"], "mangled": mangled}
        rows.append(judge(row, number))
    return rows


def _run(task: tuple) -> list[dict]:
    kind, payload, arch = task
    return [compile_triton(payload, arch)] if kind == "triton" else compile_cuda(payload, arch)


def print_table(rows: list[dict]) -> None:
    """One line per row: kernel, arch, ok, registers, spills, shared memory, blocks/SM, config."""
    print(f"{'kernel':<26} {'arch':<7} {'ok':<3} {'regs':>4} {'spill':>5} {'smem B':>7} {'blk/SM':>6}  config")
    for r in rows:
        print(f"{r['kernel']:<26} {r['arch']:<7} {'yes' if r['ok'] else 'NO':<3} {r['regs'] if r['regs'] is not None else '-':>4} "
              f"{r['spills'] if r['spills'] is not None else '-':>5} {r['smem_bytes'] if r['smem_bytes'] is not None else '-':>7} "
              f"{r.get('blocks_per_sm', '-'):>6}  {r['config']}" + (f"  ERROR: {r['error'][:200]}" if r["error"] else ""))


def print_summary(rows: list[dict]) -> None:
    """One markdown line per kernel and arch: configurations, how many ok, register range, worst
    spills, largest shared memory, fewest resident blocks per SM."""
    print("| kernel | kind | arch | configs | ok | regs | spills (B) | smem max (B) | blocks/SM min |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["kernel"], r["kind"], r["arch"]), []).append(r)
    for (kernel, kind, arch), group in groups.items():
        done = [r for r in group if r["regs"] is not None]
        regs = sorted({r["regs"] for r in done})
        blocks = [r["blocks_per_sm"] for r in done if r.get("blocks_per_sm") is not None]
        print(f"| {kernel} | {kind} | {arch} | {len(group)} | {sum(r['ok'] for r in group)} | "
              f"{f'{regs[0]}-{regs[-1]}' if regs else '-'} | {max((r['spills'] for r in done), default='-')} | "
              f"{max((r['smem_bytes'] for r in done), default='-')} | {min(blocks) if blocks else '-'} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="JSON file to write (required unless --summary-of)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="model configs (tiny, small, medium, original)")
    parser.add_argument("--archs", default="80,90", help="Triton targets (compute capabilities)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="compiles in parallel")
    parser.add_argument("--no-cuda", action="store_true", help="skip the nvcc part")
    parser.add_argument("--summary-of", type=Path, help="print the summary table of this JSON and exit (no compiling)")
    parser.add_argument("--subset", choices=["all", "ci"], default="all",
                        help="ci: only CI_SUBSET of the original model (overrides --configs)")
    args = parser.parse_args(argv)
    if args.summary_of is not None:
        result = json.loads(args.summary_of.read_text())
        print_summary(result["rows"])
        return result
    if args.out is None:
        parser.error("--out is required")
    archs = [int(a) for a in args.archs.split(",")]
    if args.subset == "ci":
        args.configs = "original"
        jobs = [select(triton_jobs(["original"]), *spec) for spec in CI_SUBSET]
    else:
        jobs = triton_jobs(args.configs.split(","))
    tasks = [("triton", job, arch) for job in jobs for arch in archs]
    if not args.no_cuda:
        tasks[:0] = [("cuda", str(p.relative_to(ROOT)), arch) for p in sorted((ROOT / "csrc" / "cuda").glob("*.cu")) for arch in CUDA_ARCHS]
    start = time.perf_counter()
    rows: list[dict] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in tqdm(pool.map(_run, tasks), total=len(tasks), desc="compiling", unit="kernel"):
            rows += result
    rows.sort(key=lambda r: (r["kind"], r["kernel"], r["arch"], r["config"]))
    print_table(rows)
    print_summary(rows)
    result = {
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "triton": triton.__version__, "nvcc": subprocess.run([shutil.which("nvcc") or "nvcc", "--version"],
                                                                        capture_output=True, text=True).stdout.strip().splitlines()[-1:],
                    "load": os.getloadavg(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True).stdout.strip()},
        "settings": {"configs": args.configs.split(","), "subset": args.subset, "archs": archs, "cuda_archs": list(CUDA_ARCHS), "jobs": args.jobs},
        "wall_s": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    bad = [r for r in rows if not r["ok"]]
    print(f"{len(rows)} rows, {len(bad)} not ok, {result['wall_s']} s; JSON: {args.out}")
    return result


if __name__ == "__main__":
    sys.exit(1 if any(not r["ok"] for r in main()["rows"]) else 0)
