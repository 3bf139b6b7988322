"""Shared test helpers: the one tolerance table, comparison, and random input makers."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import string
from pathlib import Path

import numpy as np
import torch

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "allennlp_tiny"
FIXTURE_OPTIONS = FIXTURE_DIR / "options.json"
FIXTURE_WEIGHTS = FIXTURE_DIR / "weights.hdf5"
BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark_script(name: str):
    """The module of ``benchmarks/<name>.py``, loaded from its file (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"elmo_fast_bench_{name}", BENCHMARKS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def _triton_device() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return None
    if torch.cuda.is_available():
        return "cuda"
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else None


# Where the Triton tests run: a CUDA device, or CPU tensors under the interpreter
# (TRITON_INTERPRET=1, which conftest.py sets where there is no CUDA device); None when they cannot run here.
TRITON_DEVICE: str | None = _triton_device()
TRITON_SKIP_REASON = "Triton tests need triton and a CUDA device, or TRITON_INTERPRET=1 (set by conftest.py without CUDA)"

# (atol, rtol) per compute dtype; the reference is fp32 (float64 where cheap).
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float16: (1e-2, 1e-2),
}


def no_tf32() -> None:
    """Switch TF32 off for CUDA matrix products and convolutions (tests/conftest.py does it for every
    test): float32 references and kernels then compute in float32, not with 10-bit inputs."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def assert_close(actual, expected, dtype: torch.dtype = torch.float32, what: str = "") -> None:
    """Max-abs plus relative comparison with a NaN check, tolerances from :data:`TOLERANCES`."""
    atol, rtol = TOLERANCES[dtype]
    a = actual.detach().cpu().double() if isinstance(actual, torch.Tensor) else torch.as_tensor(np.asarray(actual)).double()
    e = expected.detach().cpu().double() if isinstance(expected, torch.Tensor) else torch.as_tensor(np.asarray(expected)).double()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    assert not torch.isnan(a).any(), f"{what}: output holds NaN"
    if a.numel() == 0:
        return
    err = (a - e).abs()
    bound = atol + rtol * e.abs()
    worst = int(torch.argmax(err - bound))
    assert bool((err <= bound).all()), (
        f"{what}: max abs error {float(err.max()):.3e} (at flat index {worst}: {float(a.flatten()[worst])} vs "
        f"{float(e.flatten()[worst])}), atol={atol}, rtol={rtol}"
    )


def load_fixture() -> tuple[dict[str, np.ndarray], list[list[str]], list[list[str]]]:
    """The AllenNLP recording: arrays, the 20 edge-case sentences, and batch_b."""
    z = np.load(FIXTURE_DIR / "expected.npz")
    arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(str(z["sentences_json"])), json.loads(str(z["batch_b_json"]))


def random_sentences(n: int, seed: int, max_len: int = 12, unicode: bool = True) -> list[list[str]]:
    """``n`` random sentences of 0..max_len tokens, mixing ASCII words, accents, CJK and long words."""
    rng = random.Random(seed)
    extra = "éüßñ東京語🙂Ωж" if unicode else ""
    alphabet = string.ascii_letters + string.digits + ".,;!?-'" + extra
    out = []
    for _ in range(n):
        length = rng.randint(0, max_len)
        out.append(["".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 60]))) for _ in range(length)])
    return out


def random_lstm_inputs(
    num_dirs: int, batch: int, width: int, proj: int, cell: int, seed: int, dtype=torch.float32, lengths=None
) -> dict[str, torch.Tensor]:
    """Random ``lstmp`` arguments (see :func:`elmo_fast.reference.lstmp_ref`) with mixed lengths."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    if lengths is None:
        lengths = torch.randint(1, width + 1, (batch,), generator=g)
        lengths[0] = width
    return {
        "x": r(num_dirs, batch, width, proj),
        "lengths": torch.as_tensor(lengths, dtype=torch.int64),
        "w_ih": r(num_dirs, proj, 4 * cell, scale=proj ** -0.5),
        "w_hh": r(num_dirs, proj, 4 * cell, scale=proj ** -0.5),
        "bias": r(num_dirs, 4 * cell, scale=0.5),
        "w_proj": r(num_dirs, cell, proj, scale=cell ** -0.5),
        "h0": r(num_dirs, batch, proj, scale=0.5),
        "c0": r(num_dirs, batch, cell),
    }


def assert_follows_twin(actual, twin, baseline, what: str = "", rel: float = 1e-4) -> None:
    """``actual`` computes what ``twin`` does, through a recurrence with rounded activations.

    With bf16 or int8 products every step rounds its activations; an fp32 difference of one ulp (a
    different summation order) can move a value across a rounding boundary, and the recurrence
    carries that on. So the check is norm-wise: ``actual`` within ``rel`` (relative Frobenius) of
    ``twin``, and at least 10 times closer to it than the fp32 ``baseline`` is (which proves the
    rounding happened). Single products are compared elementwise with :func:`assert_close`.
    """
    a, t, b = (v.detach().cpu().double() for v in (actual, twin, baseline))
    assert a.shape == t.shape == b.shape, f"{what}: shapes {tuple(a.shape)}, {tuple(t.shape)}, {tuple(b.shape)}"
    assert not torch.isnan(a).any(), f"{what}: output holds NaN"
    norm = float(t.norm()) or 1.0
    to_twin, to_base = float((a - t).norm()) / norm, float((b - t).norm()) / norm
    assert to_twin <= rel and to_twin * 10 <= to_base, f"{what}: relative error {to_twin:.2e} vs the twin (bound {rel:.0e}), {to_base:.2e} fp32 vs the twin"


# The products of a reduced-precision model, written out here rather than read from the package:
# the projections (the biLSTM's w_proj, the token encoder's proj_weight) of an int8 model are bf16
# (elmo_fast.reference.lowp.projection_precision), every other product is in the weight precision.
PROJECTION_PRECISION = {"fp32": "fp32", "bf16": "bf16", "int8": "bf16"}


def twin_products(precision: str) -> dict:
    """``product=`` / ``projection_product=`` of lstmp_ref and token_encoder_ref for a ``precision`` model."""
    from elmo_fast.reference.lowp import product_fn

    return {"product": product_fn(precision), "projection_product": product_fn(PROJECTION_PRECISION[precision])}

