"""Build script for elmo_fast.

The Python package lives in ``elmo_fast/``; the top-level ``kernels/`` folder (Triton kernels) is
installed as ``elmo_fast.kernels``. ``elmo_fast._C`` (``csrc/ops.cpp`` + ``csrc/cpu/*.cpp``) is the
C++ CPU extension, built on every install against the torch that is installed, so install with
``pip install --no-build-isolation`` after installing torch (see README).
``elmo_fast._C_cuda`` (``csrc/cuda/``) is built only where torch is a CUDA build and nvcc exists; a
failed optional CUDA build warns and leaves the package without it. ``ELMO_FAST_CUDA=1`` makes it
mandatory (an install that cannot build it fails). ``ELMO_FAST_EXTENSIONS`` (a comma list of ``_C``,
``_C_cuda``; default both) builds only those, so that two processes can build them side by side
(benchmarks/gpu_check.sh does, each with its own ``--build-temp``).
"""
import os
import shutil
import sys
import warnings
from pathlib import Path

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import CppExtension
except ImportError as exc:
    raise SystemExit(
        "elmo_fast builds a C++ extension against the installed torch: install torch first "
        "(e.g. `pip install torch`), then `pip install --no-build-isolation .`"
    ) from exc

ROOT = Path(__file__).parent
CPU_SOURCES = ["csrc/ops.cpp", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc" / "cpu").glob("*.cpp"))]


def cpu_flags() -> list[str]:
    """Compiler flags for the CPU kernels.

    at::parallel_for is a header template: with torch's OpenMP backend it only runs in parallel when
    the extension itself is compiled with OpenMP (otherwise every task runs on the calling thread).
    """
    flags = ["-O3", "-Wno-psabi", "-ffp-contract=off"]
    if "parallel backend: OpenMP" in torch.__config__.parallel_info() and sys.platform != "darwin":
        flags.append("/openmp" if sys.platform == "win32" else "-fopenmp")
    return flags


CUDA_DIR = ROOT / "csrc" / "cuda"
CUDA_SOURCES = sorted(str(p.relative_to(ROOT)) for pattern in ("*.cu", "*.cpp") for p in CUDA_DIR.glob(pattern))
# Without TORCH_CUDA_ARCH_LIST and without a visible GPU torch has no arch to pick: build for
# Ampere (sm_80, also runs on sm_86/89) and Hopper (sm_90), plus PTX for newer GPUs.
DEFAULT_CUDA_ARCH_FLAGS = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_90,code=compute_90",
]


# nvcc's accurate defaults, spelled out: the float32 path is checked against a float64 truth
# (tests/test_float64_accuracy.py), so never nvcc's approximate-math switch (it turns expf/tanhf
# into approximations and flushes denormals); tests/test_cuda_compile.py compiles with these flags
# and checks that setup.py keeps them.
NVCC_ACCURACY_FLAGS = ["--ftz=false", "--prec-div=true", "--prec-sqrt=true"]


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
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-std=c++17", *NVCC_ACCURACY_FLAGS, *arch_flags]},
    )
    extension.optional = not required
    return [extension]


def build_ext_class():
    """torch's ``BuildExtension``, except that an optional extension that fails to build only warns.

    Two places can fail: ``build_extension`` (compiling one extension), and torch's checks in
    ``build_extensions`` that run before any extension is compiled (e.g. nvcc's CUDA major version
    differs from torch's). A failure of the second kind while an optional extension is listed drops
    the optional ones with a warning and builds the rest (``_C``) anyway.
    """
    from torch.utils.cpp_extension import BuildExtension

    class BuildExtensionOptional(BuildExtension):
        def build_extensions(self):
            self._elmo_started = False
            try:
                super().build_extensions()
            except Exception as exc:
                optional = [e.name for e in self.extensions if getattr(e, "optional", False)]
                if self._elmo_started or not optional:
                    raise
                warnings.warn(f"elmo_fast: optional extension(s) {', '.join(optional)} left out: the build "
                              f"setup failed before compiling ({type(exc).__name__}: {exc})")
                print(f"elmo_fast: WARNING: not building {', '.join(optional)}: {type(exc).__name__}: {exc}")
                self.extensions = [e for e in self.extensions if not getattr(e, "optional", False)]
                if self.extensions:
                    super().build_extensions()

        def build_extension(self, ext):
            self._elmo_started = True
            try:
                super().build_extension(ext)
            except Exception as exc:
                if not getattr(ext, "optional", False):
                    raise
                warnings.warn(f"elmo_fast: optional extension {ext.name} failed to build and is left out: {exc}")

    return BuildExtensionOptional


def selected_extensions() -> list:
    """The extensions to build: all, or those named in ``ELMO_FAST_EXTENSIONS`` (``_C``, ``_C_cuda``)."""
    wanted = {n.strip() for n in os.environ.get("ELMO_FAST_EXTENSIONS", "_C,_C_cuda").split(",") if n.strip()}
    unknown = wanted - {"_C", "_C_cuda"}
    if unknown:
        raise SystemExit(f"ELMO_FAST_EXTENSIONS: unknown extension(s) {', '.join(sorted(unknown))}; use _C, _C_cuda")
    extensions = []
    if "_C" in wanted:
        extensions.append(CppExtension("elmo_fast._C", CPU_SOURCES, extra_compile_args={"cxx": cpu_flags()}))
    if "_C_cuda" in wanted:
        extensions += cuda_extensions()
    return extensions


setup(
    packages=[
        "elmo_fast", "elmo_fast.jobs", "elmo_fast.kernels", "elmo_fast.modules", "elmo_fast.ops", "elmo_fast.reference",
        "elmo_fast.serve", "elmo_fast.train", "elmo_fast.weights",
    ],
    package_dir={"elmo_fast.kernels": "kernels"},
    package_data={"elmo_fast": ["data/default/*.json", "data/default/*.hdf5", "data/default/*.txt", "data/default/*.md", "serve/static/*.html"]},
    include_package_data=True,
    ext_modules=selected_extensions(),
    cmdclass={"build_ext": build_ext_class()},
)
