"""Build script for elmo_fast.

The Python package lives in ``elmo_fast/``; the top-level ``kernels/`` folder (Triton kernels) is
installed as ``elmo_fast.kernels``. Compiled extensions (``csrc/``) are added here as they land.
``elmo_fast._C_cuda`` (``csrc/cuda/``) is built only where torch is a CUDA build and nvcc exists; a
failed optional CUDA build warns and leaves the package without it. ``ELMO_FAST_CUDA=1`` makes it
mandatory (an install that cannot build it fails). Building needs torch at build time:
``pip install --no-build-isolation``.
"""
import os
import shutil
import warnings
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
CUDA_DIR = ROOT / "csrc" / "cuda"
CUDA_SOURCES = sorted(str(p.relative_to(ROOT)) for pattern in ("*.cu", "*.cpp") for p in CUDA_DIR.glob(pattern))
# Without TORCH_CUDA_ARCH_LIST and without a visible GPU torch has no arch to pick: build for
# Ampere (sm_80, also runs on sm_86/89) and Hopper (sm_90), plus PTX for newer GPUs.
DEFAULT_CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_90,code=compute_90",
]


def cuda_extensions() -> list:
    """``elmo_fast._C_cuda`` when it can be built here (CUDA build of torch + nvcc), else ``[]``.

    Decided by the toolchain, never by ``torch.cuda.is_available()``: building needs nvcc, not a GPU.
    With ``ELMO_FAST_CUDA=1`` a missing prerequisite is an error instead of a skipped extension.
    """
    required = os.environ.get("ELMO_FAST_CUDA") == "1"

    def skip(reason: str) -> list:
        if required:
            raise SystemExit(f"ELMO_FAST_CUDA=1 but elmo_fast._C_cuda cannot be built: {reason}")
        print(f"elmo_fast: not building the CUDA extension: {reason}")
        return []

    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, CUDAExtension
    except ImportError as exc:
        return skip(f"torch is not importable at build time ({exc}); use pip install --no-build-isolation")
    if torch.version.cuda is None:
        return skip(f"torch {torch.__version__} is not a CUDA build")
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc") if CUDA_HOME else shutil.which("nvcc")
    if not nvcc or not os.path.exists(nvcc):
        return skip("nvcc not found (set CUDA_HOME)")
    arch_flags = [] if os.environ.get("TORCH_CUDA_ARCH_LIST") else DEFAULT_CUDA_ARCH_FLAGS
    extension = CUDAExtension(
        "elmo_fast._C_cuda",
        CUDA_SOURCES,
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-std=c++17", *arch_flags]},
    )
    extension.optional = not required
    return [extension]


def build_ext_class():
    """torch's ``BuildExtension``, except that an optional extension that fails to build only warns."""
    from torch.utils.cpp_extension import BuildExtension

    class BuildExtensionOptional(BuildExtension):
        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:
                if not getattr(ext, "optional", False):
                    raise
                warnings.warn(f"elmo_fast: optional extension {ext.name} failed to build and is left out: {exc}")

    return BuildExtensionOptional


EXT_MODULES = cuda_extensions()

setup(
    packages=["elmo_fast", "elmo_fast.reference", "elmo_fast.ops", "elmo_fast.modules", "elmo_fast.kernels"],
    package_dir={"elmo_fast.kernels": "kernels"},
    package_data={"elmo_fast": ["data/demo/*.json", "data/demo/*.hdf5"]},
    include_package_data=True,
    ext_modules=EXT_MODULES,
    cmdclass={"build_ext": build_ext_class()} if EXT_MODULES else {},
)
