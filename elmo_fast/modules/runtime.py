"""``RuntimeOptions``: how a model runs (not what it computes), one object through every layer.

:class:`~elmo_fast.ElmoEmbedder` and :class:`~elmo_fast.Elmo` keep AllenNLP's signatures plus these
six keyword arguments; they bundle them here once and hand the bundle to
:func:`~elmo_fast.modules.load_bilm` and :class:`~elmo_fast.modules.BiLm`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from elmo_fast import _backends
from elmo_fast.modules.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from elmo_fast.reference.quantize import check_weight_precision

STATES: tuple[str, ...] = ("carry", "zero", "warm")
DEFAULT_MAX_SENTENCE_LENGTH: int = 100_000


def check_state(state: str) -> str:
    """Validate a ``state=`` argument."""
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(repr(s) for s in STATES)}, not {state!r}")
    return state


@dataclass(frozen=True)
class RuntimeOptions:
    """The runtime knobs of a biLM, checked when made.

    Attributes:
        state: ``"carry"`` (AllenNLP's stateful behaviour: each batch row starts from the state its
            predecessor row left; ``reset_states()`` forgets it), ``"zero"`` (every sentence starts
            from zero state, independent of the batch and of earlier calls) or ``"warm"`` (like
            zero, from one fixed state reached by reading a built-in text; see
            :class:`~elmo_fast.modules.BiLm`).
        backend: ``"auto"`` or one of ``cuda``, ``triton``, ``cpp``, ``ref`` (see
            :mod:`elmo_fast._backends`).
        device: where the model lives (None: CPU); inputs are moved there.
        weight_precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` storage of the biLSTM, highway and
            projection weights for inference (see :mod:`elmo_fast.reference.quantize`; an int8
            model keeps its two projections in bf16,
            :func:`~elmo_fast.reference.lowp.projection_precision`): ``cpp``
            multiplies in that precision (:mod:`elmo_fast.reference.lowp`), ``ref`` computes the
            same products in PyTorch, the GPU backends use the rounded weights in float32. Not
            with training.
        token_cache_size: capacity of the LRU cache of token embeddings across batches (0: off),
            used only where it changes no number (see :class:`~elmo_fast.modules.token_cache.TokenCache`).
        max_sentence_length: longer sentences are refused with a clear error; the outputs take
            ``4 * (L + 1) * 2P`` bytes per token.
    """

    state: str = "carry"
    backend: str = "auto"
    device: torch.device | str | None = None
    weight_precision: str = "fp32"
    token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE
    max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH

    def __post_init__(self) -> None:
        check_state(self.state)
        if self.backend != "auto" and self.backend not in _backends.BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(_backends.BACKENDS)} or 'auto'")
        check_weight_precision(self.weight_precision)
        length = self.max_sentence_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"max_sentence_length must be a positive integer, got {length!r}")

    @classmethod
    def merge(cls, runtime: RuntimeOptions | None = None, **given: Any) -> RuntimeOptions:
        """``runtime`` (default: the defaults) with every field in ``given`` that is not None replaced."""
        names = {f.name for f in fields(cls)}
        unknown = set(given) - names
        if unknown:
            raise TypeError(f"unknown runtime option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
        changes = {k: v for k, v in given.items() if v is not None}
        base = runtime if runtime is not None else cls()
        return replace(base, **changes) if changes else base

    @property
    def target_device(self) -> torch.device:
        """``device`` as a ``torch.device`` (CPU when None)."""
        return torch.device(self.device) if self.device is not None else torch.device("cpu")
