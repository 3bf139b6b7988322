"""Checks of an installed elmo_fast._C_cuda that need no GPU (run by scripts/build_cuda_ext.sh).

1. ``import elmo_fast._C_cuda`` succeeds: the library loads against this torch and its
   ``TORCH_LIBRARY_IMPL(elmo_fast, CUDA, m)`` registration matches the schema of ``elmo_fast._C``
   (a mismatch aborts the import).
2. The dispatcher holds a CUDA kernel for ``elmo_fast::lstmp``, and the ``cuda`` backend loads.
3. The fake (meta) registration gives the right shapes and dtypes for CUDA fake tensors, and for meta tensors.
4. ``torch.library.opcheck`` on CPU tensors (schema, fake and dispatch checks of the op that the CUDA
   kernel shares with the CPU one).
5. Calling into the extension without a device raises a Python error, not a crash.
Exits non-zero on the first failure.
"""
from __future__ import annotations

import sys

import torch


def main() -> int:
    import elmo_fast._C_cuda as cuda_ext
    from elmo_fast import _backends

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU available: {torch.cuda.is_available()}")
    print(f"imported {cuda_ext.__file__}")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("elmo_fast::lstmp", "CUDA"), "no CUDA kernel for elmo_fast::lstmp"
    print("elmo_fast::lstmp has a CUDA kernel:", torch.ops.elmo_fast.lstmp.default._schema)
    loaded, why = _backends.probe("cuda")
    assert loaded, f"the cuda backend did not load: {why}"

    D, B, T, P, C = 2, 3, 5, 16, 32
    from torch._subclasses.fake_tensor import FakeTensorMode

    for label, device, mode in (("fake cuda", "cuda", FakeTensorMode()), ("meta", "meta", None)):
        def make(*shape, dtype=torch.bfloat16):
            return torch.empty(*shape, dtype=dtype, device=device)

        with mode if mode is not None else torch.no_grad():
            out, h_n, c_n = torch.ops.elmo_fast.lstmp(
                make(D, B, T, P), make(B, dtype=torch.int64), make(D, P, 4 * C), make(D, P, 4 * C), make(D, 4 * C),
                make(D, C, P), None, None, 3.0, 3.0, True)
        shapes = (tuple(out.shape), tuple(h_n.shape), tuple(c_n.shape))
        assert shapes == ((D, B, T, P), (D, B, P), (D, B, C)), shapes
        assert out.device.type == device and out.dtype == torch.bfloat16, (out.device, out.dtype)
        print(f"fake kernel on {label} tensors: {shapes}")

    g = torch.Generator().manual_seed(0)
    args = (torch.randn(D, B, T, P, generator=g), torch.tensor([5, 2, 0]), torch.randn(D, P, 4 * C, generator=g) * 0.1,
            torch.randn(D, P, 4 * C, generator=g) * 0.1, torch.randn(D, 4 * C, generator=g) * 0.1,
            torch.randn(D, C, P, generator=g) * 0.1, None, None, 3.0, 3.0, True)
    torch.library.opcheck(torch.ops.elmo_fast.lstmp.default, args)
    print("torch.library.opcheck(elmo_fast::lstmp) on CPU tensors: passed")

    try:
        cuda_ext.persistent_plan(2, 8, 4096, 512, bf16=True)
    except RuntimeError as exc:
        print(f"persistent_plan without a device raises RuntimeError: {str(exc).splitlines()[0]}")
    else:
        if not torch.cuda.is_available():
            raise AssertionError("persistent_plan answered without a CUDA device")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
