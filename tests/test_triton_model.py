"""The whole model through ``backend="triton"`` against AllenNLP's recording (tests/fixtures/allennlp_tiny).

Every sentence and every position of the recording: the 20 edge cases of up to 40 tokens (42 time
steps with the boundaries), first from zero state, then again from the state the first call left.
Under the interpreter this file took 22 s of CPU time (three model calls; measured on the 2-core
machine, 2026-12-03). The float64 accuracy test
(tests/test_float64_accuracy.py) runs the same backend on the same fixture.
"""
from __future__ import annotations

import pytest
import torch
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, TRITON_DEVICE, TRITON_SKIP_REASON, assert_close, load_fixture

from elmo_fast import Elmo, _backends
from elmo_fast.modules import BiLm
from elmo_fast.weights import load_weights

pytestmark = pytest.mark.skipif(TRITON_DEVICE is None, reason=TRITON_SKIP_REASON)


@pytest.fixture(scope="module")
def recording():
    arrays, _, _ = load_fixture()
    return arrays, torch.as_tensor(arrays["char_ids"])


def test_triton_resolves_here():
    assert _backends.resolve("triton", TRITON_DEVICE) == "triton"


def test_bilm_matches_allennlp_twice_with_carried_state(recording):
    arrays, ids = recording
    bilm = BiLm(load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS), backend="triton", token_cache_size=0).to(TRITON_DEVICE)
    first = bilm(ids.to(TRITON_DEVICE))
    assert first.mask.cpu().equal(torch.as_tensor(arrays["bilm_mask"]))
    assert_close(first.token_embedding, arrays["token_embedding"], torch.float32, "token embedding")
    for layer, got in enumerate(first.activations):
        assert_close(got, arrays["bilm_activations"][layer], torch.float32, f"layer {layer}, first call")
    assert_close(first.final_h, arrays["bilm_final_h"], torch.float32, "final h")
    assert_close(first.final_c, arrays["bilm_final_c"], torch.float32, "final c")
    # the second call starts every row from the state the first call left (initial-state path)
    second = bilm(ids.to(TRITON_DEVICE))
    for layer, got in enumerate(second.activations):
        assert_close(got, arrays["bilm_activations_second_call_no_reset"][layer], torch.float32, f"layer {layer}, second call")


def test_elmo_matches_allennlp(recording):
    arrays, ids = recording
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 2, dropout=0.0, backend="triton", device=TRITON_DEVICE).eval()
    out = elmo(ids.to(TRITON_DEVICE))
    assert out["mask"].cpu().equal(torch.as_tensor(arrays["elmo_mask"]))
    for k in range(2):
        assert_close(out["elmo_representations"][k], arrays[f"elmo_rep{k}"], torch.float32, f"elmo representation {k}")
