#!/usr/bin/env bash
# Build elmo_fast._C_cuda against a CUDA build of torch on a machine without a GPU, then import it and
# check the op registrations (scripts/check_cuda_ext.py). Leaves the caller's checkout and venv alone:
# the source is a `git archive` of HEAD in a temporary folder, the venv is separate.
#
#   scripts/build_cuda_ext.sh            # venv: $ELMO_CUDA_VENV (default /tmp/elmo_fast_cuda_venv)
#
# torch: the PyPI Linux x86_64 wheel of torch==2.13.0 is the CUDA 13.0 build (+cu130 suffix absent on
# PyPI; torch.version.cuda == "13.0"). pip runs with --isolated so that a machine-wide pip config
# (a local find-links folder holding the +cpu wheel, a constraints file) cannot substitute the CPU
# build. nvcc: the installed one when its major.minor equals torch's CUDA version, else the
# nvidia-cuda-nvcc wheel of that version. Several GB of downloads on the first run.
set -euo pipefail

TORCH_VERSION=${TORCH_VERSION:-2.13.0}
VENV=${ELMO_CUDA_VENV:-/tmp/elmo_fast_cuda_venv}
ROOT=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
SRC=$(mktemp -d /tmp/elmo_fast_cuda_src.XXXXXX)
trap 'rm -rf "$SRC"' EXIT
start=$(date +%s)
stamp() { echo "[build_cuda_ext +$(( $(date +%s) - start ))s] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
    stamp "creating $VENV"
    python3 -m venv "$VENV"
fi
PIP=("$VENV/bin/pip" --isolated --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip setuptools wheel ninja
stamp "installing torch==$TORCH_VERSION (CUDA build) and the package's dependencies"
"${PIP[@]}" install -q "torch==$TORCH_VERSION" numpy h5py tqdm pytest
TORCH_CUDA=$("$VENV/bin/python" -c "import torch; print(torch.version.cuda or '')")
if [ -z "$TORCH_CUDA" ]; then
    echo "error: $VENV has a CPU build of torch ($("$VENV/bin/python" -c 'import torch; print(torch.__version__)'));" \
         "remove the venv or install a CUDA build, e.g. --index-url https://download.pytorch.org/whl/cu130" >&2
    exit 1
fi
stamp "torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') (CUDA $TORCH_CUDA)"

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
[ -x "$CUDA_HOME/bin/nvcc" ] || CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
NVCC_CUDA=$("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p' || true)
if [ "$NVCC_CUDA" != "$TORCH_CUDA" ]; then
    stamp "nvcc ${NVCC_CUDA:-missing} does not match torch's CUDA $TORCH_CUDA: installing nvidia-cuda-nvcc==$TORCH_CUDA.*"
    "${PIP[@]}" install -q "nvidia-cuda-nvcc==$TORCH_CUDA.*"
    NVCC=$("$VENV/bin/python" -c "import glob, nvidia; print(sorted(glob.glob(nvidia.__path__[0] + '/**/bin/nvcc', recursive=True))[0])")
    CUDA_HOME=$(dirname "$(dirname "$NVCC")")
fi
export CUDA_HOME
stamp "CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"

# cuBLAS/cuSPARSE/cuSOLVER headers (ATen's CUDA headers include them) come with torch's nvidia-* wheels
NV_INCLUDES=$("$VENV/bin/python" - <<'EOF'
import glob, os, nvidia
headers = ("cublas_v2.h", "cusparse.h", "cusolverDn.h")
found = {os.path.dirname(h) for root in nvidia.__path__ for name in headers
         for h in glob.glob(os.path.join(root, "**", "include", name), recursive=True)}
print(":".join(sorted(found)))
EOF
)
export CPATH=${NV_INCLUDES}${CPATH:+:$CPATH}

git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
stamp "building elmo_fast (ELMO_FAST_CUDA=1) from a copy of HEAD in $SRC"
(cd "$SRC" && ELMO_FAST_CUDA=1 MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" install -q --no-build-isolation --no-deps .)
stamp "built; checking the import and the registrations"
(cd /tmp && "$VENV/bin/python" "$ROOT/scripts/check_cuda_ext.py")
stamp "done"
