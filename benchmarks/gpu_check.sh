#!/usr/bin/env bash
# GPU check of the Triton and CUDA backends on one H100/H200, in about 6 minutes (8 at most: every
# step's time limit is cut to what is left before GPU_CHECK_SECONDS, default 480 s). The steps, in
# the order of what matters most, each writing its own file under $OUT as soon as it has a number:
#
#   step                                            expected   limit   writes
#   0. environment (nvidia-smi, torch, triton, nvcc)      5 s       -   gpu_check.log
#   1. the card's ceilings: bf16/fp32 matmul, copy       10 s     60    roofline.json
#   2. build elmo_fast._C and elmo_fast._C_cuda (sm_90a,
#      mandatory) side by side, in place                 90 s    240    (log)
#   3. benchmarks/run.py, original config: batches 1 8 32 64 128 512, fp32 and bf16, backends ref,
#      triton, cuda + the torch.nn.LSTM(proj_size) anchor, error of every embed row vs ref fp32
#                                                        90 s    200    bench_original.json (every row)
#   4. benchmarks/cuda_rows.py: the issue-8 targets      25 s     90    cuda_rows.json
#   5. the GPU tests: tests/test_triton_*.py and tests/test_cuda_lstmp.py (xdist -n 8)
#                                                        90 s    150    tests.xml
#   6. benchmarks/run.py, small config: batches 1 8 32 128 512, as step 3
#                                                        45 s    100    bench_small.json
#   7. whole-model parity, original, batch 64: every backend fp32/bf16 vs ref fp32, with the
#      bf16 compute error on the same rounded weights    30 s     90    parity_original_b64.json
#   8. the short table of all of it, printed last                     summary.txt
#
# summary.txt is rewritten after every step, so a run cut short still leaves its table. $OUT holds
# at most those 8 files (the device tool brings back 8). Run from anywhere on a machine with python3,
# torch (CUDA build), triton and nvcc:
#     bash benchmarks/gpu_check.sh              # results in $OUT (default benchmarks/results/gpu_check)
# Nothing is downloaded: the extensions are built in the tree, and the package is put on PYTHONPATH
# from a copy of it (with kernels/ as elmo_fast/kernels). When the CUDA build fails, its steps are
# reported as failed and the Triton steps still run. A step that fails or runs out of time is
# reported and the next one still runs; the exit status is non-zero when any step failed.
#
# GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU under the Triton interpreter with the tiny
# model and batches 1,2: a check of this script itself, not of the GPU (about 2 minutes on 2 cores).
# It skips the build unless GPU_CHECK_DRY_BUILD=1 (then it builds _C alone, the same way).
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/benchmarks/results/gpu_check}"
PY="${PYTHON:-python3}"
START=$(date +%s)
DEADLINE=$(( START + ${GPU_CHECK_SECONDS:-480} ))
DRY="${GPU_CHECK_DRY_RUN:-0}"
DEVICE=cuda MAIN_CONFIG=original SECOND_CONFIG=small MAIN_BATCHES=1,8,32,64,128,512 SECOND_BATCHES=1,8,32,128,512
PARITY_BATCH=64 PARITY_RUNS=5 REPEATS=5 ROOF_ARGS=() XDIST=8
unset TRITON_INTERPRET
if [[ "$DRY" == 1 ]]; then
    DEVICE=cpu MAIN_CONFIG=tiny SECOND_CONFIG=tiny MAIN_BATCHES=1,2 SECOND_BATCHES=1 PARITY_BATCH=3 PARITY_RUNS=1 REPEATS=1
    ROOF_ARGS=(--size 256 --copy-mb 16 --runs 2) XDIST=2
    export TRITON_INTERPRET=1
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1
FAILED=()

summarize() {
    # the short table so far; quiet and fast (the summary imports neither torch nor elmo_fast)
    "$PY" "$REPO/benchmarks/gpu_check.py" summary "$OUT" >"$OUT/summary.txt.part" 2>&1
    {
        echo
        grep -o 'tests="[0-9]*"\|errors="[0-9]*"\|failures="[0-9]*"\|skipped="[0-9]*"' "$OUT/tests.xml" 2>/dev/null \
            | head -4 | tr '\n' ' ' | sed 's/^/GPU tests (JUnit): /'
        echo
        if (( ${#FAILED[@]} )); then printf 'FAILED: %s\n' "${FAILED[@]}"; else echo "no step failed so far"; fi
    } >>"$OUT/summary.txt.part"
    mv -f "$OUT/summary.txt.part" "$OUT/summary.txt"
}

# run_step NAME LIMIT_S COMMAND...: run with a time limit cut to what is left before the deadline.
run_step() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( DEADLINE - $(date +%s) - 10 ))
    (( left < limit )) && limit=$left
    echo
    echo "== $name (limit ${limit} s, $(date -u +%H:%M:%S))"
    if (( limit < 15 )); then
        echo "skipped: not enough time left"
        FAILED+=("$name (no time left)")
        return
    fi
    local t0=$SECONDS
    timeout --kill-after=5 "$limit" "$@"
    local rc=$?
    if (( rc != 0 )); then
        (( rc == 124 || rc == 137 )) && echo "$name: timed out after ${limit} s" || echo "$name: exit status $rc"
        FAILED+=("$name (status $rc)")
    fi
    echo "== $name: $(( SECONDS - t0 )) s"
    rm -f "$OUT"/*.tmp
    summarize
}

echo "== environment ($(date -u +%H:%M:%S))"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || echo "nvidia-smi failed"
nvcc --version 2>/dev/null | tail -2 || echo "nvcc not on PATH"
git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true
if ! DEVICE=$DEVICE "$PY" -c "import os, torch, triton
assert os.environ['DEVICE'] == 'cpu' or torch.cuda.is_available(), 'no CUDA device'
print('torch', torch.__version__, '| cuda', torch.version.cuda, '| triton', triton.__version__, '|',
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"; then
    echo "gpu_check: needs torch with a CUDA device and triton; stopping"
    exit 2
fi

run_step "roofline: matmul rates and copy bandwidth" 60 "$PY" "$REPO/benchmarks/gpu_check.py" roofline \
    --device "$DEVICE" "${ROOF_ARGS[@]}" --out "$OUT/roofline.json"

# build_both: _C and _C_cuda in two processes at once (each with its own build folder), logs after.
build_both() {
    local logs rc=0
    logs="$(mktemp -d)"
    ELMO_FAST_EXTENSIONS=_C MAX_JOBS=8 "$PY" setup.py -q build_ext --inplace --build-temp build/tmp_C \
        >"$logs/C.log" 2>&1 &
    local pid_c=$!
    local pid_cuda=
    if [[ "$DRY" != 1 ]]; then
        ELMO_FAST_EXTENSIONS=_C_cuda ELMO_FAST_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}" MAX_JOBS=8 \
            "$PY" setup.py -q build_ext --inplace --build-temp build/tmp_C_cuda >"$logs/C_cuda.log" 2>&1 &
        pid_cuda=$!
    fi
    wait "$pid_c" || { echo "building _C failed"; rc=1; }
    if [[ -n "$pid_cuda" ]]; then wait "$pid_cuda" || { echo "building _C_cuda failed"; rc=1; }; fi
    for f in "$logs"/*.log; do
        echo "-- $(basename "$f") (last 40 lines)"
        tail -40 "$f"
    done
    rm -rf "$logs"
    return "$rc"
}

CUDA_BUILT=0
if [[ "$DRY" != 1 || "${GPU_CHECK_DRY_BUILD:-0}" == 1 ]]; then
    # build_ext --inplace puts _C*.so into $REPO/elmo_fast, which the copy below takes along
    [[ "$DRY" != 1 ]] && rm -f "$REPO"/elmo_fast/_C_cuda*.so
    cd "$REPO" || exit 2
    export -f build_both
    export PY DRY
    run_step "build the extensions (_C and _C_cuda side by side)" 240 bash -c build_both
    ls -l "$REPO"/elmo_fast/_C*.so 2>/dev/null
fi

# The package from this tree, with kernels/ where setup.py installs it (elmo_fast.kernels).
SITE="$(mktemp -d)"
trap 'rm -rf "$SITE"' EXIT
cp -r "$REPO/elmo_fast" "$SITE/elmo_fast"
rm -rf "$SITE/elmo_fast/kernels"
cp -r "$REPO/kernels" "$SITE/elmo_fast/kernels"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# Commands run from $SITE so that `python -m` finds this copy, not the tree's elmo_fast/ (no kernels/).
cd "$SITE" || exit 2
"$PY" -c "import elmo_fast; print(elmo_fast.env_report())"

# The backends that resolve on the device (run.py refuses a requested backend that does not).
BACKENDS="$(DEVICE=$DEVICE "$PY" - <<'PYEOF'
import os, sys, torch
from elmo_fast import _backends
ok = []
for name in ("ref", "triton", "cuda"):
    try:
        _backends.resolve(name, torch.device(os.environ["DEVICE"]))
        ok.append(name)
    except _backends.BackendUnavailable as exc:
        print(f"backend {name} unavailable: {exc}", file=sys.stderr)
print(",".join(ok))
PYEOF
)"
echo "backends to measure: ${BACKENDS:-none}"
[[ ",$BACKENDS," == *,triton,* ]] || FAILED+=("triton backend unavailable on $DEVICE")
if [[ ",$BACKENDS," == *,cuda,* ]]; then
    CUDA_BUILT=1
elif [[ "$DRY" != 1 ]]; then
    FAILED+=("cuda backend unavailable (build or import failed; see above)")
fi
[[ -n "$BACKENDS" ]] || BACKENDS=ref
BENCH=("$PY" "$REPO/benchmarks/run.py" --device "$DEVICE" --backends "$BACKENDS" --dtypes float32,bfloat16
       --repeats "$REPEATS")
run_step "benchmarks/run.py $MAIN_CONFIG, batches $MAIN_BATCHES, fp32+bf16" 200 "${BENCH[@]}" \
    --configs "$MAIN_CONFIG" --batches "$MAIN_BATCHES" --out "$OUT/bench_${MAIN_CONFIG}.json"

if (( CUDA_BUILT )); then
    run_step "CUDA backend rows (issue 8 targets)" 90 "$PY" "$REPO/benchmarks/cuda_rows.py" --out "$OUT/cuda_rows.json"
elif [[ "$DRY" == 1 ]]; then
    run_step "CUDA rows script (dry run: ref row only)" 60 env -u TRITON_INTERPRET "$PY" "$REPO/benchmarks/cuda_rows.py" \
        --device cpu --batches 1 --runs 1 --warmup 0 --out "$OUT/cuda_rows.json"
else
    echo "CUDA rows skipped: the cuda backend is unavailable"
fi

TESTS=("$REPO"/tests/test_triton_*.py)
(( CUDA_BUILT )) && TESTS+=("$REPO/tests/test_cuda_lstmp.py")
PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL=(-n "$XDIST")
run_step "GPU tests (${#TESTS[@]} files)" 150 "$PY" -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" \
    --junitxml="$OUT/tests.xml" "${TESTS[@]}"

if [[ "$DRY" == 1 ]]; then
    SECOND_OUT="$OUT/bench_second_tiny.json"
else
    SECOND_OUT="$OUT/bench_${SECOND_CONFIG}.json"
fi
run_step "benchmarks/run.py $SECOND_CONFIG, batches $SECOND_BATCHES, fp32+bf16" 100 "${BENCH[@]}" \
    --configs "$SECOND_CONFIG" --batches "$SECOND_BATCHES" --out "$SECOND_OUT"

run_step "whole-model parity, $MAIN_CONFIG, batch $PARITY_BATCH" 90 "$PY" "$REPO/benchmarks/gpu_check.py" parity \
    --device "$DEVICE" --config "$MAIN_CONFIG" --batch "$PARITY_BATCH" --runs "$PARITY_RUNS" \
    --out "$OUT/parity_${MAIN_CONFIG}_b${PARITY_BATCH}.json"

echo
echo "== summary ($(date -u +%H:%M:%S), $(( $(date +%s) - START )) s since the start)"
summarize
sed -i 's/^no step failed so far$/all steps passed/' "$OUT/summary.txt"
cat "$OUT/summary.txt"
echo "files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
STATUS=$(( ${#FAILED[@]} > 0 ))
# let tee write the last lines before the script exits
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit "$STATUS"
