"""``torch.compile(Elmo(..., state="zero"), fullgraph=True)`` and ``torch.export`` of the same module.

The graph-break and equality checks compile with ``backend="aot_eager"`` (dynamo, fake tensors and
AOT autograd: everything but inductor's code generation, which compiles C++ and takes tens of
seconds per shape on a small CPU); one test runs inductor itself. The fake (meta) kernels of the
compiled ops are opchecked in test_cpp_lstmp.py and test_cpp_token_encoder.py.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import Elmo, batch_to_ids
from elmo_fast._backends import probe

BACKENDS = ["ref"] + (["cpp"] if probe("cpp")[0] else [])
# Two shapes unlike each other (and a third for export): T = 1, and mixed lengths with non-ASCII tokens.
BATCHES = [
    [["Hello"]],
    random_sentences(5, seed=11, max_len=8) + [["naïve", "東京", "🙂"]],
    [["w"] * 13, ["x", "y"]],
]


def _model(backend: str) -> Elmo:
    return Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 2, dropout=0.0, state="zero", backend=backend).eval()


def _assert_same(out: dict, expected: dict, what: str) -> None:
    assert torch.equal(out["mask"], expected["mask"]), what
    for k, (a, e) in enumerate(zip(out["elmo_representations"], expected["elmo_representations"])):
        assert_close(a, e, what=f"{what}, representation {k}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_graph_no_break(backend):
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(_model(backend))(batch_to_ids(BATCHES[1]))
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_fullgraph_equals_eager(backend):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    model = _model(backend)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        for batch in BATCHES[:2]:
            ids = batch_to_ids(batch)
            _assert_same(compiled(ids), model(ids), f"compiled {backend}, shape {tuple(ids.shape)}")
    assert not torch._dynamo.utils.counters["graph_break"]


def test_inductor_compiles_the_cpp_ops():
    backend = BACKENDS[-1]
    torch._dynamo.reset()
    model = _model(backend)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for batch in BATCHES[1:]:
            ids = batch_to_ids(batch)
            _assert_same(compiled(ids), model(ids), f"inductor {backend}, shape {tuple(ids.shape)}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_export_with_dynamic_batch_and_length(backend):
    model = _model(backend)
    limit = model._elmo_lstm.max_sentence_length
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("tokens", min=1, max=limit)}
    with torch.no_grad():
        program = torch.export.export(model, (batch_to_ids([["a", "b", "c"], ["xy"]]),), dynamic_shapes=(dims,))
        exported = program.module()
        for batch in BATCHES:
            ids = batch_to_ids(batch)
            _assert_same(exported(ids), model(ids), f"exported {backend}, shape {tuple(ids.shape)}")
