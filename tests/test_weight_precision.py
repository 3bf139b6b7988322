"""Reduced-precision weights (``weight_precision="bf16"`` / ``"int8"``): the biLSTM here, the token
encoder's highway and projection in test_lowp_token_encoder.py.

The reference twin of the ``cpp`` kernels is :func:`lstmp_ref` with the products of
:mod:`elmo_fast.reference.lowp` (bf16-rounded or per-row quantised activations times the stored
weights): the kernels must give the same numbers at fp32 tolerance. The arithmetic itself and the
``ELMO_FAST_PRODUCTS=fp32`` mode are tested in test_lowp_products.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import elmo_fast._C  # noqa: F401  (registers torch.ops.elmo_fast)
from elmo_fast import ElmoEmbedder, batch_to_ids
from elmo_fast.cli import main as cli_main
from elmo_fast.modules import BiLm
from elmo_fast.ops.cpp import pack_gates
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.reference import lstmp_ref
from elmo_fast.reference.lowp import product_fn
from elmo_fast.reference.quantize import INT8_MAX, dequantize, int8_columns
from elmo_fast.weights import load_weights
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, assert_follows_twin, random_lstm_inputs, random_sentences, twin_products

REDUCED = ["bf16", "int8"]
LSTM_ARGS = ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")


def _args(inputs):
    return [inputs[k] for k in LSTM_ARGS]


def _reference(inputs, precision, **kw):
    return lstmp_ref(*_args(inputs), **kw, **twin_products(precision))


def test_int8_columns_bounds_and_error():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 37, 50, generator=g) * torch.linspace(0.01, 5.0, 50)
    w[1, :, 7] = 0.0
    q, scale = int8_columns(w)
    assert q.dtype == torch.int8 and scale.shape == (3, 50)
    assert int(q.abs().max()) == INT8_MAX
    # every column reaches +-127 at its largest entry, except the all-zero one (scale 1, values 0)
    assert torch.equal(q[1, :, 7], torch.zeros(37, dtype=torch.int8)) and scale[1, 7] == 1.0
    err = (q.float() * scale.unsqueeze(-2) - w).abs()
    assert bool((err <= scale.unsqueeze(-2) / 2 * (1 + 1e-5)).all())
    assert torch.equal(dequantize(w, "fp32"), w)
    assert torch.equal(dequantize(w, "bf16"), w.to(torch.bfloat16).float())


@pytest.mark.parametrize("precision", REDUCED)
@pytest.mark.parametrize(
    "dirs,batch,width,proj,cell",
    [
        pytest.param(2, 1, 1, 8, 16, id="T1-B1"),
        pytest.param(2, 7, 9, 24, 40, id="mixed-odd"),
        pytest.param(1, 3, 5, 130, 20, id="D1-P130"),
        pytest.param(2, 13, 6, 16, 136, id="B13-C136"),
        pytest.param(2, 4, 5, 13, 24, id="P13-odd-K"),
    ],
)
def test_cpp_matches_reference_on_stored_weights(precision, dirs, batch, width, proj, cell):
    inputs = random_lstm_inputs(dirs, batch, width, proj, cell, seed=batch * 7 + cell)
    kw = dict(cell_clip=3.0, proj_clip=3.0, residual=True)
    with torch.no_grad():
        got = lstmp(*_args(inputs), **kw, weight_precision=precision, backend="cpp")
        through_dispatch = lstmp(*_args(inputs), **kw, backend="cpp", weight_precision=precision)
        emulated = lstmp(*_args(inputs), **kw, backend="ref", weight_precision=precision)
        fp32 = lstmp_ref(*_args(inputs), **kw)
    for g, r, e, b, name in zip(got, _reference(inputs, precision, **kw), emulated, fp32, ("out", "h_n", "c_n")):
        assert_follows_twin(g, r, b, what=f"{precision} {name}")
        assert_close(e, r, what=f"ref backend, {precision} {name}")
    for a, b in zip(got, through_dispatch):
        assert torch.equal(a, b)
    # the stored weights really are the reduced ones: the result moved away from fp32
    assert not torch.allclose(got[0], fp32[0], atol=1e-6, rtol=0)


def test_uniform_products_keep_int8_projections(monkeypatch):
    """ELMO_FAST_PRODUCTS=uniform: the int8 layer multiplies its projection in int8 too (cpp and ref
    follow the all-int8 twin); by default the projection is bf16, a different result."""
    inputs = random_lstm_inputs(2, 3, 5, 24, 40, seed=21)
    kw = dict(cell_clip=3.0, proj_clip=3.0, residual=True)
    with torch.no_grad():
        native = lstmp(*_args(inputs), **kw, backend="cpp", weight_precision="int8")
        monkeypatch.setenv("ELMO_FAST_PRODUCTS", "uniform")
        got = lstmp(*_args(inputs), **kw, backend="cpp", weight_precision="int8")
        emulated = lstmp(*_args(inputs), **kw, backend="ref", weight_precision="int8")
        fp32 = lstmp_ref(*_args(inputs), **kw)
    for g, r, e, b in zip(got, lstmp_ref(*_args(inputs), **kw, product=product_fn("int8")), emulated, fp32):
        assert_follows_twin(g, r, b, what="uniform int8")
        assert_close(e, r, what="ref backend, uniform int8")
    assert not torch.allclose(native[0], got[0], atol=1e-4, rtol=0)


def test_op_checks_scales():
    inputs = random_lstm_inputs(2, 2, 3, 8, 16, seed=5)
    args = _args(inputs)[:6]
    q_ih, s_ih = int8_columns(inputs["w_ih"])
    panels = (pack_gates(q_ih), pack_gates(inputs["w_hh"]), torch.ops.elmo_fast.pack_panels(inputs["w_proj"]))
    with pytest.raises(RuntimeError, match="need their per-column scales"):
        torch.ops.elmo_fast.lstmp(*args, None, None, 3.0, 3.0, False, *panels)
    scale = s_ih.unflatten(-1, (4, 16)).contiguous()
    with pytest.raises(RuntimeError, match="scales go only with int8"):
        torch.ops.elmo_fast.lstmp(*args, None, None, 3.0, 3.0, False, *panels, scale, scale)
    with pytest.raises(RuntimeError, match="scales must be contiguous float32"):
        torch.ops.elmo_fast.lstmp(*args, None, None, 3.0, 3.0, False, *panels, scale[:, :2])
    out = torch.ops.elmo_fast.lstmp(*args, None, None, 3.0, 3.0, False, *panels, scale)
    deq = dequantize(inputs["w_ih"], "int8")
    assert_close(out[0], lstmp_ref(args[0], args[1], deq, *args[3:], cell_clip=3.0, proj_clip=3.0)[0])
    with pytest.raises(RuntimeError, match="float32, bfloat16 or int8"):
        torch.ops.elmo_fast.pack_panels(inputs["w_proj"].double())


def test_opcheck_int8():
    inputs = random_lstm_inputs(2, 3, 4, 16, 32, seed=9)
    (q_ih, s_ih), (q_hh, s_hh), (q_pr, s_pr) = (int8_columns(inputs[k]) for k in ("w_ih", "w_hh", "w_proj"))
    packed = (pack_gates(q_ih), pack_gates(q_hh), torch.ops.elmo_fast.pack_panels(q_pr))
    scales = (s_ih.unflatten(-1, (4, 32)).contiguous(), s_hh.unflatten(-1, (4, 32)).contiguous(), s_pr.contiguous())
    torch.library.opcheck(torch.ops.elmo_fast.lstmp.default, (*_args(inputs), 3.0, 3.0, True, *packed, *scales))


@pytest.mark.parametrize("precision", REDUCED)
def test_whole_model_cpp_equals_ref(precision):
    sentences = random_sentences(6, seed=3)
    kw = dict(state="zero", weight_precision=precision)
    cpp = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", **kw)
    ref = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="ref", **kw)
    fp32 = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, backend="cpp", state="zero")
    got, mask = cpp.batch_to_embeddings(sentences)
    want, _ = ref.batch_to_embeddings(sentences)
    base, _ = fp32.batch_to_embeddings(sentences)
    assert_follows_twin(got, want, base, what=precision)
    # every layer moved: the token layer's highway and projection products are reduced too
    for layer in range(got.shape[1]):
        assert not torch.equal(got[:, layer], base[:, layer]), layer
    padding = got.transpose(1, 2)[~mask]
    assert torch.equal(padding, torch.zeros_like(padding))


def test_bad_precision_and_gradients_refused():
    weights = load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    with pytest.raises(ValueError, match="weight_precision must be one of"):
        BiLm(weights, weight_precision="fp16")
    with pytest.raises(ValueError, match="is for inference"):
        BiLm(weights, requires_grad=True, weight_precision="int8")
    with pytest.raises(ValueError, match="weight_precision must be one of"):
        inputs = random_lstm_inputs(1, 1, 2, 8, 16, seed=1)
        lstmp(*_args(inputs), backend="ref", weight_precision="int4")


def test_weights_change_in_place_repacks():
    bilm = BiLm(load_weights(FIXTURE_OPTIONS, FIXTURE_WEIGHTS), state="zero", backend="cpp", weight_precision="int8")
    ids = batch_to_ids(random_sentences(3, seed=4))
    with torch.no_grad():
        first = bilm(ids).activations[1].clone()
        bilm.lstm_0_w_proj.mul_(0.5)
        second = bilm(ids).activations[1]
        fresh = BiLm(bilm.weights(), state="zero", backend="ref", weight_precision="int8")(ids).activations[1]
    assert not torch.equal(first, second)
    assert_close(second, fresh)


def test_cli_weight_precision(tmp_path):
    text = tmp_path / "in.txt"
    sentences = [["the", "cat", "sat"], ["on", "the", "mat", "."]]
    text.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    out = tmp_path / "out.hdf5"
    model = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]
    assert cli_main(["embed", str(text), str(out), *model, "--state", "zero", "--weight-precision", "bf16", "--quiet"]) == 0
    embedder = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", weight_precision="bf16")
    fp32 = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero")
    with h5py.File(out, "r") as f:
        for i, sentence in enumerate(sentences):
            assert_close(f[str(i)][...], embedder.embed_sentence(sentence), what=f"line {i}")
            assert not np.array_equal(f[str(i)][...], fp32.embed_sentence(sentence))


def test_portable_kernels_for_reduced_weights():
    """bf16 and int8 panels and products through the portable micro-kernels (ELMO_FAST_DISABLE_AVX2)."""
    script = textwrap.dedent(
        """
        import torch
        from elmo_fast.ops.lstmp import lstmp
        from elmo_fast.reference import lstmp_ref
        from utils import assert_follows_twin, random_lstm_inputs, twin_products
        inputs = random_lstm_inputs(2, 5, 6, 24, 40, seed=6)
        x, lengths, w_ih, w_hh, bias, w_proj, h0, c0 = [inputs[k] for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")]
        with torch.no_grad():
            for precision in ("bf16", "int8"):
                got = lstmp(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=3.0, proj_clip=3.0, residual=True, weight_precision=precision, backend="cpp")
                want = lstmp_ref(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=3.0, proj_clip=3.0, residual=True, **twin_products(precision))
                fp32 = lstmp_ref(x, lengths, w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=3.0, proj_clip=3.0, residual=True)
                for g, r, b in zip(got, want, fp32):
                    assert_follows_twin(g, r, b, what=precision)
        """
    )
    env = {**os.environ, "ELMO_FAST_DISABLE_AVX2": "1", "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr


def test_model_fingerprint_names_the_precisions(monkeypatch):
    """A file job's model fingerprint changes with the weight precision and, for int8, with the
    projections' (int8 models of earlier builds, and ELMO_FAST_PRODUCTS=uniform, multiply them in
    int8: such a job must not be resumed with bf16 projections, nor the other way round)."""
    from elmo_fast.jobs import model_fingerprint

    made = {p: ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", weight_precision=p) for p in ("fp32", "bf16", "int8")}
    prints = {p: model_fingerprint(e) for p, e in made.items()}
    assert len(set(prints.values())) == 3
    assert model_fingerprint(ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", weight_precision="int8")) == prints["int8"]
    monkeypatch.setenv("ELMO_FAST_PRODUCTS", "uniform")
    uniform = model_fingerprint(made["int8"])
    assert uniform != prints["int8"]
    assert [model_fingerprint(made[p]) for p in ("fp32", "bf16")] == [prints["fp32"], prints["bf16"]]
    monkeypatch.setenv("ELMO_FAST_PRODUCTS", "fp32")  # float32 products: other vectors again
    fp32_products = [model_fingerprint(made[p]) for p in ("fp32", "bf16", "int8")]
    assert fp32_products[0] == prints["fp32"] and len({*fp32_products[1:], prints["bf16"], prints["int8"], uniform}) == 5
