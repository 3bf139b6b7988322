"""A roofline performance model of the Triton path on H100 / H200, written before any GPU run.

For the original model (P = 512, C = 4096, 2048 char-CNN filters, two highway layers, two biLSTM
layers) at batch 1, 32 and 128 sentences of T = 20 tokens, per kernel launch: the bytes it moves,
the FLOPs it executes (padded to its tiles: a batch-1 LSTM step still multiplies 16 rows), and
the predicted time ``max(bytes / bandwidth, FLOPs / peak)``. Weights that are re-read per batch
tile are counted once per tile. Two memory levels are given: every byte from HBM, and the LSTM
step weights from L2 (a bf16 layer's w_hh + w_proj are 40 MB, under the 50 MB L2, and stay there
across the 20 steps of one layer; float32 ones are 80 MB and do not). A CUDA-graph node costs a
few microseconds of launch latency that the roofline leaves out: ``floor_us`` states the assumption.

Next to each kernel: registers per thread and resident blocks per SM on sm_90 from the
``gpu_compile.py`` JSON (the configuration each launch uses). A GPU run then checks the model.

    python benchmarks/gpu_model.py --compile-json benchmarks/results/gpu-compile_sm80-sm90.json \\
        --out benchmarks/results/gpu-model.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import BENCH_CONFIGS  # noqa: E402

import torch  # noqa: E402

from elmo_fast.kernels.char_cnn import char_cnn_tiles  # noqa: E402
from elmo_fast.kernels.highway import highway_tiles  # noqa: E402
from elmo_fast.kernels.lstmp import lstmp_tiles  # noqa: E402

# Datasheet peaks (dense, no sparsity). NVIDIA H100 Tensor Core GPU datasheet (SXM5): HBM3 3.35 TB/s,
# BF16 tensor 989 TFLOPS, FP32 67 TFLOPS. NVIDIA H200 product page / datasheet (SXM): HBM3e 4.8 TB/s,
# same compute as H100 SXM. L2: no datasheet figure; 2x HBM of the H100 is an assumption of this model.
GPUS = {
    "H100-SXM": {"hbm_Bps": 3.35e12, "l2_Bps": 6.7e12, "bf16_flops": 989e12, "fp32_flops": 67e12, "sms": 132},
    "H200-SXM": {"hbm_Bps": 4.8e12, "l2_Bps": 6.7e12, "bf16_flops": 989e12, "fp32_flops": 67e12, "sms": 132},
}
FLOOR_US = 3.0
TOKENS = 20
BATCHES = (1, 32, 128)


def lstm_step(batch: int, cell: int, proj: int, dtype: torch.dtype, dirs: int = 2) -> list[dict]:
    """The two launches of one time step of one layer (both directions)."""
    e = 2 if dtype == torch.bfloat16 else 4
    t = lstmp_tiles(batch, cell, proj, dtype)
    padded = math.ceil(batch / t["BB"]) * t["BB"]
    tiles = padded // t["BB"]
    cell_bytes = {"weights": dirs * proj * 4 * cell * e, "reread": (tiles - 1) * dirs * proj * 4 * cell * e,
                  "activations": dirs * batch * (proj * e + 4 * cell * e + 2 * cell * 4 + cell * e) + dirs * 4 * cell * e}
    proj_bytes = {"weights": dirs * cell * proj * e, "reread": (tiles - 1) * dirs * cell * proj * e,
                  "activations": dirs * batch * (cell * e + 3 * proj * e)}
    return [
        {"kernel": "lstmp_fwd_cell_kernel", "launches": TOKENS, "bytes": cell_bytes,
         "flops": 2 * dirs * padded * proj * 4 * cell + 30 * dirs * padded * cell, "tiles": t},
        {"kernel": "lstmp_fwd_proj_kernel", "launches": TOKENS, "bytes": proj_bytes,
         "flops": 2 * dirs * padded * cell * proj, "tiles": t},
    ]


def encoder(batch: int, options, dtype: torch.dtype) -> list[dict]:
    """Char CNN, highway layers and the projection (cuBLAS addmm) for ``batch`` x TOKENS tokens."""
    e = 2 if dtype == torch.bfloat16 else 4
    n = batch * TOKENS
    f, slots, d = options.n_filters, options.max_characters_per_token, options.char_embed_dim
    widest = max(w for w, _ in options.filters)
    cnn = char_cnn_tiles(slots, f)
    programs = math.ceil(n / cnn["BN"])
    # every block of BF filters loops over the taps of the widest filter in it
    widths = [w for w, count in options.filters for _ in range(count)]
    taps = sum(max(widths[i:i + cnn["BF"]]) * cnn["BF"] for i in range(0, f, cnn["BF"]))
    cnn_flops = 2 * programs * cnn["BN"] * cnn["BL"] * d * taps
    hw = highway_tiles(f, dtype)
    hw_tiles = math.ceil(n / hw["BM"])
    rows = [
        {"kernel": "char_cnn_fwd_kernel", "launches": 1, "flops": cnn_flops,
         "bytes": {"weights": widest * d * f * e, "reread": (programs - 1) * widest * d * f * e,
                   "activations": n * slots * 8 + n * slots * d * e + n * f * e}},
    ]
    for _ in range(options.n_highway):
        rows.append({"kernel": "highway_fwd_kernel", "launches": 1, "flops": 2 * 2 * hw_tiles * hw["BM"] * f * f,
                     "bytes": {"weights": 2 * f * f * e, "reread": (hw_tiles - 1) * 2 * f * f * e,
                               "activations": 2 * n * f * e, "reread_x": (f // hw["BN"] - 1) * n * f * e}})
    p = options.projection_dim
    rows.append({"kernel": "projection (cuBLAS addmm)", "launches": 1, "flops": 2 * n * f * p,
                 "bytes": {"weights": f * p * e, "reread": 0, "activations": n * (f + p) * e}})
    return rows


def input_product(batch: int, cell: int, proj: int, dtype: torch.dtype, dirs: int = 2) -> dict:
    """The per-layer input product x @ w_ih for all positions (cuBLAS bmm)."""
    e = 2 if dtype == torch.bfloat16 else 4
    n = batch * TOKENS
    return {"kernel": "input product (cuBLAS bmm)", "launches": 1, "flops": 2 * dirs * n * proj * 4 * cell,
            "bytes": {"weights": dirs * proj * 4 * cell * e, "reread": 0, "activations": dirs * n * (proj + 4 * cell) * e}}


def predict(row: dict, gpu: dict, dtype: torch.dtype, weights_in_l2: bool) -> float:
    """Microseconds of one launch: the slower of memory and arithmetic. Activations and the first read
    of the weights come from HBM (the weights from L2 when ``weights_in_l2``), re-reads per tile from L2."""
    peak = gpu["bf16_flops"] if dtype == torch.bfloat16 else gpu["fp32_flops"]
    b = row["bytes"]
    memory = b["activations"] / gpu["hbm_Bps"] + b["weights"] / (gpu["l2_Bps"] if weights_in_l2 else gpu["hbm_Bps"])
    memory += (b["reread"] + b.get("reread_x", 0)) / gpu["l2_Bps"]
    return 1e6 * max(memory, row["flops"] / peak)


def resources(compile_rows: list[dict], kernel: str, dtype: str, batches: str | None) -> dict:
    """Registers and blocks/SM on sm_90 of the launch configuration (no h0, no residual)."""
    for r in compile_rows:
        if r["kind"] != "triton" or r["kernel"] != kernel or r["arch"] != "sm_90" or "original" not in r["config"]:
            continue
        if f" {dtype} " in r["config"] and (batches is None or batches in r["config"]) and "+" not in r["config"]:
            return {"regs": r["regs"], "blocks_per_sm": r.get("blocks_per_sm"), "compile_config": r["config"]}
    return {"regs": None, "blocks_per_sm": None, "compile_config": None}


def batch_range(batch: int, cell: int, proj: int, dtype: torch.dtype, compile_rows: list[dict]) -> str | None:
    tiles = lstmp_tiles(batch, cell, proj, dtype)
    for r in compile_rows:
        if r["kernel"] == "lstmp_fwd_cell_kernel" and f"BB={tiles['BB']} " in r["config"] and "original" in r["config"]:
            return r["config"].split(": ")[0].split(" ", 2)[2]
    return None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile-json", type=Path, required=True, help="output of benchmarks/gpu_compile.py")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    compile_rows = json.loads(args.compile_json.read_text())["rows"]
    options = BENCH_CONFIGS["original"]
    cell, proj = options.cell_dim, options.projection_dim
    rows = []
    for dtype_name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        for batch in BATCHES:
            kernels = encoder(batch, options, dtype) + [input_product(batch, cell, proj, dtype)] + lstm_step(batch, cell, proj, dtype)
            br = batch_range(batch, cell, proj, dtype, compile_rows)
            for k in kernels:
                row = {"dtype": dtype_name, "batch": batch, "kernel": k["kernel"], "launches_per_layer": k["launches"],
                       "mbytes": round(sum(k["bytes"].values()) / 1e6, 3), "weight_mbytes": round(k["bytes"]["weights"] / 1e6, 3),
                       "l2_reread_mbytes": round((k["bytes"]["reread"] + k["bytes"].get("reread_x", 0)) / 1e6, 3),
                       "gflop": round(k["flops"] / 1e9, 4)}
                row["intensity_flop_per_byte"] = round(k["flops"] / sum(k["bytes"].values()), 1)
                in_l2 = k["kernel"].startswith("lstmp") and dtype == torch.bfloat16
                for gpu_name, gpu in GPUS.items():
                    row[f"{gpu_name}_us"] = round(predict(k, gpu, dtype, False), 2)
                    if in_l2:
                        row[f"{gpu_name}_us_weights_in_L2"] = round(predict(k, gpu, dtype, True), 2)
                if "cuBLAS" not in k["kernel"]:
                    row.update(resources(compile_rows, k["kernel"], dtype_name, br if k["kernel"].startswith("lstmp") else None))
                rows.append(row)
    result = {"gpus": GPUS, "floor_us": FLOOR_US, "tokens": TOKENS, "config": "original", "rows": rows,
              "compile_json": str(args.compile_json)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print_markdown(rows)
    return result


def print_markdown(rows: list[dict]) -> None:
    print("| dtype | batch | kernel | MB moved | of which weights / L2 re-reads | GFLOP | H100 us | H200 us "
          "| H100 / H200 us, weights in L2 | regs | blocks/SM |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        l2 = f"{r['H100-SXM_us_weights_in_L2']} / {r['H200-SXM_us_weights_in_L2']}" if "H100-SXM_us_weights_in_L2" in r else ""
        print(f"| {r['dtype']} | {r['batch']} | {r['kernel']} | {r['mbytes']} | {r['weight_mbytes']} / {r['l2_reread_mbytes']} "
              f"| {r['gflop']} | "
              f"{r['H100-SXM_us']} | {r['H200-SXM_us']} | {l2} | {r.get('regs') or ''} | {r.get('blocks_per_sm') or ''} |")
    for dtype in ("bf16", "fp32"):
        for batch in BATCHES:
            sel = [r for r in rows if r["dtype"] == dtype and r["batch"] == batch]
            total = {}
            for gpu in GPUS:
                enc = sum(r[f"{gpu}_us"] for r in sel if not r["kernel"].startswith(("lstmp", "input")))
                key = f"{gpu}_us_weights_in_L2" if dtype == "bf16" else f"{gpu}_us"
                lstm = sum(r[f"{gpu}_us"] if "input" in r["kernel"] else r[key] * r["launches_per_layer"]
                           for r in sel if r["kernel"].startswith(("lstmp", "input")))
                launches = sum(r["launches_per_layer"] for r in sel if r["kernel"].startswith(("lstmp", "input")))
                total[gpu] = (enc + 2 * lstm, 2 * launches)
            print(f"{dtype} batch {batch}, whole model: " + ", ".join(f"{gpu} {t:.0f} us" for gpu, (t, _) in total.items())
                  + f" ({next(iter(total.values()))[1]} LSTM launches; + {FLOOR_US:.0f} us each where launch-bound)")


if __name__ == "__main__":
    main()
