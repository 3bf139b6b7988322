"""Model files: ELMo ``options.json`` + ``weights.hdf5`` (bilm-tf layout, as AllenNLP reads them).

- :mod:`~elmo_fast.weights.options`: :class:`ElmoOptions`, :func:`load_options`, :func:`save_options`,
  :class:`WeightFileError`;
- :mod:`~elmo_fast.weights.tensors`: :class:`ElmoWeights` and its parts (elmo_fast's tensor layout),
  :func:`expected_shapes` (the file layout);
- :mod:`~elmo_fast.weights.hdf5`: :func:`load_weights`, :func:`save_weights`, :func:`read_dataset`
  (what can and cannot be detected in a weight file is in its docstring);
- :mod:`~elmo_fast.weights.diagnostics`: the error messages that point at what is wrong;
- :mod:`~elmo_fast.weights.synthetic`: :func:`random_weights` and the sizes ``SMALL``, ``MEDIUM``,
  ``ORIGINAL`` (:data:`CONFIGS`).
"""
from elmo_fast.weights.hdf5 import CHECKSUM, load_weights, read_dataset, save_weights
from elmo_fast.weights.options import N_CHAR_ROWS, ElmoOptions, PathLike, WeightFileError, load_options, save_options
from elmo_fast.weights.synthetic import CONFIGS, MEDIUM, ORIGINAL, SMALL, random_weights
from elmo_fast.weights.tensors import (
    LSTM_PREFIX,
    CharCNNWeights,
    ElmoWeights,
    HighwayWeights,
    LstmLayerWeights,
    expected_shapes,
)

__all__ = [
    "CHECKSUM",
    "CONFIGS",
    "LSTM_PREFIX",
    "MEDIUM",
    "N_CHAR_ROWS",
    "ORIGINAL",
    "SMALL",
    "CharCNNWeights",
    "ElmoOptions",
    "ElmoWeights",
    "HighwayWeights",
    "LstmLayerWeights",
    "PathLike",
    "WeightFileError",
    "expected_shapes",
    "load_options",
    "load_weights",
    "read_dataset",
    "random_weights",
    "save_options",
    "save_weights",
]
