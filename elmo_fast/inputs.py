"""The public boundary for text input: check a batch of tokenised sentences once, then turn it into ids.

Layers below the public API (the embedder's inner loops, the file jobs) take batches that were
checked here and do not check them again.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from elmo_fast.ops.char_ids import char_ids


def check_batch(batch: Sequence[Sequence[str]]) -> None:
    """Raise ``TypeError`` unless ``batch`` is a sequence of sentences, each a sequence of ``str`` tokens."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise TypeError(f"batch must be a list of sentences (lists of token strings), got {type(batch).__name__}")
    for i, sentence in enumerate(batch):
        if isinstance(sentence, (str, bytes)) or not isinstance(sentence, Sequence):
            raise TypeError(
                f"sentence {i} must be a list of token strings, got {type(sentence).__name__}"
                + (" (did you pass one sentence instead of a batch of sentences?)" if isinstance(sentence, str) else "")
            )
        for j, token in enumerate(sentence):
            if not isinstance(token, str):
                raise TypeError(f"token {j} of sentence {i} must be a str, got {type(token).__name__}: {token!r}")


def batch_to_ids(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Character ids for a batch of tokenised sentences, as AllenNLP's ``batch_to_ids``.

    Returns int64 ``(B, T, 50)`` with T the longest sentence; shorter sentences are padded with
    all-zero rows. Each token keeps at most 48 UTF-8 bytes; ``"<S>"`` / ``"</S>"`` map to the
    sentence-boundary ids. Computed by a numba kernel where numba is installed (the same numbers),
    else by the reference; ``elmo-fast env`` says which.
    """
    check_batch(batch)
    return char_ids(batch)
