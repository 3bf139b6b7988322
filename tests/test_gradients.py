"""Gradients of the reference ops and of ``Elmo(requires_grad=True)`` against float64 finite differences."""
from __future__ import annotations

import functools

import pytest
import torch
from torch.autograd import gradcheck
from utils import random_lstm_inputs

from elmo_fast import Elmo, batch_to_ids
from elmo_fast.modules import BiLm
from elmo_fast.reference import lstmp_ref, scalar_mix_ref, token_encoder_ref
from elmo_fast.weights import ElmoOptions, random_weights

TINY = ElmoOptions(projection_dim=3, cell_dim=4, filters=((1, 2), (2, 3)), n_highway=1, char_embed_dim=3)
FLOAT_NAMES = ("x", "w_ih", "w_hh", "bias", "w_proj", "h0", "c0")


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("clip", [None, 0.7])
def test_lstmp_ref_gradcheck(residual, clip):
    # mixed lengths (a T=1 row), both directions, initial state; clip=0.7 clamps part of the values
    args = random_lstm_inputs(2, 3, 4, 3, 4, seed=11, dtype=torch.float64, lengths=[4, 1, 3])
    floats = [args[n].requires_grad_(True) for n in FLOAT_NAMES]

    def run(x, w_ih, w_hh, bias, w_proj, h0, c0):
        return lstmp_ref(x, args["lengths"], w_ih, w_hh, bias, w_proj, h0, c0, cell_clip=clip, proj_clip=clip, residual=residual)

    assert gradcheck(run, floats)
    if clip:
        out, _, c = run(*floats)
        assert bool((c.abs() == clip).any()) and bool((out.abs() == clip).any() or residual), "the clips never fired"


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_token_encoder_ref_gradcheck(activation):
    weights = random_weights(TINY, seed=3, scale=1.0)
    ids = batch_to_ids([["a", "Hello", "wörld", "", "<S>"]])[0]
    cnn = weights.char_cnn
    hw = cnn.highway[0]
    tensors = [cnn.char_embed, *cnn.conv_weights, *cnn.conv_biases, hw.w_transform, hw.b_transform, hw.w_carry, hw.b_carry, cnn.proj_weight, cnn.proj_bias]
    tensors = [t.double().requires_grad_(True) for t in tensors]
    k = len(cnn.conv_weights)

    def run(*t):
        view = type(cnn)(t[0], list(t[1 : 1 + k]), list(t[1 + k : 1 + 2 * k]), [type(hw)(*t[1 + 2 * k : 5 + 2 * k])], t[-2], t[-1])
        return token_encoder_ref(ids, view, activation)

    assert gradcheck(run, tensors, fast_mode=True)


@pytest.mark.parametrize("layer_norm", [None, "batch", "token"])
def test_scalar_mix_ref_gradcheck(layer_norm):
    g = torch.Generator().manual_seed(5)
    layers = [torch.randn(2, 4, 3, generator=g, dtype=torch.float64).requires_grad_(True) for _ in range(3)]
    scalars = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_(True)
    gamma = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])

    def run(a, b, c, s, gm):
        return scalar_mix_ref([a, b, c], s, gm, mask, layer_norm)

    assert gradcheck(run, (*layers, scalars, gamma))


def test_elmo_requires_grad_matches_finite_differences():
    bilm = BiLm(random_weights(TINY, seed=8, scale=1.0), requires_grad=True, state="zero", backend="ref").double()
    elmo = Elmo(None, None, 1, requires_grad=True, dropout=0.0, module=bilm).double()
    ids = batch_to_ids([["a", "bc"], ["Hello"], ["x", "y", "zz", "wörd"]])
    names = ["_elmo_lstm.lstm_1_w_hh", "_elmo_lstm.proj_weight", "_elmo_lstm.highway_0_w_carry", "scalar_mix_0.scalar_parameters.0"]
    params = dict(elmo.named_parameters())
    assert all(p.requires_grad for p in params.values())
    out = elmo(ids)["elmo_representations"][0]
    out.pow(2).sum().backward()
    assert all(params[n].grad is not None and params[n].grad.abs().sum() > 0 for n in names)

    def run(*tensors):
        substitute = dict(zip(names, tensors))
        return torch.func.functional_call(elmo, substitute, (ids,))["elmo_representations"][0]

    inputs = [params[n].detach().clone().requires_grad_(True) for n in names]
    with torch.no_grad():
        moved = [run(*[t + 0.1 * (i == j) for i, t in enumerate(inputs)]) for j in range(len(names))]
    assert all((m - out).abs().max() > 1e-4 for m in moved), "functional_call did not substitute a parameter"
    assert gradcheck(run, inputs, fast_mode=True)


# The GPU backends' implementations are plain Python: on CPU tensors that need gradients the registry
# must hand the call to the differentiable reference (and say so) before touching any GPU kernel.
def _gpu_lstmp(backend):
    from elmo_fast.ops import lstmp as lstmp_ops

    return {"cuda": lstmp_ops.lstmp_cuda, "triton": lstmp_ops.lstmp_triton}[backend]


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_lstmp_wrappers_fall_back_to_ref_for_gradients(backend, monkeypatch):
    from elmo_fast.ops import registry
    from elmo_fast.ops.lstmp import lstmp

    monkeypatch.setattr(registry, "_WARNED", set())
    base = random_lstm_inputs(2, 3, 4, 3, 4, seed=5, dtype=torch.float64, lengths=[4, 1, 3])

    def grads(fn):
        args = {k: v.clone().requires_grad_(k in ("x", "w_hh", "c0")) for k, v in base.items()}
        out, h_n, c_n = fn(args["x"], args["lengths"], args["w_ih"], args["w_hh"], args["bias"], args["w_proj"],
                           args["h0"], args["c0"], cell_clip=0.7, proj_clip=0.7, residual=True)
        (out.sum() + h_n.square().sum() + c_n.sum()).backward()
        return [args[k].grad for k in ("x", "w_hh", "c0")]

    with registry.temporarily_registered("lstmp", backend, _gpu_lstmp(backend)):
        with pytest.warns(UserWarning, match=f"backend '{backend}' runs lstmp with the 'ref' implementation because gradients"):
            got = grads(functools.partial(lstmp, backend=backend))
    expected = grads(lstmp_ref)
    for g, e in zip(got, expected):
        assert g is not None and torch.equal(g, e)


@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_lstmp_wrappers_use_the_kernel_without_gradients(backend, monkeypatch):
    # the fallback is for gradients only: under no_grad the (here faked) kernel runs, silently
    import sys
    import types
    import warnings

    from elmo_fast.ops import lstmp as lstmp_ops
    from elmo_fast.ops import registry

    calls = []

    def kernel(*args, **kwargs):
        calls.append(args)
        return "kernel"

    if backend == "triton":
        monkeypatch.setitem(sys.modules, "elmo_fast.kernels.lstmp", types.SimpleNamespace(lstmp_fwd=kernel))
    else:
        ops = types.SimpleNamespace(ops=types.SimpleNamespace(elmo_fast=types.SimpleNamespace(lstmp=kernel)))
        monkeypatch.setattr(lstmp_ops, "torch", ops)
    base = random_lstm_inputs(1, 2, 3, 3, 4, seed=2)
    args = [base[k].requires_grad_(k == "w_hh") for k in ("x", "lengths", "w_ih", "w_hh", "bias", "w_proj")]
    with registry.temporarily_registered("lstmp", backend, _gpu_lstmp(backend)):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert lstmp_ops.lstmp(*args, backend=backend) == "kernel"
    assert len(calls) == 1


def test_gpu_token_encoder_fallback_is_visible(monkeypatch):
    from elmo_fast.ops import registry
    from elmo_fast.ops.token_encoder import token_encoder

    monkeypatch.setattr(registry, "_WARNED", set())
    weights = random_weights(TINY, seed=3, scale=1.0).char_cnn
    weights.proj_weight.requires_grad_(True)
    ids = batch_to_ids([["a", "Hello"]])[0]
    with pytest.warns(UserWarning, match="backend 'triton' runs token_encoder with the 'ref'"):
        out = token_encoder(ids, weights, backend="triton")
    out.sum().backward()
    got = weights.proj_weight.grad.clone()
    weights.proj_weight.grad = None
    token_encoder_ref(ids, weights).sum().backward()
    assert torch.equal(got, weights.proj_weight.grad)
