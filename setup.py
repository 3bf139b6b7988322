"""Build script for elmo_fast.

The Python package lives in ``elmo_fast/``; the top-level ``kernels/`` folder (Triton kernels) is
installed as ``elmo_fast.kernels``. ``elmo_fast._C`` (``csrc/ops.cpp`` + ``csrc/cpu/*.cpp``) is the
C++ CPU extension, built on every install against the torch that is installed, so install with
``pip install --no-build-isolation`` after installing torch (see README).
"""
import sys
from pathlib import Path

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension
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
    flags = ["-O3", "-Wno-psabi"]
    if "parallel backend: OpenMP" in torch.__config__.parallel_info() and sys.platform != "darwin":
        flags.append("/openmp" if sys.platform == "win32" else "-fopenmp")
    return flags


setup(
    packages=["elmo_fast", "elmo_fast.reference", "elmo_fast.ops", "elmo_fast.modules", "elmo_fast.kernels"],
    package_dir={"elmo_fast.kernels": "kernels"},
    package_data={"elmo_fast": ["data/demo/*.json", "data/demo/*.hdf5"]},
    include_package_data=True,
    ext_modules=[
        CppExtension(
            "elmo_fast._C",
            CPU_SOURCES,
            extra_compile_args={"cxx": cpu_flags()},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
