"""The model bundled inside the package, used when no options/weight files are given.

A small biLM (projection 64, cell 256, 0.94M biLM parameters) trained by elmo_fast on the glosses of
WordNet 3.0; ``data/default/MODEL_CARD.md`` gives its data, licence, training run and held-out
perplexity. It was trained sentence by sentence from zero state, so ``state="zero"`` reads text
the way it was trained. ``scripts/train_default_model.sh`` rebuilds it.
"""
from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(__file__).parent / "data" / "default"


def default_model_files() -> tuple[Path, Path]:
    """Paths of the bundled ``options.json`` and ``weights.hdf5``."""
    return DEFAULT_DIR / "options.json", DEFAULT_DIR / "weights.hdf5"
