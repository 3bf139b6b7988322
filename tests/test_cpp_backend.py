"""The ``cpp`` backend end to end: dispatch, fallbacks, AllenNLP parity and the token cache."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import elmo_fast
from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids
from elmo_fast._backends import resolve
from elmo_fast.modules import BiLm, load_bilm
from elmo_fast.modules.token_cache import TokenCache
from elmo_fast.ops import registry
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.ops.token_encoder import token_encoder
from elmo_fast.weights import ElmoOptions, random_weights
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, load_fixture, random_lstm_inputs, random_sentences


TINY = ElmoOptions(projection_dim=16, cell_dim=32, filters=((1, 8), (2, 16), (3, 32), (5, 16)), n_highway=2, char_embed_dim=8)


def test_auto_picks_cpp_on_cpu():
    assert resolve("auto", "cpu") == "cpp"
    assert "cpp     yes" in elmo_fast.env_report()


def test_hidden_extension_falls_back_to_ref():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["elmo_fast._C"] = None  # as if the extension had not been built
        import elmo_fast, torch
        from elmo_fast._backends import BackendUnavailable, resolve
        from elmo_fast.ops import registry
        assert resolve("auto", "cpu") == "ref"
        assert registry.lookup("lstmp", "cpp") is None and registry.lookup("token_encoder", "cpp") is None
        report = elmo_fast.env_report()
        assert "cpp     no" in report and "elmo_fast._C did not import" in report, report
        try:
            resolve("cpp", "cpu")
        except BackendUnavailable as exc:
            assert "pip install" in str(exc)
        else:
            raise AssertionError("backend='cpp' should be refused")
        print("fallback ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fallback ok" in done.stdout


def test_gradients_fall_back_to_ref_visibly(monkeypatch):
    monkeypatch.setattr(registry, "_WARNED", set())
    inputs = random_lstm_inputs(2, 3, 4, 8, 16, seed=1)
    args = [inputs[k].clone().requires_grad_(k in ("x", "w_hh")) for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj")]
    with pytest.warns(UserWarning, match="'cpp' runs lstmp with the 'ref'"):
        out_cpp = lstmp(*args, cell_clip=3.0, proj_clip=3.0, backend="cpp")
    out_cpp[0].sum().backward()
    grads_cpp = [args[0].grad.clone(), args[3].grad.clone()]
    args[0].grad = args[3].grad = None
    lstmp(*args, cell_clip=3.0, proj_clip=3.0, backend="ref")[0].sum().backward()
    assert torch.equal(grads_cpp[0], args[0].grad) and torch.equal(grads_cpp[1], args[3].grad)


def test_training_a_bilm_through_cpp_gets_gradients(monkeypatch):
    monkeypatch.setattr(registry, "_WARNED", set())
    options = ElmoOptions(projection_dim=8, cell_dim=16, filters=((1, 4), (2, 4)), n_highway=1, char_embed_dim=4)
    bilm = BiLm(random_weights(options), requires_grad=True, state="zero", backend="cpp")
    with pytest.warns(UserWarning, match="gradients are required"):
        out = bilm(batch_to_ids([["a", "b"], ["c"]]))
    out.activations[-1].sum().backward()
    assert bilm.char_embed.grad is not None and bilm.lstm_0_w_hh.grad is not None
    assert len(bilm.token_cache) == 0


@pytest.fixture(scope="module")
def fixture():
    return load_fixture()


def test_elmo_matches_allennlp(fixture):
    arrays, sentences, batch_b = fixture
    elmo = Elmo(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, 2, dropout=0.0, backend="cpp").eval()
    ids = batch_to_ids(sentences)
    with torch.no_grad():
        first = elmo(ids)
        second = elmo(ids)
        after = elmo(batch_to_ids(batch_b))
    assert_close(first["elmo_representations"][0], arrays["elmo_rep0"], what="elmo_rep0")
    assert_close(first["elmo_representations"][1], arrays["elmo_rep1"], what="elmo_rep1")
    assert np.array_equal(first["mask"].numpy(), arrays["elmo_mask"])
    assert_close(second["elmo_representations"][0], arrays["elmo_rep0_second_call_no_reset"], what="second call")
    assert_close(after["elmo_representations"][0], arrays["elmo_rep0_batch_b_after_two_calls_no_reset"], what="batch_b")


def test_bilm_matches_allennlp(fixture):
    arrays, sentences, _ = fixture
    bilm = load_bilm(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp")
    assert bilm.resolved_backend(torch.device("cpu")) == "cpp"
    with torch.no_grad():
        out = bilm(batch_to_ids(sentences))
    assert_close(torch.stack(out.activations), arrays["bilm_activations"], what="bilm_activations")
    assert_close(out.token_embedding, arrays["token_embedding"], what="token_embedding")
    assert_close(out.final_h, arrays["bilm_final_h"], what="final_h")
    assert_close(out.final_c, arrays["bilm_final_c"], what="final_c")


def test_embedder_matches_allennlp(fixture):
    arrays, sentences, _ = fixture
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp")
    got = np.zeros_like(arrays["embedder_bs4"])
    for i, emb in enumerate(embedder.embed_sentences(sentences, batch_size=4)):
        got[i, :, : emb.shape[1]] = emb
    assert_close(got, arrays["embedder_bs4"], what="embedder_bs4")


def test_token_cache_changes_no_number():
    weights = random_weights(TINY, seed=2)
    cached = BiLm(weights, state="zero", backend="cpp", token_cache_size=300).eval()
    plain = BiLm(weights, state="zero", backend="cpp", token_cache_size=0).eval()
    assert plain.token_cache is None
    with torch.no_grad():
        for seed in (0, 1, 0, 2, 1):
            ids = batch_to_ids(random_sentences(7, seed=seed, max_len=15))
            a, b = cached(ids), plain(ids)
            for x, y in zip(a.activations + [a.token_embedding], b.activations + [b.token_embedding]):
                assert torch.equal(x, y)
    assert cached.token_cache.hits > 0 and 0 < len(cached.token_cache) <= 300


def test_token_cache_is_refreshed_when_weights_change():
    weights = random_weights(TINY, seed=3)
    bilm = BiLm(weights, state="zero", backend="cpp").eval()
    ids = batch_to_ids(random_sentences(3, seed=4))
    with torch.no_grad():
        before = bilm(ids).token_embedding
        bilm.proj_bias.add_(1.0)
        after = bilm(ids).token_embedding
    assert_close(after, before + 1.0)


def test_token_cache_lru_order():
    cache = TokenCache(capacity=3)
    rows = torch.arange(5).unsqueeze(1).repeat(1, 50)
    calls = []

    def encode(ids):
        calls.append(ids[:, 0].tolist())
        return ids[:, :2].float()

    for picked in ([0, 1, 2], [0, 3], [1, 4], [0, 3, 4]):
        out = cache.embed(rows[picked], encode, stamp="w")
        assert torch.equal(out, rows[picked][:, :2].float())
    # [0,1,2] -> [0,3] evicts 1 (0 was used) -> [1,4] evicts 2 then 0 -> [0,3,4] recomputes only 0
    assert calls == [[0, 1, 2], [3], [1, 4], [0]]
    cache.embed(rows[[0]], encode, stamp="other weights")
    assert calls[-1] == [0] and len(cache) == 1


def test_token_cache_not_used_by_ref_backend():
    bilm = BiLm(random_weights(TINY, seed=1), state="zero", backend="ref").eval()
    with torch.no_grad():
        bilm(batch_to_ids([["a", "b"]]))
    assert bilm.token_cache is not None and len(bilm.token_cache) == 0


def test_portable_kernel_matches_reference(tmp_path):
    """The micro-kernel for CPUs without AVX2+FMA (forced here by ELMO_FAST_DISABLE_AVX2)."""
    script = textwrap.dedent(
        """
        import sys, torch
        from elmo_fast.ops.lstmp import lstmp
        from elmo_fast.ops.token_encoder import token_encoder_cpp
        from elmo_fast.reference import lstmp_ref, token_encoder_ref
        from elmo_fast import batch_to_ids
        from elmo_fast.weights import ElmoOptions, random_weights
        from utils import assert_close, random_lstm_inputs, random_sentences
        inputs = random_lstm_inputs(2, 9, 7, 24, 40, seed=2)
        args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
        with torch.no_grad():
            out = lstmp(*args, cell_clip=3.0, proj_clip=3.0, residual=True, backend="cpp")
            for got, ref in zip(out, lstmp_ref(*args, cell_clip=3.0, proj_clip=3.0, residual=True)):
                assert_close(got, ref)
            options = ElmoOptions(projection_dim=20, cell_dim=32, filters=((1, 4), (2, 8), (3, 20)), n_highway=1, char_embed_dim=4)
            cnn = random_weights(options).char_cnn
            ids = batch_to_ids(random_sentences(5, seed=1))
            assert_close(token_encoder_cpp(ids, cnn), token_encoder_ref(ids, cnn))
        torch.save(out[0], sys.argv[1])
        """
    )
    env = {**os.environ, "ELMO_FAST_DISABLE_AVX2": "1", "PYTHONPATH": str(Path(__file__).parent)}
    saved = tmp_path / "portable.pt"
    done = subprocess.run([sys.executable, "-c", script, str(saved)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    inputs = random_lstm_inputs(2, 9, 7, 24, 40, seed=2)
    args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
    with torch.no_grad():
        here = lstmp(*args, cell_clip=3.0, proj_clip=3.0, residual=True, backend="cpp")[0]
    portable = torch.load(saved)
    assert_close(portable, here)
    # Different rounding (no FMA) shows that the portable kernel really ran, where AVX2 exists.
    if os.uname().machine == "x86_64":
        assert not torch.equal(portable, here)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


@pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="needs a CPU with AVX-512 (its kernel is then the default)")
def test_avx512_and_avx2_kernels_agree_bitwise(tmp_path):
    """Where AVX-512 runs by default, ELMO_FAST_DISABLE_AVX512 selects the AVX2 kernel: the same FMAs
    in the same order, so every weight precision gives the same bits through the whole model."""
    script = textwrap.dedent(
        """
        import sys, torch
        from elmo_fast import ElmoEmbedder
        from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, random_lstm_inputs, random_sentences
        from elmo_fast.ops.lstmp import lstmp
        inputs = random_lstm_inputs(2, 7, 9, 40, 136, seed=5)
        args = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
        outs = []
        with torch.no_grad():
            for precision in ("fp32", "bf16", "int8"):
                outs.append(lstmp(*args, cell_clip=3.0, proj_clip=3.0, residual=True, weight_precision=precision, backend="cpp")[0])
                embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend="cpp", weight_precision=precision)
                outs.append(embedder.batch_to_embeddings(random_sentences(5, seed=2))[0])
        torch.save(outs, sys.argv[1])
        """
    )
    results = []
    for disable in (False, True):
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        env.pop("ELMO_FAST_DISABLE_AVX512", None)
        if disable:
            env["ELMO_FAST_DISABLE_AVX512"] = "1"
        saved = tmp_path / f"out_{disable}.pt"
        done = subprocess.run([sys.executable, "-c", script, str(saved)], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        results.append(torch.load(saved))
    for a, b in zip(*results):
        assert torch.equal(a, b)
