"""Published ELMo models by name, and converters from other ELMo formats.

``resolve("original")`` downloads (once) and returns ``(options.json, weights.hdf5)``; every place
that takes model files takes a name too (``ElmoEmbedder("original")``, ``Elmo("small", None, 2)``,
``elmo-fast embed --model original``). ``elmo-fast models list`` prints the registry.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from elmo_fast.models.cache import ModelUnavailable, cache_root, fetch, offline_default
from elmo_fast.models.registry import REGISTRY, ModelEntry, ModelFile, find, register

logger = logging.getLogger(__name__)

__all__ = [
    "REGISTRY",
    "ModelEntry",
    "ModelFile",
    "ModelUnavailable",
    "cache_root",
    "fetch",
    "find",
    "list_models",
    "register",
    "resolve",
]

CONVERTED = "converted"


def list_models() -> list[ModelEntry]:
    """Every registered model, in registry order."""
    return list(REGISTRY.values())


def _unpack_manylangs(archive: Path, into: Path) -> Path:
    """Extract an ELMoForManyLangs zip and return the folder that holds its ``config.json``."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(into)
    found = sorted(p.parent for p in into.rglob("config.json"))
    if not found:
        raise ModelUnavailable(f"{archive}: no config.json inside; not an ELMoForManyLangs model archive")
    return found[0]


def _converted(entry: ModelEntry, folder: Path) -> Path:
    """The converted form of a ManyLangs model in the cache (made on first use)."""
    from elmo_fast.models.manylangs import convert_manylangs

    out = folder / CONVERTED
    if (out / "options.json").is_file() and (out / "weights.hdf5").is_file():
        return out
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = _unpack_manylangs(folder / entry.files[0].name, Path(tmp) / "src")
        staged = Path(tmp) / CONVERTED
        convert_manylangs(src, staged)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staged, out)
    return out


def resolve(name_or_path: str | os.PathLike, *, offline: bool | None = None, progress: bool = True) -> tuple[Path, Path]:
    """``(options.json, weights.hdf5)`` of a registered model name or of a folder holding both.

    A name is fetched into the cache on first use (see :func:`elmo_fast.models.cache.fetch`); with
    ``offline`` (default ``ELMO_FAST_OFFLINE``) a model not yet cached fails at once, saying which
    URLs to download and where to put them.
    """
    path = Path(name_or_path)
    if path.is_dir():
        options, weights = path / "options.json", path / "weights.hdf5"
        if not (options.is_file() and weights.is_file()):
            raise ModelUnavailable(f"{path}: a model folder must hold options.json and weights.hdf5")
        return options, weights
    if path.is_file():
        raise ValueError(f"{path} is a file: give both options_file and weight_file, or a model name or folder alone")
    entry = find(str(name_or_path))
    if entry is None:
        names = ", ".join(sorted(e.name for e in REGISTRY.values() if not e.name.startswith("manylangs-")))
        raise ValueError(
            f"{str(name_or_path)!r} is neither a registered model nor a folder with options.json + weights.hdf5; "
            f"models: {names}, manylangs-<language code> (see `elmo-fast models list`)"
        )
    folder = fetch(entry, offline=offline_default() if offline is None else offline, progress=progress)
    if entry.format == "manylangs":
        folder = _converted(entry, folder)
    return folder / "options.json", folder / "weights.hdf5"
