"""Softmax losses of the language model: the full softmax and a sampled softmax for large vocabularies.

The sampled softmax draws ``S`` negative ids per step, shared by every position (as bilm-tf does),
from the log-uniform (Zipf) distribution over frequency-ranked ids that TensorFlow's
``log_uniform_candidate_sampler`` uses, ``q(k) = log((k + 2) / (k + 1)) / log(V + 1)``.

It estimates the partition function by importance sampling: with target t and logits o,
``Z_hat = exp(o_t) + sum_s [s != t] exp(o_s) / (S q(s))`` and the loss is ``log Z_hat - o_t``.
Because ``E[Z_hat] = Z`` exactly, ``exp(loss)`` is an unbiased estimate of ``exp(full loss)``
(the per-token perplexity factor), and as S grows the loss and its gradient converge to the full
softmax's. NOTE: TensorFlow's ``sampled_softmax_loss`` (bilm-tf) also subtracts ``log(S q(t))``
from the target's logit; that shifts the loss by a term that does not vanish as S grows, so we
do not: with our form the reported training loss is directly comparable to the full softmax's.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def full_softmax_nll(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood ``(N,)`` of ``targets`` ``(N,)`` given ``hidden`` ``(N, P)``,
    softmax ``weight`` ``(V, P)`` and ``bias`` ``(V,)``."""
    return F.cross_entropy(hidden @ weight.t() + bias, targets, reduction="none")


def log_uniform_probs(vocab_size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``q(k)`` for every id ``k < vocab_size`` (sums to 1)."""
    k = torch.arange(vocab_size, dtype=torch.float64)
    return (torch.log1p(1.0 / (k + 1.0)) / math.log(vocab_size + 1.0)).to(dtype)


def sample_log_uniform(vocab_size: int, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_samples`` ids drawn with replacement from :func:`log_uniform_probs` (inverse CDF)."""
    u = torch.rand(n_samples, generator=generator, dtype=torch.float64)
    ids = torch.floor(torch.exp(u * math.log(vocab_size + 1.0))).long() - 1
    return ids.clamp_(0, vocab_size - 1)


def sampled_softmax_nll(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    samples: torch.Tensor,
) -> torch.Tensor:
    """Per-position sampled-softmax loss ``(N,)`` with negatives ``samples`` ``(S,)`` (see the module
    docstring); ``samples`` should come from :func:`sample_log_uniform`."""
    vocab_size = weight.shape[0]
    n_samples = samples.shape[0]
    log_expected = torch.log(n_samples * log_uniform_probs(vocab_size, hidden.dtype)[samples])
    # [N]
    true_logits = (hidden * weight[targets]).sum(-1) + bias[targets]
    # [N, S]
    sampled_logits = hidden @ weight[samples].t() + (bias[samples] - log_expected)
    sampled_logits = sampled_logits.masked_fill(samples.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat((true_logits.unsqueeze(1), sampled_logits), dim=1)
    return torch.logsumexp(logits, dim=1) - true_logits
