"""Read and write ELMo ``options.json`` + ``weights.hdf5`` files (bilm-tf layout, as AllenNLP reads them).

:func:`load_options` gives a typed :class:`ElmoOptions`; :func:`load_weights` gives
:class:`ElmoWeights` in elmo_fast's tensor layout; :func:`save_weights` writes the original layout
back, so a model trained or modified here loads in bilm-tf and AllenNLP. Every problem raises
:class:`WeightFileError` naming the file and the dataset.

What can and cannot be detected in ``weights.hdf5``:

- missing or truncated files, files that are not HDF5, a group or nothing where a dataset should
  be, wrong shapes (both shapes shown; a transposed layout is pointed out), and read errors inside a
  dataset (a damaged chunk or a cut-off file) are all reported;
- NaN, +Inf and -Inf values are reported at load;
- files written by :func:`save_weights` carry HDF5's Fletcher32 checksum on every dataset, so a
  flipped byte in their stored data fails the load with a checksum error;
- the published bilm-tf / AllenNLP files have **no checksums**: a byte corrupted inside the raw
  data of such a file changes a weight silently unless it happens to produce NaN or Inf. Check those
  files against the published sizes/hashes, or re-save them once with :func:`save_weights` (which
  adds checksums) and keep that copy.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from elmo_fast.weights.diagnostics import has_fletcher32, has_other_filters, missing_message
from elmo_fast.weights.options import ElmoOptions, PathLike, WeightFileError, load_options, save_options
from elmo_fast.weights.tensors import (
    LSTM_PREFIX,
    CharCNNWeights,
    ElmoWeights,
    HighwayWeights,
    LstmLayerWeights,
    expected_shapes,
)

logger = logging.getLogger(__name__)

CHECKSUM: dict[str, bool] = {"fletcher32": True}
"""``create_dataset`` keywords for every weight dataset elmo_fast writes: a standard HDF5 filter
(chunked storage + a Fletcher32 checksum per chunk) that every HDF5 reader decodes."""


def _read_datasets(path: Path, options: ElmoOptions) -> dict[str, np.ndarray]:
    import h5py

    if not path.is_file():
        raise WeightFileError(f"{path}: weight file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    arrays: dict[str, np.ndarray] = {}
    with handle:
        for name, shape in expected_shapes(options).items():
            # A damaged file can fail while its objects are looked up, not only while data is read.
            try:
                obj = handle.get(name)
                stored = tuple(obj.shape) if isinstance(obj, h5py.Dataset) else None
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise WeightFileError(
                    f"{path}: dataset {name!r} could not be opened; the file is truncated or damaged ({exc})"
                ) from None
            if isinstance(obj, h5py.Group):
                raise WeightFileError(f"{path}: {name!r} is a group, not a dataset (expected a dataset of shape {shape})")
            if stored is None:
                raise WeightFileError(missing_message(path, handle, name))
            if stored != shape:
                hint = " (transposed: this file has another layout)" if len(shape) > 1 and stored == shape[::-1] else ""
                raise WeightFileError(
                    f"{path}: dataset {name!r} has shape {stored} but the options ask for {shape}{hint}"
                )
            arrays[name] = read_dataset(path, obj, name)
            values = arrays[name]
            if not np.isfinite(values).all():
                nan = int(np.isnan(values).sum())
                pos = int(np.isposinf(values).sum())
                neg = int(np.isneginf(values).sum())
                raise WeightFileError(
                    f"{path}: dataset {name!r} holds {nan + pos + neg} NaN or Inf values "
                    f"({nan} NaN, {pos} +Inf, {neg} -Inf)"
                )
    return arrays


def read_dataset(path: PathLike, dataset, name: str) -> np.ndarray:
    """Read an open h5py ``dataset`` as float32; a checksum or read failure raises :class:`WeightFileError`.

    h5py raises ``OSError`` when a chunk fails its Fletcher32 checksum (files elmo_fast writes) or
    when the data cannot be read (truncated file, damaged chunk index); both name ``path`` and ``name``.
    """
    try:
        return np.asarray(dataset[...], dtype=np.float32)
    except OSError as exc:
        text = str(exc)
        lowered = text.lower()
        # HDF5 reports a checksum mismatch as "filter returned failure during read" (or names Fletcher32).
        if "fletcher32" in lowered or "checksum" in lowered or (has_fletcher32(dataset) and "filter" in lowered):
            others = has_other_filters(dataset)
            what = "failed its Fletcher32 checksum" if not others else "failed its Fletcher32 checksum or another filter"
            raise WeightFileError(f"{path}: dataset {name!r} {what}: the stored data is corrupted ({text})") from None
        raise WeightFileError(f"{path}: dataset {name!r} could not be read; the file is truncated or damaged ({text})") from None
    except (ValueError, TypeError, RuntimeError) as exc:
        raise WeightFileError(f"{path}: dataset {name!r} could not be read as float32 ({exc})") from None


def load_weights(options_file: PathLike, weight_file: PathLike) -> ElmoWeights:
    """Load a model from ``options.json`` + ``weights.hdf5`` into fp32 CPU tensors."""
    options = load_options(options_file) if not isinstance(options_file, ElmoOptions) else options_file
    a = _read_datasets(Path(weight_file), options)
    logger.debug("loaded %d datasets from %s", len(a), weight_file)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    char_embed = np.concatenate([np.zeros((1, options.char_embed_dim), np.float32), a["char_embed"]])
    cnn = CharCNNWeights(
        char_embed=t(char_embed),
        conv_weights=[t(a[f"CNN/W_cnn_{i}"][0].transpose(2, 1, 0)) for i in range(len(options.filters))],
        conv_biases=[t(a[f"CNN/b_cnn_{i}"]) for i in range(len(options.filters))],
        highway=[
            HighwayWeights(*(t(a[f"CNN_high_{k}/{n}"]) for n in ("W_transform", "b_transform", "W_carry", "b_carry")))
            for k in range(options.n_highway)
        ],
        proj_weight=t(a["CNN_proj/W_proj"]),
        proj_bias=t(a["CNN_proj/b_proj"]),
        word_proj=t(a["word_proj"]) if options.n_words else None,
    )
    p, c = options.projection_dim, options.cell_dim
    layers = []
    for layer in range(options.n_layers):
        w_ih, w_hh, bias, w_proj = [], [], [], []
        for r in range(2):
            prefix = LSTM_PREFIX.format(r=r, layer=layer)
            w0 = a[prefix + "W_0"]
            b = a[prefix + "B"].copy()
            b[2 * c : 3 * c] += 1.0
            w_ih.append(w0[:p])
            w_hh.append(w0[p:])
            bias.append(b)
            w_proj.append(a[prefix + "W_P_0"])
        layers.append(LstmLayerWeights(*(t(np.stack(x)) for x in (w_ih, w_hh, bias, w_proj))))
    return ElmoWeights(options, cnn, layers)


def save_weights(weights: ElmoWeights, weight_file: PathLike, options_file: PathLike | None = None) -> None:
    """Write ``weights`` in bilm-tf's layout (and ``options.json`` when ``options_file`` is given).

    Every dataset round-trips exactly except ``B``: the forget block's +1 at load and -1 here round
    in float32, so those values may move by one ulp of 1.0 (6e-8). Every dataset is written chunked
    with HDF5's Fletcher32 checksum filter (:data:`CHECKSUM`), so corruption of the stored data is
    detected when the file is read (by :func:`load_weights`, or by any HDF5 reader: h5py, AllenNLP
    and bilm-tf decode the filter transparently).
    """
    import h5py

    options = weights.options
    c = options.cell_dim

    def n(x: torch.Tensor) -> np.ndarray:
        return x.detach().to("cpu", torch.float32).numpy()

    cnn = weights.char_cnn
    data: dict[str, np.ndarray] = {"char_embed": n(cnn.char_embed)[1:]}
    for i, (w, b) in enumerate(zip(cnn.conv_weights, cnn.conv_biases)):
        data[f"CNN/W_cnn_{i}"] = n(w).transpose(2, 1, 0)[None]
        data[f"CNN/b_cnn_{i}"] = n(b)
    for k, hw in enumerate(cnn.highway):
        data[f"CNN_high_{k}/W_transform"] = n(hw.w_transform)
        data[f"CNN_high_{k}/b_transform"] = n(hw.b_transform)
        data[f"CNN_high_{k}/W_carry"] = n(hw.w_carry)
        data[f"CNN_high_{k}/b_carry"] = n(hw.b_carry)
    data["CNN_proj/W_proj"] = n(cnn.proj_weight)
    data["CNN_proj/b_proj"] = n(cnn.proj_bias)
    if cnn.word_proj is not None:
        data["word_proj"] = n(cnn.word_proj)
    for layer, lw in enumerate(weights.lstm):
        for r in range(2):
            prefix = LSTM_PREFIX.format(r=r, layer=layer)
            b = n(lw.bias[r]).copy()
            b[2 * c : 3 * c] -= 1.0
            data[prefix + "W_0"] = np.concatenate([n(lw.w_ih[r]), n(lw.w_hh[r])])
            data[prefix + "B"] = b
            data[prefix + "W_P_0"] = n(lw.w_proj[r])
    shapes = expected_shapes(options)
    for name, array in data.items():
        if tuple(array.shape) != shapes[name]:
            raise WeightFileError(f"{weight_file}: tensor for {name!r} has shape {array.shape}, options ask for {shapes[name]}")
    with h5py.File(weight_file, "w") as out:
        for name, array in data.items():
            out.create_dataset(name, data=np.ascontiguousarray(array, dtype=np.float32), **CHECKSUM)
    if options_file is not None:
        save_options(options, options_file)
