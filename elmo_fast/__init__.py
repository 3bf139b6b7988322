"""elmo_fast: fast, faithful ELMo embeddings — a drop-in replacement for AllenNLP's ELMo.

``from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids`` loads the same ``options.json`` +
``weights.hdf5`` files as AllenNLP and returns the same numbers.
"""
from __future__ import annotations

__version__ = "0.1.0"

from collections.abc import Sequence

import torch

from elmo_fast._backends import BackendUnavailable, env_report


def _check_batch(batch: Sequence[Sequence[str]]) -> None:
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
    from elmo_fast.ops.char_ids import char_ids

    _check_batch(batch)
    return char_ids(batch)


from elmo_fast.embedder import ElmoEmbedder  # noqa: E402
from elmo_fast.modules import BiLm, Elmo, ScalarMix  # noqa: E402
from elmo_fast.weights import ElmoOptions, ElmoWeights, WeightFileError, load_weights, save_weights  # noqa: E402

__all__ = [
    "BackendUnavailable",
    "BiLm",
    "Elmo",
    "ElmoEmbedder",
    "ElmoOptions",
    "ElmoWeights",
    "ScalarMix",
    "WeightFileError",
    "batch_to_ids",
    "env_report",
    "load_weights",
    "save_weights",
]
