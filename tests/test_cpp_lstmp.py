"""The compiled CPU ``lstmp`` (backend ``cpp``) against the reference, on odd shapes."""
from __future__ import annotations

import pytest
import torch

import elmo_fast._C  # noqa: F401  (registers torch.ops.elmo_fast; the cpp backend is always built)
from elmo_fast.ops.cpp import pack_gates
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.ops.registry import WEIGHT_CACHE
from elmo_fast.reference import lstmp_ref
from utils import assert_close, random_lstm_inputs


# (D, B, T, Pin = P, C): T=1 / B=1, C and P off the 16-column panels and the 128-wide blocks.
SHAPES = [
    pytest.param(2, 1, 1, 8, 16, id="T1-B1"),
    pytest.param(2, 5, 7, 16, 32, id="mixed"),
    pytest.param(1, 3, 6, 12, 40, id="D1-odd"),
    pytest.param(2, 13, 9, 24, 136, id="B13-C136"),
    pytest.param(2, 4, 5, 130, 20, id="P130"),
]


def _call(inputs, h0=True, clip=(3.0, 3.0), residual=False, packed=False):
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj")]
    h = (inputs["h0"], inputs["c0"]) if h0 else (None, None)
    ref = lstmp_ref(*args, *h, cell_clip=clip[0], proj_clip=clip[1], residual=residual)
    if packed:
        got = lstmp(*args, *h, cell_clip=clip[0], proj_clip=clip[1], residual=residual, backend="cpp")
    else:
        got = torch.ops.elmo_fast.lstmp(*args, *h, clip[0], clip[1], residual)
    return ref, got


def _assert_same(ref, got):
    for r, g, name in zip(ref, got, ("out", "h_n", "c_n")):
        assert_close(g, r, what=name)


@pytest.mark.parametrize("dirs,batch,width,proj,cell", SHAPES)
@pytest.mark.parametrize("h0", [False, True], ids=["zero-state", "h0"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_matches_reference(dirs, batch, width, proj, cell, h0, residual):
    inputs = random_lstm_inputs(dirs, batch, width, proj, cell, seed=batch * 100 + cell)
    _assert_same(*_call(inputs, h0=h0, residual=residual, packed=True))


@pytest.mark.parametrize("clip", [(None, None), (0.25, None), (None, 0.1), (0.5, 0.05)], ids=str)
def test_clipping(clip):
    inputs = random_lstm_inputs(2, 6, 8, 16, 48, seed=7)
    _assert_same(*_call(inputs, clip=clip, residual=True))


def test_length_zero_rows_and_padding():
    inputs = random_lstm_inputs(2, 5, 6, 16, 32, seed=3, lengths=[3, 0, 6, 0, 1])
    ref, got = _call(inputs, residual=True)
    _assert_same(ref, got)
    out, h_n, c_n = got
    # padding positions are exactly 0; rows that never run keep their initial state
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))
    assert torch.equal(out[:, 0, 3:], torch.zeros_like(out[:, 0, 3:]))
    assert torch.equal(h_n[:, 3], inputs["h0"][:, 3]) and torch.equal(c_n[:, 3], inputs["c0"][:, 3])


def test_all_rows_empty():
    inputs = random_lstm_inputs(2, 3, 4, 8, 16, seed=4, lengths=[0, 0, 0])
    _assert_same(*_call(inputs))


def test_non_contiguous_inputs():
    dirs, batch, width, proj, cell = 2, 6, 7, 16, 40
    base = random_lstm_inputs(dirs, batch, width, proj, cell, seed=11, lengths=[7, 1, 4, 7, 2, 5])
    g = torch.Generator().manual_seed(12)
    wide_x = torch.randn(dirs, batch, width, 3 * proj, generator=g)
    wide_x[..., 1::3] = base["x"]
    inputs = dict(base)
    inputs["x"] = wide_x[..., 1::3]
    inputs["w_hh"] = base["w_hh"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["w_ih"] = torch.cat((base["w_ih"], base["w_ih"]), dim=-1)[..., : 4 * cell]
    inputs["h0"] = torch.cat((base["h0"], base["h0"]), dim=-1)[..., proj:]
    assert not inputs["x"].is_contiguous() and not inputs["w_hh"].is_contiguous()
    ref, got = _call(inputs, residual=True, packed=True)
    _assert_same(ref, got)
    _assert_same(_call(base, residual=True)[0], got)


def test_packed_weights_give_identical_results():
    inputs = random_lstm_inputs(2, 9, 6, 24, 136, seed=5)
    _, direct = _call(inputs, residual=True)
    _, packed = _call(inputs, residual=True, packed=True)
    for a, b in zip(direct, packed):
        assert torch.equal(a, b)


def test_pack_cache_follows_in_place_updates():
    inputs = random_lstm_inputs(2, 3, 4, 8, 16, seed=6)
    _, first = _call(inputs, packed=True)
    with torch.no_grad():
        inputs["w_hh"].mul_(0.5)
        inputs["w_proj"].add_(0.1)
    ref, second = _call(inputs, packed=True)
    _assert_same(ref, second)
    assert not torch.equal(first[0], second[0])
    assert WEIGHT_CACHE.count("cpp.pack_lowp") >= 2


def test_bad_arguments_raise():
    inputs = random_lstm_inputs(2, 3, 4, 8, 16, seed=8)
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj")]
    bad_lengths = torch.tensor([5, 1, 1])
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.elmo_fast.lstmp(args[0], bad_lengths, *args[2:], None, None, None, None, False)
    with pytest.raises(RuntimeError, match="w_hh"):
        torch.ops.elmo_fast.lstmp(*args[:3], args[3][:, :4], *args[4:], None, None, None, None, False)
    with pytest.raises(RuntimeError, match="residual"):
        x = torch.randn(2, 3, 4, 5)
        torch.ops.elmo_fast.lstmp(x, args[1], torch.randn(2, 5, 64), *args[3:], None, None, None, None, True)
    with pytest.raises(RuntimeError, match="float32"):
        torch.ops.elmo_fast.lstmp(args[0].double(), *args[1:], None, None, None, None, False)


def test_opcheck():
    inputs = random_lstm_inputs(2, 4, 5, 16, 32, seed=9)
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
    torch.library.opcheck(torch.ops.elmo_fast.lstmp.default, (*args, 3.0, 3.0, True))
    packed = (pack_gates(inputs["w_ih"]), pack_gates(inputs["w_hh"]), torch.ops.elmo_fast.pack_panels(inputs["w_proj"]))
    torch.library.opcheck(torch.ops.elmo_fast.lstmp.default, (*args[:6], None, None, None, 0.5, False, *packed))
    torch.library.opcheck(torch.ops.elmo_fast.pack_panels.default, (inputs["w_proj"],))


@pytest.mark.parametrize("batch,width", [(40, 30), (1, 1100)], ids=["two-windows", "long-sentence"])
def test_input_gemm_windows(batch, width):
    """More positions than one input-GEMM window holds (8 MiB: 256 positions at C=1024): the windows
    must join seamlessly."""
    g = torch.Generator().manual_seed(width)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    lengths[0] = width
    inputs = random_lstm_inputs(2, batch, width, 8, 1024, seed=width, lengths=lengths)
    assert int(lengths.sum()) > 2 * 256
    _assert_same(*_call(inputs, residual=True, packed=True))


def test_thread_layouts_agree():
    """One task per direction (threads <= D) and every step split over threads give the same bits."""
    inputs = random_lstm_inputs(2, 9, 11, 24, 136, seed=13)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, per_direction = _call(inputs, residual=True, packed=True)
        torch.set_num_threads(3)
        ref, split = _call(inputs, residual=True, packed=True)
    finally:
        torch.set_num_threads(threads)
    _assert_same(ref, split)
    for a, b in zip(per_direction, split):
        assert torch.equal(a, b)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_row_result_does_not_depend_on_batch(precision):
    """One row alone (4 panels per pass), in pairs (2 per pass) and in larger groups (1 per pass): the
    same bits, since every output column is one in-order accumulation whatever the grouping."""
    inputs = random_lstm_inputs(2, 9, 8, 24, 136, seed=21, lengths=[8, 3, 8, 5, 1, 8, 6, 2, 7])
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]

    def run(rows):
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0 = args
        with torch.no_grad():
            out, h_n, c_n = lstmp(
                x[:, rows], lengths[rows], w_ih, w_hh, bias, w_proj, h0[:, rows], c0[:, rows],
                cell_clip=3.0, proj_clip=3.0, residual=True, weight_precision=precision, backend="cpp",
            )
        return out, h_n, c_n

    full = run(list(range(9)))
    for rows in ([2], [0, 2], [2, 4, 7], [5, 2, 8, 1, 0, 3, 6]):
        part = run(rows)
        at = rows.index(2)
        for a, b in zip(part, full):
            assert torch.equal(a[:, at], b[:, 2]), (precision, rows)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("threads", [2, 3])
def test_thread_schedules_give_the_same_bits(precision, threads, monkeypatch):
    """ELMO_FAST_LSTM_SCHEDULE picks how threads share a call (csrc/cpu/lstmp.cpp, choose_plan): one
    task per direction, the directions in turn with every step split (barriers), or every phase split
    by parallel_for. Each output column is computed by the same kernel either way: same bits, and the
    reference's numbers. Shapes with uneven shares (more threads than projection blocks) and rows
    that end at different steps."""
    inputs = random_lstm_inputs(2, 3, 7, 20, 300, seed=21)
    inputs["lengths"] = torch.tensor([7, 2, 5])
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outs = {}
        for schedule in ("directions", "cooperative", "split"):
            monkeypatch.setenv("ELMO_FAST_LSTM_SCHEDULE", schedule)
            with torch.no_grad():
                outs[schedule] = lstmp(*args, cell_clip=3.0, proj_clip=3.0, residual=True, backend="cpp", weight_precision=precision)
        monkeypatch.setenv("ELMO_FAST_LSTM_SCHEDULE", "sideways")
        with pytest.raises(RuntimeError, match="ELMO_FAST_LSTM_SCHEDULE must be"):
            lstmp(*args, backend="cpp")
    finally:
        torch.set_num_threads(previous)
    for schedule in ("cooperative", "split"):
        for a, b in zip(outs["directions"], outs[schedule]):
            assert torch.equal(a, b), (schedule, precision)
    if precision == "fp32":
        _assert_same(lstmp_ref(*args, cell_clip=3.0, proj_clip=3.0, residual=True), outs["cooperative"])
