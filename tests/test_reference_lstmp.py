"""The reference LSTM-with-projection against an independent per-row, per-step loop (float64)."""
from __future__ import annotations

import pytest
import torch
from utils import assert_close, random_lstm_inputs

from elmo_fast.reference import lstmp_ref


def naive_row(x, length, w_ih, w_hh, bias, w_proj, h, c, reverse, cell_clip, proj_clip, residual):
    """One direction of one row, step by step, in the plainest possible form."""
    width, proj = x.shape[0], w_proj.shape[1]
    out = torch.zeros(width, proj, dtype=x.dtype)
    cell = w_proj.shape[0]
    positions = range(length - 1, -1, -1) if reverse else range(length)
    for t in positions:
        z = torch.cat([x[t], h]) @ torch.cat([w_ih, w_hh]) + bias
        i, j, f, o = z[:cell], z[cell : 2 * cell], z[2 * cell : 3 * cell], z[3 * cell :]
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(j)
        if cell_clip:
            c = torch.clamp(c, -cell_clip, cell_clip)
        h = (torch.sigmoid(o) * torch.tanh(c)) @ w_proj
        if proj_clip:
            h = torch.clamp(h, -proj_clip, proj_clip)
        out[t] = h + (x[t] if residual else 0)
    return out, h, c


def naive(inputs, cell_clip, proj_clip, residual, with_state):
    x = inputs["x"]
    num_dirs, batch = x.shape[:2]
    outs = torch.zeros(num_dirs, batch, x.shape[2], inputs["w_proj"].shape[2], dtype=x.dtype)
    hs, cs = torch.zeros_like(inputs["h0"]), torch.zeros_like(inputs["c0"])
    for d in range(num_dirs):
        for b in range(batch):
            h0 = inputs["h0"][d, b] if with_state else torch.zeros_like(inputs["h0"][d, b])
            c0 = inputs["c0"][d, b] if with_state else torch.zeros_like(inputs["c0"][d, b])
            outs[d, b], hs[d, b], cs[d, b] = naive_row(
                x[d, b], int(inputs["lengths"][b]), inputs["w_ih"][d], inputs["w_hh"][d], inputs["bias"][d],
                inputs["w_proj"][d], h0, c0, d == 1, cell_clip, proj_clip, residual,
            )
    return outs, hs, cs


@pytest.mark.parametrize(
    "num_dirs, batch, width, cell, lengths",
    [(2, 1, 1, 8, None), (2, 4, 7, 12, [7, 1, 3, 5]), (1, 3, 5, 6, [2, 5, 4]), (2, 5, 9, 20, None)],
)
@pytest.mark.parametrize("clips", [(3.0, 3.0), (None, None), (0.5, 0.2)])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_matches_naive_loop(num_dirs, batch, width, cell, lengths, clips, residual, with_state):
    inputs = random_lstm_inputs(num_dirs, batch, width, 6, cell, seed=width * 31 + batch, dtype=torch.float64, lengths=lengths)
    inputs["x"] = inputs["x"] * 2.0
    cell_clip, proj_clip = clips
    got = lstmp_ref(
        inputs["x"], inputs["lengths"], inputs["w_ih"], inputs["w_hh"], inputs["bias"], inputs["w_proj"],
        inputs["h0"] if with_state else None, inputs["c0"] if with_state else None,
        cell_clip=cell_clip, proj_clip=proj_clip, residual=residual,
    )
    want = naive(inputs, cell_clip, proj_clip, residual, with_state)
    for g, w, name in zip(got, want, ("out", "h_n", "c_n")):
        assert_close(g, w, torch.float64, what=name)


def test_clipping_fires_and_padding_is_zero():
    inputs = random_lstm_inputs(2, 3, 6, 8, 16, seed=7, lengths=[6, 2, 4])
    inputs["x"] = inputs["x"] * 10
    out, _, c_n = lstmp_ref(**{k: v for k, v in inputs.items()}, cell_clip=0.5, proj_clip=0.1, residual=False)
    assert out.abs().max() <= 0.1 + 1e-7 and c_n.abs().max() <= 0.5 + 1e-7
    assert not out[:, 1, 2:].any() and not out[:, 2, 4:].any()


def test_rows_are_independent_of_each_other():
    inputs = random_lstm_inputs(2, 4, 8, 8, 10, seed=3, lengths=[8, 3, 5, 1])
    full = lstmp_ref(**inputs, cell_clip=3.0, proj_clip=3.0, residual=True)
    for b in range(4):
        single = {k: (v[:, b : b + 1] if k in ("x", "h0", "c0") else v[b : b + 1] if k == "lengths" else v) for k, v in inputs.items()}
        alone = lstmp_ref(**single, cell_clip=3.0, proj_clip=3.0, residual=True)
        assert_close(alone[0], full[0][:, b : b + 1], what=f"row {b} out")
        assert_close(alone[1], full[1][:, b : b + 1], what=f"row {b} h_n")
