#!/usr/bin/env bash
# GPU check of the Triton and CUDA backends, in well under 10 minutes on one H100:
#   0. builds the compiled extensions in place (elmo_fast._C and, mandatory here, elmo_fast._C_cuda
#      for sm_90a: ELMO_FAST_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0a python setup.py build_ext --inplace),
#   1. the Triton tests on the GPU (tests/test_triton_*.py, CUDA tensors, kernels compiled for real)
#      and the CUDA backend's tests (tests/test_cuda_lstmp.py), then the CUDA rows
#      (benchmarks/cuda_rows.py: LSTM part of the original model, batch 1 and 128, issue 8 targets),
#   2. full-size parity and speed of the whole model (benchmarks/gpu_check.py parity: original
#      config, batch 64, triton fp32/bf16 against the fp32 reference on the same GPU),
#   3. benchmarks/run.py on the GPU: original config, batches 1 8 32 128 512, backends ref and
#      triton plus the torch.nn.LSTM(proj_size) anchor, fp32 (and bf16 where run.py has --dtype),
#   4. the short table of all of it, printed last (and saved as summary.txt).
#
# Run from anywhere on a machine with python3, torch (CUDA build) and triton:
#     bash benchmarks/gpu_check.sh
# Nothing is downloaded: the extensions are built in the tree, and the package is put on PYTHONPATH
# from a copy of it (with kernels/ as elmo_fast/kernels). When the CUDA build fails, its steps are
# reported as failed and the Triton steps still run. Results (JSON, the log, the JUnit file) go to $OUT (default benchmarks/results/gpu_check).
# A step that fails or runs out of time is reported and the next one still runs; the exit status
# is non-zero when any step failed.
#
# GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU under the Triton interpreter with the tiny
# model and batches 1,2 (seconds of work): a check of this script itself, not of the GPU.
set -uo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${OUT:-$REPO/benchmarks/results/gpu_check}"
PY="${PYTHON:-python3}"
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-540} ))
DEVICE=cuda CONFIG=original BATCHES=1,8,32,128,512 PARITY_BATCH=64 RUNS=10 REPEATS=5
unset TRITON_INTERPRET
if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    DEVICE=cpu CONFIG=tiny BATCHES=1,2 PARITY_BATCH=3 RUNS=1 REPEATS=1
    export TRITON_INTERPRET=1
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE_PID=$!
export PYTHONUNBUFFERED=1
FAILED=()

# run_step NAME LIMIT_S COMMAND...: run with a time limit cut to what is left before the deadline.
run_step() {
    local name="$1" limit="$2"
    shift 2
    local left=$(( DEADLINE - $(date +%s) - 15 ))
    (( left < limit )) && limit=$left
    echo
    echo "== $name (limit ${limit} s, $(date -u +%H:%M:%S))"
    if (( limit < 20 )); then
        echo "skipped: not enough time left"
        FAILED+=("$name (no time left)")
        return
    fi
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if (( rc != 0 )); then
        (( rc == 124 || rc == 137 )) && echo "$name: timed out after ${limit} s" || echo "$name: exit status $rc"
        FAILED+=("$name (status $rc)")
    fi
}

echo "== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi failed"
git -C "$REPO" rev-parse --short HEAD 2>/dev/null || true
if ! DEVICE=$DEVICE "$PY" -c "import os, torch, triton
assert os.environ['DEVICE'] == 'cpu' or torch.cuda.is_available(), 'no CUDA device'
print('torch', torch.__version__, '| triton', triton.__version__, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"; then
    echo "gpu_check: needs torch with a CUDA device and triton; stopping"
    exit 2
fi

CUDA_BUILT=0
if [[ "${GPU_CHECK_DRY_RUN:-0}" != 1 ]]; then
    # build_ext --inplace puts _C*.so into $REPO/elmo_fast, which the copy below takes along
    rm -f "$REPO"/elmo_fast/_C_cuda*.so
    cd "$REPO" || exit 2
    ELMO_FAST_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}" MAX_JOBS="${MAX_JOBS:-16}" \
        run_step "build the extensions" 240 "$PY" setup.py -q build_ext --inplace
    compgen -G "$REPO/elmo_fast/_C_cuda*.so" >/dev/null && CUDA_BUILT=1
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

PARALLEL=()
"$PY" -c "import xdist" 2>/dev/null && PARALLEL=(-n 4)
run_step "GPU tests" 200 "$PY" -m pytest -q -p no:cacheprovider "${PARALLEL[@]}" --junitxml="$OUT/tests.xml" \
    "$REPO"/tests/test_triton_*.py

if (( CUDA_BUILT )); then
    run_step "CUDA backend tests" 150 "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests_cuda.xml" \
        "$REPO"/tests/test_cuda_lstmp.py
    run_step "CUDA backend rows" 100 "$PY" "$REPO/benchmarks/cuda_rows.py" --out "$OUT/cuda_rows.json"
elif [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    run_step "CUDA rows script (dry run: ref row only)" 60 env -u TRITON_INTERPRET "$PY" "$REPO/benchmarks/cuda_rows.py" \
        --device cpu --batches 1 --runs 1 --warmup 0
else
    FAILED+=("CUDA steps skipped: the extension did not build")
fi

run_step "parity and speed, $CONFIG, batch $PARITY_BATCH" 150 "$PY" "$REPO/benchmarks/gpu_check.py" parity \
    --device "$DEVICE" --config "$CONFIG" --batch "$PARITY_BATCH" --runs "$RUNS" --out "$OUT/parity_${CONFIG}_b${PARITY_BATCH}.json"

if [[ -f "$REPO/benchmarks/run.py" ]]; then
    BENCH=("$PY" "$REPO/benchmarks/run.py" --device "$DEVICE" --configs "$CONFIG" --batches "$BATCHES"
           --backends "ref,triton$( (( CUDA_BUILT )) && echo ,cuda)" --repeats "$REPEATS")
    run_step "benchmarks/run.py fp32" 180 "${BENCH[@]}" --out "$OUT/bench_float32.json"
    if "$PY" "$REPO/benchmarks/run.py" --help 2>/dev/null | grep -q -- "--dtype"; then
        run_step "benchmarks/run.py bf16" 150 "${BENCH[@]}" --dtype bfloat16 --out "$OUT/bench_bfloat16.json"
    else
        echo
        echo "== benchmarks/run.py bf16: skipped, run.py has no --dtype option (bf16 speed: see the parity table)"
    fi
else
    echo
    echo "== benchmarks/run.py: not in this tree (branch bench not merged); skipped"
    FAILED+=("benchmarks/run.py missing")
fi

echo
echo "== summary ($(date -u +%H:%M:%S))"
{
    "$PY" "$REPO/benchmarks/gpu_check.py" summary "$OUT"
    echo
    grep -o 'tests="[0-9]*" time="[^"]*"\|errors="[0-9]*"\|failures="[0-9]*"\|skipped="[0-9]*"' "$OUT/tests.xml" 2>/dev/null \
        | head -4 | tr '\n' ' ' | sed 's/^/GPU tests (JUnit): /'
    echo
    if (( ${#FAILED[@]} )); then
        printf 'FAILED: %s\n' "${FAILED[@]}"
    else
        echo "all steps passed"
    fi
} | tee "$OUT/summary.txt"
STATUS=$(( ${#FAILED[@]} > 0 ))
# let tee write the last lines before the script exits
exec >&- 2>&-
wait "$TEE_PID" 2>/dev/null
exit "$STATUS"
