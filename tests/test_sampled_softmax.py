"""Sampled softmax: the sampler's distribution and agreement with the full softmax in expectation.

Tolerances are statistical. A mean of R independent draws has standard error s / sqrt(R) (s the
sample standard deviation); by the central limit theorem a correct estimator lands within 5 standard
errors with probability 1 - 6e-7 per comparison. The seeds are fixed, so each test is deterministic;
the power checks show the same bound rejects a 5% bias.
"""
from __future__ import annotations

import math

import torch

from elmo_fast.train.softmax import full_softmax_nll, log_uniform_probs, sample_log_uniform, sampled_softmax_nll

V, P, N = 10, 4, 5


def tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, P, generator=g, dtype=torch.float64)
    weight = torch.randn(V, P, generator=g, dtype=torch.float64)
    bias = torch.randn(V, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 3, 9, 5, 0])
    return hidden, targets, weight, bias


def test_sampler_matches_log_uniform():
    q = log_uniform_probs(V)
    assert math.isclose(float(q.sum()), 1.0, rel_tol=1e-12)
    n = 200_000
    counts = torch.bincount(sample_log_uniform(V, n, torch.Generator().manual_seed(1)), minlength=V).double()
    se = torch.sqrt(q * (1 - q) / n)
    assert bool(((counts / n - q).abs() < 5 * se).all()), (counts / n, q)


def test_exp_sampled_loss_is_unbiased_for_exp_full_loss():
    # exp(loss) = Z_hat / exp(o_t) with E[Z_hat] = Z exactly, accidental hits included (V is tiny,
    # so the target is often drawn as a negative and must be removed).
    hidden, targets, weight, bias = tiny_problem()
    full = torch.exp(full_softmax_nll(hidden, targets, weight, bias))
    g = torch.Generator().manual_seed(2)
    draws = torch.stack(
        [torch.exp(sampled_softmax_nll(hidden, targets, weight, bias, sample_log_uniform(V, 4, g))) for _ in range(10_000)]
    )
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    assert bool(((mean - full).abs() < 5 * se).all()), (mean, full, se)
    assert bool(((mean - 1.05 * full).abs() > 5 * se).all()), "the bound is too loose to see a 5% bias"


def test_sampled_loss_and_gradient_converge_to_the_full_softmax():
    hidden, targets, weight, bias = tiny_problem(seed=3)
    h = hidden.clone().requires_grad_(True)
    full = full_softmax_nll(h, targets, weight, bias)
    (full_grad,) = torch.autograd.grad(full.sum(), h)
    g = torch.Generator().manual_seed(4)
    losses, grads = [], []
    for _ in range(50):
        loss = sampled_softmax_nll(h, targets, weight, bias, sample_log_uniform(V, 4096, g))
        losses.append(loss.detach())
        grads.append(torch.autograd.grad(loss.sum(), h)[0])
    # the bias of log(Z_hat) is O(1/S); with S = 4096 it is far below these bounds
    assert (torch.stack(losses).mean(0) - full.detach()).abs().max() < 0.01
    assert (torch.stack(grads).mean(0) - full_grad).abs().max() < 0.01
