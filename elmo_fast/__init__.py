"""elmo_fast: fast, faithful ELMo embeddings — a drop-in replacement for AllenNLP's ELMo.

``from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids`` loads the same ``options.json`` +
``weights.hdf5`` files as AllenNLP and returns the same numbers.
"""
from __future__ import annotations

from elmo_fast._backends import BackendUnavailable, env_report
from elmo_fast.embedder import ElmoEmbedder
from elmo_fast.inputs import batch_to_ids
from elmo_fast.modules import BiLm, Elmo, ScalarMix
from elmo_fast.version import __version__
from elmo_fast.weights import ElmoOptions, ElmoWeights, WeightFileError, load_weights, save_weights

__all__ = [
    "__version__",
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
