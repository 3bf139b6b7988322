"""The whole model through ``backend="triton"`` against AllenNLP's recording (tests/fixtures/allennlp_tiny).

With a fresh model every row starts from zero state, so a row's numbers do not depend on the other
rows (up to float32 summation order, ~1e-6). The interpreter runs one program at a time, so these
tests take the recording's sentences of at most 10 tokens (14 of the 20 edge cases: every odd
character case) to keep the width, and the number of time steps, at 12.
"""
from __future__ import annotations

import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, TRITON_DEVICE, TRITON_SKIP_REASON, assert_close, load_fixture

from elmo_fast import Elmo, _backends
from elmo_fast.modules import BiLm
from elmo_fast.weights import load_weights

pytestmark = pytest.mark.skipif(TRITON_DEVICE is None, reason=TRITON_SKIP_REASON)

MAX_TOKENS = 10


@pytest.fixture(scope="module")
def recording():
    arrays, _, _ = load_fixture()
    rows = torch.as_tensor(arrays["lengths"] <= MAX_TOKENS).nonzero().flatten()
    ids = torch.as_tensor(arrays["char_ids"])[rows][:, :MAX_TOKENS]
    return arrays, rows, ids


def _rows(array, rows: torch.Tensor, width: int, axis: int = 0) -> torch.Tensor:
    """``array`` restricted to ``rows`` (on ``axis``) and the first ``width`` positions (the next axis)."""
    t = torch.as_tensor(array).index_select(axis, rows)
    return t.narrow(axis + 1, 0, width)


def test_triton_resolves_here():
    assert _backends.resolve("triton", TRITON_DEVICE) == "triton"


def test_bilm_matches_allennlp_twice_with_carried_state(recording):
    arrays, rows, ids = recording
    bilm = BiLm(load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS), backend="triton").to(TRITON_DEVICE)
    width = MAX_TOKENS + 2
    first = bilm(ids.to(TRITON_DEVICE))
    assert_close(first.token_embedding, _rows(arrays["token_embedding"], rows, width), torch.float32, "token embedding")
    for layer, got in enumerate(first.activations):
        assert_close(got, _rows(arrays["bilm_activations"][layer], rows, width), torch.float32, f"layer {layer}, first call")
    final_h = torch.as_tensor(arrays["bilm_final_h"]).index_select(1, rows)
    final_c = torch.as_tensor(arrays["bilm_final_c"]).index_select(1, rows)
    assert_close(first.final_h, final_h, torch.float32, "final h")
    assert_close(first.final_c, final_c, torch.float32, "final c")
    # the second call starts every row from the state the first call left (initial-state path)
    second = bilm(ids.to(TRITON_DEVICE))
    for layer, got in enumerate(second.activations):
        want = _rows(arrays["bilm_activations_second_call_no_reset"][layer], rows, width)
        assert_close(got, want, torch.float32, f"layer {layer}, second call")


def test_elmo_matches_allennlp(recording):
    arrays, rows, ids = recording
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 2, dropout=0.0, backend="triton", device=TRITON_DEVICE).eval()
    out = elmo(ids.to(TRITON_DEVICE))
    assert out["mask"].cpu().equal(_rows(arrays["elmo_mask"], rows, MAX_TOKENS))
    for k in range(2):
        got = out["elmo_representations"][k]
        assert_close(got, _rows(arrays[f"elmo_rep{k}"], rows, MAX_TOKENS), torch.float32, f"elmo representation {k}")
