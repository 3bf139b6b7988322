"""Triton ``lstmp`` kernels against the reference (interpreter on CPU, or a CUDA device)."""
from __future__ import annotations

import pytest
import torch
from utils import TRITON_DEVICE, TRITON_SKIP_REASON, assert_close, random_lstm_inputs

from elmo_fast.ops.lstmp import LstmpLayer, lstmp
from elmo_fast.reference import lstmp_ref

pytestmark = pytest.mark.skipif(TRITON_DEVICE is None, reason=TRITON_SKIP_REASON)

CLIPS = {"cell_clip": 0.6, "proj_clip": 0.5}

# (num_dirs, batch, width, proj, cell, lengths); lengths None = random with one full row
SHAPES = {
    "T1_B1": (2, 1, 1, 16, 32, [1]),
    "mixed_with_empty_row": (2, 5, 6, 16, 32, [6, 0, 3, 1, 5]),
    "forward_only": (1, 3, 4, 16, 32, [2, 4, 1]),
    "odd_small_dims": (2, 4, 5, 12, 20, [5, 2, 4, 1]),
    "several_tiles_and_k_steps": (2, 2, 2, 72, 136, [2, 1]),
    "batch_over_one_tile": (2, 70, 2, 16, 16, None),
}

def _inputs(shape: str, seed: int, initial_state: bool, dtype=torch.float32) -> dict[str, torch.Tensor]:
    num_dirs, batch, width, proj, cell, lengths = SHAPES[shape]
    inp = random_lstm_inputs(num_dirs, batch, width, proj, cell, seed=seed, lengths=lengths)
    if not initial_state:
        inp["h0"] = inp["c0"] = None
    return {k: None if v is None else v.to(TRITON_DEVICE) for k, v in inp.items()}


def _reference(inp: dict, **kwargs) -> tuple[torch.Tensor, ...]:
    """The reference in float64 on the same (possibly bf16-rounded) values."""
    wide = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inp.items()}
    return lstmp_ref(**wide, **kwargs)


def _triton(inp: dict, *, cell_clip=None, proj_clip=None, residual=False, **kwargs):
    """``lstmp_fwd`` on the inputs of :func:`random_lstm_inputs`, the layer as a :class:`LstmpLayer`."""
    from elmo_fast.kernels.lstmp import lstmp_fwd

    layer = LstmpLayer(inp["w_ih"], inp["w_hh"], inp["bias"], inp["w_proj"], cell_clip, proj_clip, residual)
    return lstmp_fwd(inp["x"], inp["lengths"], layer, inp.get("h0"), inp.get("c0"), **kwargs)


CASES = [
    *((shape, True, True) for shape in SHAPES),
    ("mixed_with_empty_row", False, True),
    ("mixed_with_empty_row", True, False),
    ("mixed_with_empty_row", False, False),
    ("T1_B1", False, False),
    ("forward_only", False, False),
]


@pytest.mark.parametrize(
    "shape,initial_state,residual",
    CASES,
    ids=[f"{s}-{'h0' if i else 'zero_state'}-{'residual' if r else 'no_residual'}" for s, i, r in CASES],
)
def test_lstmp_matches_reference_fp32(shape, initial_state, residual):
    inp = _inputs(shape, seed=len(shape) + 7 * initial_state + 3 * residual, initial_state=initial_state)
    out, h_n, c_n = _triton(inp, residual=residual, **CLIPS)
    ref = _reference(inp, residual=residual, **CLIPS)
    for name, got, want in zip(("out", "h_n", "c_n"), (out, h_n, c_n), ref):
        assert got.dtype == torch.float32
        assert_close(got, want, torch.float32, f"{shape} {name}")
    padding = torch.arange(out.shape[2], device=out.device) >= inp["lengths"].view(-1, 1)
    assert bool((out[:, padding] == 0).all()), "padding positions must be exactly 0"


def test_lstmp_without_clipping_and_strided_input():
    inp = _inputs("mixed_with_empty_row", seed=11, initial_state=True)
    wide = torch.randn(*inp["x"].shape[:-1], 2 * inp["x"].shape[-1], device=TRITON_DEVICE)
    inp["x"] = wide[..., ::2]
    assert not inp["x"].is_contiguous()
    for got, want in zip(_triton(inp, residual=True), _reference(inp, residual=True)):
        assert_close(got, want, torch.float32, "unclipped, strided x")


def test_every_output_element_is_written():
    from elmo_fast.kernels.lstmp import _Buffers, _run

    inp = _inputs("mixed_with_empty_row", seed=5, initial_state=True)
    c0 = inp["c0"].float()
    weights = (inp["w_ih"], inp["w_hh"], inp["bias"], inp["w_proj"])
    buf = _Buffers(inp["x"], inp["lengths"], inp["h0"], c0, *weights, residual=True, final=True)
    for t in (buf.gx, buf.o, buf.h, buf.c, buf.a, buf.ht, buf.ct):
        t.fill_(float("nan"))
    _run(buf, CLIPS["cell_clip"], CLIPS["proj_clip"])
    for name, got, want in zip(("out", "h_n", "c_n"), (buf.o, buf.ht, buf.ct), _reference(inp, residual=True, **CLIPS)):
        assert_close(got, want, torch.float32, f"poisoned {name}")


def test_final_state_is_optional():
    inp = _inputs("mixed_with_empty_row", seed=3, initial_state=True)
    out, h_n, c_n = _triton(inp, output_final_state=False, **CLIPS)
    assert h_n is None and c_n is None
    assert_close(out, _reference(inp, **CLIPS)[0], torch.float32, "out without final state")


def test_cached_static_path_reuses_buffers_without_stale_state():
    from elmo_fast.kernels import lstmp as kernel
    from elmo_fast.ops.registry import WEIGHT_CACHE

    kernel.clear_graph_cache()
    first = _inputs("mixed_with_empty_row", seed=21, initial_state=True)
    # the same shape bucket (batch tile 16, width rounded up to 8): fewer rows, other data
    second = random_lstm_inputs(2, 3, 4, 16, 32, seed=22, lengths=[2, 4, 1])
    second = {k: v.to(TRITON_DEVICE) for k, v in second.items()}
    second.update({k: first[k] for k in ("w_ih", "w_hh", "bias", "w_proj")})
    for inp in (first, second, first):
        for got, want in zip(_triton(inp, residual=True, cuda_graph=True, **CLIPS), _reference(inp, residual=True, **CLIPS)):
            assert_close(got, want, torch.float32, "static path")
    assert WEIGHT_CACHE.count(kernel.GRAPH_FAMILY) == 1
    kernel.clear_graph_cache()


def test_cached_static_path_clamps_lengths_to_the_real_width():
    """lengths > T count as T on the cached path too, although its buffers are wider (T rounded up to 8)."""
    from elmo_fast.kernels import lstmp as kernel

    kernel.clear_graph_cache()
    inp = _inputs("mixed_with_empty_row", seed=23, initial_state=True)
    clamped = {**inp, "lengths": inp["lengths"].clone()}
    inp["lengths"] = torch.tensor([8, 0, 3, 7, 5], device=inp["x"].device)  # T is 6, the cached buffers 8 wide
    clamped["lengths"] = inp["lengths"].clamp(max=inp["x"].shape[2])
    want = _reference(clamped, residual=True, **CLIPS)
    for name, got, exp in zip(("out", "h_n", "c_n"), _triton(inp, residual=True, cuda_graph=True, **CLIPS), want):
        assert_close(got, exp, torch.float32, f"static path, lengths > T: {name}")
    kernel.clear_graph_cache()


@pytest.mark.parametrize("initial_state", [True, False], ids=["h0", "zero_state"])
def test_lstmp_bf16_close_to_fp32_reference(initial_state):
    inp = _inputs("mixed_with_empty_row", seed=31, initial_state=initial_state)
    low = {k: v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in inp.items()}
    out, h_n, c_n = _triton(low, residual=True, cell_clip=3.0, proj_clip=3.0)
    ref = _reference(low, residual=True, cell_clip=3.0, proj_clip=3.0)
    for name, got, want in zip(("out", "h_n", "c_n"), (out, h_n, c_n), ref):
        assert got.dtype == torch.bfloat16
        assert_close(got, want, torch.bfloat16, f"bf16 {name}")


def test_op_dispatches_to_triton_and_falls_back_for_autograd():
    inp = _inputs("odd_small_dims", seed=41, initial_state=True)
    got = lstmp(**inp, residual=True, backend="triton", **CLIPS)
    for a, b in zip(got, _reference(inp, residual=True, **CLIPS)):
        assert_close(a, b, torch.float32, "ops.lstmp triton")
    inp["w_hh"].requires_grad_(True)
    out, _, _ = lstmp(**inp, residual=True, backend="triton", **CLIPS)
    out.sum().backward()
    assert inp["w_hh"].grad is not None and torch.isfinite(inp["w_hh"].grad).all()


def test_shape_errors_name_the_tensor():
    inp = _inputs("odd_small_dims", seed=1, initial_state=False)
    inp["w_proj"] = inp["w_proj"][:, :-1]
    with pytest.raises(ValueError, match="w_ih has shape"):
        _triton(inp)
    inp = _inputs("odd_small_dims", seed=1, initial_state=False)
    with pytest.raises(ValueError, match="residual needs"):
        _triton({**inp, "x": inp["x"][..., :-1], "w_ih": inp["w_ih"][:, :-1]}, residual=True)
