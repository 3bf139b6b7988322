"""The model bundled inside the package, used when no options/weight files are given.

Until a trained default model ships, this is a **random-weight demo model**: it exercises every
code path with realistic shapes, but its vectors carry no linguistic meaning. A warning says so
once per process.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from elmo_fast.weights import ElmoOptions

DEMO_DIR = Path(__file__).parent / "data" / "demo"
DEMO_OPTIONS = ElmoOptions(
    projection_dim=64,
    cell_dim=256,
    n_layers=2,
    filters=((1, 32), (2, 32), (3, 64), (4, 128), (5, 128)),
    n_highway=1,
    char_embed_dim=16,
)
DEMO_SEED = 20180215

_warned = False


def default_model_files() -> tuple[Path, Path]:
    """Paths of the bundled ``options.json`` and ``weights.hdf5``."""
    global _warned
    options, weights = DEMO_DIR / "options.json", DEMO_DIR / "weights.hdf5"
    if not _warned:
        warnings.warn(
            "elmo_fast: no model files given, using the bundled RANDOM-WEIGHT demo model "
            "(its vectors carry no meaning; pass options_file/weight_file for real ELMo)",
            stacklevel=3,
        )
        _warned = True
    return options, weights


def write_demo_model(directory: Path = DEMO_DIR) -> None:
    """(Re)generate the demo model files deterministically (``python -m elmo_fast.default_model``)."""
    from elmo_fast.weights import random_weights, save_weights

    directory.mkdir(parents=True, exist_ok=True)
    save_weights(random_weights(DEMO_OPTIONS, seed=DEMO_SEED), directory / "weights.hdf5", directory / "options.json")


if __name__ == "__main__":
    write_demo_model()
    print(f"wrote {DEMO_DIR}")
