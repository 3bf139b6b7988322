"""Checkpoints (everything a bit-identical resume needs) and model export.

A checkpoint (``checkpoint.pt``, written atomically) holds the config, the vocabulary, the model and
optimizer states, both random-number generators, the data position (epoch, window), the carried
LSTM state and the counters. An export is the original ELMo layout — ``options.json`` +
``weights.hdf5`` written by :func:`elmo_fast.weights.save_weights`, loadable by AllenNLP — plus
``vocab.txt`` and the softmax as the extra datasets ``softmax/W`` ``(V, P)`` and ``softmax/b``
``(V,)``, which ELMo readers ignore and :func:`load_language_model` uses for perplexity.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from elmo_fast.train.data import Vocabulary
from elmo_fast.train.model import BiLanguageModel
from elmo_fast.weights import CHECKSUM, ElmoOptions, WeightFileError, load_weights, read_dataset, save_weights

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "elmo_fast.train/1"
SOFTMAX_W, SOFTMAX_B = "softmax/W", "softmax/b"


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not an elmo_fast training checkpoint")
    return data


def export_model(model: BiLanguageModel, vocab: Vocabulary, directory: str | Path, include_softmax: bool = True) -> Path:
    """Write ``options.json``, ``weights.hdf5`` (original layout) and ``vocab.txt`` into ``directory``.

    ``include_softmax`` adds the LM head (``softmax/W``, ``softmax/b``) to ``weights.hdf5``.
    """
    import h5py

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weight_file = directory / "weights.hdf5"
    save_weights(model.weights(), weight_file, directory / "options.json")
    vocab.save(directory / "vocab.txt")
    if include_softmax:
        with h5py.File(weight_file, "a") as out:
            out.create_dataset(SOFTMAX_W, data=model.softmax_weight.detach().cpu().float().numpy(), **CHECKSUM)
            out.create_dataset(SOFTMAX_B, data=model.softmax_bias.detach().cpu().float().numpy(), **CHECKSUM)
    return directory


def _load_export(directory: Path) -> tuple[BiLanguageModel, Vocabulary]:
    import h5py

    weight_file, vocab_file = directory / "weights.hdf5", directory / "vocab.txt"
    weights = load_weights(directory / "options.json", weight_file)
    if not vocab_file.is_file():
        raise WeightFileError(f"{vocab_file}: vocabulary not found (a language model needs vocab.txt)")
    vocab = Vocabulary.load(vocab_file)
    with h5py.File(weight_file, "r") as f:
        if SOFTMAX_W not in f or SOFTMAX_B not in f:
            raise WeightFileError(f"{weight_file}: no softmax ({SOFTMAX_W}, {SOFTMAX_B}); export it with the softmax")
        softmax_w = read_dataset(weight_file, f[SOFTMAX_W], SOFTMAX_W)
        softmax_b = read_dataset(weight_file, f[SOFTMAX_B], SOFTMAX_B)
    expected = (len(vocab), weights.options.projection_dim)
    if softmax_w.shape != expected or softmax_b.shape != expected[:1]:
        raise WeightFileError(f"{weight_file}: softmax shapes {softmax_w.shape}, {softmax_b.shape} do not match vocab and options {expected}")
    model = BiLanguageModel(weights, len(vocab))
    with torch.no_grad():
        model.softmax_weight.copy_(torch.from_numpy(softmax_w))
        model.softmax_bias.copy_(torch.from_numpy(softmax_b))
    return model, vocab


def model_from_checkpoint(data: dict[str, Any]) -> tuple[BiLanguageModel, Vocabulary]:
    """The model and vocabulary stored in a loaded checkpoint."""
    from elmo_fast.train.model import initial_weights

    options = ElmoOptions.from_json_dict(data["config"]["model"], source="checkpoint")
    vocab = Vocabulary(data["vocab"])
    model = BiLanguageModel(initial_weights(options, 0), len(vocab), backend=data["config"]["backend"])
    model.load_state_dict(data["model"])
    return model, vocab


def load_language_model(path: str | Path) -> tuple[BiLanguageModel, Vocabulary]:
    """A trained LM from a checkpoint file, a training output folder, or an export folder."""
    path = Path(path)
    if path.is_dir() and (path / CHECKPOINT_NAME).is_file() and not (path / "weights.hdf5").is_file():
        path = path / CHECKPOINT_NAME
    if path.is_dir():
        return _load_export(path)
    return model_from_checkpoint(load_checkpoint(path))
