"""The ``cuda`` backend of ``lstmp`` (elmo_fast._C_cuda) against the reference, on a CUDA device.

float32 runs the per-step kernels (<= 1e-5); bf16 runs the persistent kernel where the layer fits on
chip and the per-step kernels otherwise (~1e-2 relative), both checked against the reference in
float64 on the same bf16-rounded values. Each persistent case first asks the extension for its plan,
so a test that says "persistent" really ran the persistent kernel.
"""
from __future__ import annotations


import pytest
import torch
from utils import assert_close, random_lstm_inputs

from elmo_fast.ops.lstmp import lstmp
from elmo_fast.reference import lstmp_ref

from elmo_fast.ops import registry  # noqa: E402

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or registry.lookup("lstmp", "cuda") is None,
    reason="needs a CUDA device and the compiled extension elmo_fast._C_cuda (pip install --no-build-isolation -e .)",
)

CLIPS = {"cell_clip": 0.6, "proj_clip": 0.5}

# (num_dirs, batch, width, proj, cell, lengths); lengths None = random with one full row
STEP_SHAPES = {
    "T1_B1": (2, 1, 1, 16, 32, [1]),
    "mixed_with_empty_row": (2, 5, 6, 16, 32, [6, 0, 3, 1, 5]),
    "forward_only": (1, 3, 4, 16, 32, [2, 4, 1]),
    "odd_small_dims": (2, 4, 5, 12, 20, [5, 2, 4, 1]),
    "several_tiles_and_chunks": (2, 11, 3, 72, 136, None),
    "persistent_sized": (2, 5, 7, 64, 256, [7, 0, 3, 1, 5]),
}
# shapes the persistent kernel takes (proj % 64 == 0, cell % 16 == 0)
PERSISTENT_SHAPES = {
    "T1_B1": (2, 1, 1, 64, 256, [1]),
    "mixed_with_empty_row": (2, 5, 7, 64, 256, [7, 0, 3, 1, 5]),
    "forward_only": (1, 3, 4, 64, 128, [2, 4, 1]),
    "two_row_chunks_partial_tiles": (2, 37, 9, 64, 256, None),
    "small_model_dims": (2, 6, 5, 128, 1024, [5, 1, 4, 2, 5, 3]),
    "original_model_dims": (2, 4, 22, 512, 4096, [22, 5, 0, 13]),
}


@pytest.fixture
def per_step_only():
    """Run with the persistent kernel switched off (every layer per step), then switch it back on."""
    from elmo_fast import _C_cuda

    _C_cuda.set_persistent_enabled(False)
    yield
    _C_cuda.set_persistent_enabled(True)


def _inputs(shape: tuple, seed: int, initial_state: bool, dtype: torch.dtype) -> dict:
    num_dirs, batch, width, proj, cell, lengths = shape
    inp = random_lstm_inputs(num_dirs, batch, width, proj, cell, seed=seed, lengths=lengths)
    if not initial_state:
        inp["h0"] = inp["c0"] = None
    return {k: None if v is None else v.to("cuda", dtype if v.is_floating_point() else v.dtype) for k, v in inp.items()}


def _reference(inp: dict, **kwargs) -> tuple[torch.Tensor, ...]:
    """The reference in float64 on the same (possibly bf16-rounded) values."""
    wide = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inp.items()}
    return lstmp_ref(**wide, **kwargs)


def _check(inp: dict, dtype: torch.dtype, what: str, **kwargs) -> None:
    got = lstmp(**inp, backend="cuda", **kwargs)
    want = _reference(inp, **kwargs)
    for name, g, w in zip(("out", "h_n", "c_n"), got, want):
        assert g.dtype == dtype and g.is_cuda, f"{what} {name}: {g.dtype} on {g.device}"
        assert_close(g.float(), w, dtype, f"{what} {name}")
    out, lengths = got[0], inp["lengths"].to(got[0].device)
    padding = torch.arange(out.shape[2], device=out.device) >= lengths.view(-1, 1)
    assert bool((out[:, padding] == 0).all()), f"{what}: padding positions must be exactly 0"


def _plan(shape: tuple) -> dict:
    from elmo_fast import _C_cuda

    num_dirs, batch, _, proj, cell, _ = shape
    return _C_cuda.persistent_plan(num_dirs, batch, cell, proj, bf16=True)


STEP_CASES = [(s, True, True) for s in STEP_SHAPES] + [
    ("mixed_with_empty_row", False, True), ("mixed_with_empty_row", True, False), ("T1_B1", False, False),
]


@pytest.mark.parametrize("shape,initial_state,residual", STEP_CASES,
                         ids=[f"{s}-{'h0' if i else 'zero'}-{'res' if r else 'nores'}" for s, i, r in STEP_CASES])
def test_fp32_per_step_matches_reference(shape, initial_state, residual):
    inp = _inputs(STEP_SHAPES[shape], seed=len(shape) + 7 * initial_state + 3 * residual, initial_state=initial_state,
                  dtype=torch.float32)
    _check(inp, torch.float32, f"fp32 {shape}", residual=residual, **CLIPS)


def test_fp32_never_takes_the_persistent_kernel():
    from elmo_fast import _C_cuda

    plan = _C_cuda.persistent_plan(2, 4, 256, 64, bf16=False)
    assert not plan["persistent"] and "bf16" in plan["reason"]


@pytest.mark.parametrize("shape", list(PERSISTENT_SHAPES))
@pytest.mark.parametrize("initial_state", [True, False], ids=["h0", "zero"])
def test_bf16_persistent_matches_reference(shape, initial_state):
    plan = _plan(PERSISTENT_SHAPES[shape])
    if not plan["persistent"]:
        pytest.skip(f"the persistent kernel does not take {shape} on this GPU: {plan['reason']}")
    inp = _inputs(PERSISTENT_SHAPES[shape], seed=13 + initial_state, initial_state=initial_state, dtype=torch.bfloat16)
    _check(inp, torch.bfloat16, f"bf16 persistent {shape}", residual=True, cell_clip=3.0, proj_clip=3.0)


@pytest.mark.parametrize("shape", ["mixed_with_empty_row", "two_row_chunks_partial_tiles", "original_model_dims"])
def test_bf16_per_step_matches_reference(shape, per_step_only):
    inp = _inputs(PERSISTENT_SHAPES[shape], seed=17, initial_state=True, dtype=torch.bfloat16)
    _check(inp, torch.bfloat16, f"bf16 per step {shape}", residual=True, cell_clip=3.0, proj_clip=3.0)


def test_bf16_persistent_unclipped_no_residual_clips_fire():
    shape = PERSISTENT_SHAPES["mixed_with_empty_row"]
    if not _plan(shape)["persistent"]:
        pytest.skip("the persistent kernel does not take this shape on this GPU")
    inp = _inputs(shape, seed=5, initial_state=True, dtype=torch.bfloat16)
    _check(inp, torch.bfloat16, "bf16 persistent, no clipping")
    inp["x"] = inp["x"] * 4
    _check(inp, torch.bfloat16, "bf16 persistent, tight clips", cell_clip=0.5, proj_clip=0.2)


def test_bf16_persistent_batch_split_over_launches():
    shape = (2, 300, 3, 512, 4096, None)
    plan = _plan(shape)
    if not plan["persistent"]:
        pytest.skip(f"the persistent kernel does not take the original model here: {plan['reason']}")
    assert plan["rows_per_launch"] < 300, plan
    inp = _inputs(shape, seed=23, initial_state=True, dtype=torch.bfloat16)
    _check(inp, torch.bfloat16, "bf16 persistent, several launches", residual=True, cell_clip=3.0, proj_clip=3.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_strided_inputs_and_cpu_lengths(dtype):
    inp = _inputs(PERSISTENT_SHAPES["mixed_with_empty_row"], seed=29, initial_state=True, dtype=dtype)
    num_dirs, batch, width, proj = inp["x"].shape
    # every other row of a wider batch, the first columns of a wider feature dim: the kernels get strides
    wide = torch.randn(num_dirs, 2 * batch, width, 2 * proj, device="cuda").to(dtype)
    wide[:, ::2, :, :proj] = inp["x"]
    inp["x"] = wide[:, ::2, :, :proj]
    assert not inp["x"].is_contiguous() and inp["x"].stride(-1) == 1
    inp["lengths"] = inp["lengths"].cpu()
    _check(inp, dtype, f"{dtype} strided", residual=True, **CLIPS)


@pytest.mark.parametrize("batch,width", [(0, 4), (3, 0)])
def test_empty_batch_or_width(batch, width):
    inp = _inputs((2, batch, width, 16, 32, [0] * batch), seed=1, initial_state=True, dtype=torch.float32)
    _check(inp, torch.float32, f"B={batch} T={width}", residual=True, **CLIPS)


def test_errors_are_clear():
    inp = _inputs(STEP_SHAPES["odd_small_dims"], seed=1, initial_state=False, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="w_hh has shape"):
        lstmp(**{**inp, "w_hh": inp["w_hh"][:, :-1]}, backend="cuda")
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        lstmp(**{k: v.half() if v.is_floating_point() else v for k, v in inp.items() if v is not None}, backend="cuda")
