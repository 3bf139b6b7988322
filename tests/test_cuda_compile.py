"""The CUDA sources compile, on machines without a GPU (CI): a syntax or type error cannot land unseen.

Every ``.cu`` file under ``csrc/`` goes through the installed ``nvcc`` for sm_90a (the kernels include
only CUDA headers and ``csrc/cuda/lstmp_params.h``). The torch glue (``csrc/cuda/*.cpp``) is
type-checked by the host compiler against the installed torch's headers; a CPU build of torch lacks
one generated header of its CUDA part, ``c10/cuda/impl/cuda_cmake_macros.h``, which is then written
into a temporary include folder with the content CMake gives it. Nothing is linked or run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.utils.cpp_extension

ROOT = Path(__file__).resolve().parent.parent
CU_FILES = sorted((ROOT / "csrc").rglob("*.cu"))
GLUE_FILES = sorted((ROOT / "csrc" / "cuda").glob("*.cpp"))
COMPILE_TIMEOUT_S = 300
# setup.py's accurate-math nvcc flags (kept equal by test_setup_builds_without_fast_math)
NVCC_ACCURACY_FLAGS = ["--ftz=false", "--prec-div=true", "--prec-sqrt=true"]


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.exists() else None


def _cuda_include(nvcc: str) -> Path | None:
    candidates = [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    candidates += [Path(nvcc).resolve().parent.parent / "include", Path("/usr/local/cuda/include")]
    return next((c for c in candidates if (c / "cuda_runtime_api.h").exists()), None)


def _glue_command(source: Path, tmp_path: Path) -> list[str]:
    """The host compiler's type check of ``source``, or a skip when a prerequisite is missing."""
    cxx = shutil.which(os.environ.get("CXX", "c++"))
    nvcc = _nvcc()
    cuda_include = _cuda_include(nvcc) if nvcc else None
    python_include = sysconfig.get_paths()["include"]
    if cxx is None or cuda_include is None:
        pytest.skip("needs a host C++ compiler and the CUDA toolkit headers (cuda_runtime_api.h)")
    if not (Path(python_include) / "Python.h").exists():
        pytest.skip(f"Python.h not found in {python_include}")
    torch_includes = torch.utils.cpp_extension.include_paths()
    generated = "c10/cuda/impl/cuda_cmake_macros.h"
    if not any((Path(p) / generated).exists() for p in torch_includes):
        stub = tmp_path / generated
        stub.parent.mkdir(parents=True)
        stub.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    include_flags = [f"-isystem{p}" for p in (tmp_path, *torch_includes, cuda_include, python_include)]
    return [cxx, "-fsyntax-only", "-std=c++17", "-Wall", "-Wextra", "-Werror", *include_flags,
            "-DTORCH_EXTENSION_NAME=_C_cuda", "-DTORCH_API_INCLUDE_EXTENSION_H", str(source)]


@pytest.fixture(scope="module")
def compilations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, object]]:
    """Every compile of this file started at once (they are independent; CI has 2 cores): the
    ``subprocess.Popen`` of each source, or the ``pytest.skip`` exception that explains its absence."""
    out = tmp_path_factory.mktemp("cuda_compile")
    nvcc = _nvcc()
    started: dict[Path, object] = {}
    for source in CU_FILES:
        if nvcc is None:
            started[source] = pytest.skip.Exception("nvcc is not on PATH and /usr/local/cuda/bin/nvcc does not exist")
            continue
        cmd = [nvcc, "-std=c++17", *NVCC_ACCURACY_FLAGS, "-arch=sm_90a", "-c", str(source), "-o", str(out / f"{source.stem}.o")]
        started[source] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for source in GLUE_FILES:
        try:
            cmd = _glue_command(source, out)
        except pytest.skip.Exception as exc:
            started[source] = exc
            continue
        started[source] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield started
    for proc in started.values():
        if isinstance(proc, subprocess.Popen) and proc.poll() is None:
            proc.kill()
            proc.wait()


def _check(compilations: dict[Path, object], source: Path) -> None:
    proc = compilations[source]
    if isinstance(proc, pytest.skip.Exception):
        raise proc
    try:
        output, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    assert proc.returncode == 0, f"{' '.join(proc.args)}\nexit status {proc.returncode}\n{output}"


def test_setup_builds_without_fast_math():
    """setup.py passes nvcc the accurate-math flags this file compiles with, and never --use_fast_math."""
    text = (ROOT / "setup.py").read_text()
    assert "fast_math" not in text and "fast-math" not in text
    assert "*NVCC_ACCURACY_FLAGS" in text
    assert f"NVCC_ACCURACY_FLAGS = {NVCC_ACCURACY_FLAGS!r}".replace("'", '"') in text


def test_sources_exist():
    assert CU_FILES and GLUE_FILES, f"no CUDA sources found under {ROOT / 'csrc'}"


@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cu_compiles(compilations, source: Path):
    _check(compilations, source)


@pytest.mark.parametrize("source", GLUE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_glue_type_checks(compilations, source: Path):
    _check(compilations, source)
