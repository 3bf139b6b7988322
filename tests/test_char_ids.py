"""batch_to_ids: the byte-level id scheme, boundaries, truncation, padding and input errors."""
from __future__ import annotations

import sys

import pytest
import torch

from elmo_fast import batch_to_ids
from elmo_fast.reference.char_ids import add_sentence_boundaries, remove_sentence_boundaries


def test_word_layout():
    ids = batch_to_ids([["ab"]])[0, 0].tolist()
    assert ids[:4] == [259, ord("a") + 1, ord("b") + 1, 260]
    assert ids[4:] == [261] * 46


def test_boundary_tokens_and_empty_string():
    bos, eos, empty = batch_to_ids([["<S>", "</S>", ""]])[0].tolist()
    assert bos[:3] == [259, 257, 260] and eos[:3] == [259, 258, 260]
    assert bos[3:] == eos[3:] == [261] * 47
    assert empty[:2] == [259, 260] and empty[2:] == [261] * 48


def test_truncation_is_by_bytes():
    word48 = "a" * 47 + "b"
    assert torch.equal(batch_to_ids([[word48 + "c"]]), batch_to_ids([[word48]]))
    # a two-byte character straddling byte 48 is cut in half
    ids = batch_to_ids([["a" * 47 + "é"]])[0, 0].tolist()
    assert ids[48] == "é".encode()[0] + 1 and ids[49] == 260


def test_lone_surrogate_vanishes():
    assert torch.equal(batch_to_ids([["a\ud800b"]]), batch_to_ids([["ab"]]))


def test_padding_and_shapes():
    ids = batch_to_ids([["a", "b", "c"], [], ["d"]])
    assert ids.shape == (3, 3, 50) and ids.dtype == torch.int64
    assert not ids[1].any() and not ids[2, 1:].any() and ids[2, 0].all()
    assert batch_to_ids([]).shape == (0, 0, 50)
    assert batch_to_ids([[]]).shape == (1, 0, 50)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("a sentence", "list of sentences"),
        (["just", "tokens"], "did you pass one sentence"),
        ([["ok"], "oops"], "sentence 1"),
        ([["ok", None]], "token 1 of sentence 0"),
        ([["ok", 3]], "must be a str"),
        (None, "list of sentences"),
    ],
)
def test_bad_input_errors(bad, message):
    with pytest.raises(TypeError, match=message):
        batch_to_ids(bad)


def test_boundaries_round_trip():
    ids = batch_to_ids([["a", "b"], [], ["c", "d", "e"]])
    mask = (ids > 0).any(-1)
    with_bounds, new_mask = add_sentence_boundaries(ids, mask)
    assert new_mask.sum(1).tolist() == [4, 2, 5]
    assert with_bounds[1, 0, 1] == 257 and with_bounds[1, 1, 1] == 258
    back, back_mask = remove_sentence_boundaries(with_bounds.float(), new_mask)
    assert torch.equal(back_mask, mask)
    assert torch.equal(back.long(), ids)


def test_without_numba_the_reference_runs(monkeypatch):
    from elmo_fast import env_report
    from elmo_fast.reference.char_ids import batch_to_ids_ref

    from elmo_fast.ops import char_ids as ops_char_ids

    monkeypatch.setitem(sys.modules, "numba", None)
    ops_char_ids.probe_numba.cache_clear()
    ops_char_ids._compiled_kernel.cache_clear()
    try:
        ok, why = ops_char_ids.probe_numba()
        assert not ok and "numba did not import" in why
        assert "char ids: reference (numba did not import" in env_report()
        batch = [["<S>", "a" * 47 + "é"], [], ["a\ud800b", ""]]
        assert torch.equal(batch_to_ids(batch), batch_to_ids_ref(batch))
        with pytest.raises(TypeError, match="token 1 of sentence 0"):
            batch_to_ids([["ok", None]])
    finally:
        ops_char_ids.probe_numba.cache_clear()
        ops_char_ids._compiled_kernel.cache_clear()
