"""The model cache: one folder per model under ``$ELMO_FAST_CACHE`` (default ``~/.cache/elmo_fast``).

``NAME/options.json`` + ``NAME/weights.hdf5`` (plus ``lexicon.json`` for converted ELMoForManyLangs
models) are what :func:`elmo_fast.models.resolve` returns. ``NAME/checksums.json`` holds the sha256
of every downloaded file, recorded on first download (after the published MD5 sum, where the
registry pins one, has matched) and checked on every load, so a file changed on disk is refused.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from elmo_fast.models.download import DownloadError, download, file_digest
from elmo_fast.models.registry import ModelEntry, ModelFile

logger = logging.getLogger(__name__)

CHECKSUMS = "checksums.json"


class ModelUnavailable(OSError):
    """A named model is not in the cache and cannot be fetched now (offline, no network, bad file)."""


def cache_root() -> Path:
    """``$ELMO_FAST_CACHE``, else ``$XDG_CACHE_HOME/elmo_fast``, else ``~/.cache/elmo_fast``."""
    if os.environ.get("ELMO_FAST_CACHE"):
        return Path(os.environ["ELMO_FAST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "elmo_fast"


def offline_default() -> bool:
    """Whether ``ELMO_FAST_OFFLINE`` asks for no network access."""
    return os.environ.get("ELMO_FAST_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def model_dir(entry: ModelEntry, root: Path | None = None) -> Path:
    """The cache folder of ``entry``."""
    return (root or cache_root()) / entry.name


def _read_checksums(folder: Path) -> dict[str, str]:
    path = folder / CHECKSUMS
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_checksums(folder: Path, sums: dict[str, str]) -> None:
    tmp = folder / (CHECKSUMS + ".tmp")
    tmp.write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / CHECKSUMS)


def by_hand(entry: ModelEntry, folder: Path) -> str:
    """How to place ``entry``'s files by hand (for error messages)."""
    lines = [f"  {f.url}  ->  {folder / f.name}" for f in entry.files]
    return "download these files and place them at\n" + "\n".join(lines)


def _check_md5(entry: ModelEntry, spec: ModelFile, path: Path) -> None:
    if spec.md5 is None:
        return
    got = file_digest(path, "md5")
    if got != spec.md5:
        raise ModelUnavailable(
            f"model {entry.name!r}: {path} has MD5 {got}, but its source publishes {spec.md5}; the file is "
            f"corrupted or not the published one. Delete it and run `elmo-fast models download {entry.name}` again"
        )


def verify(entry: ModelEntry, folder: Path) -> None:
    """Check every present file of ``entry`` against the recorded sha256 (recording missing ones)."""
    sums = _read_checksums(folder)
    changed = False
    for spec in entry.files:
        path = folder / spec.name
        if not path.is_file():
            continue
        got = file_digest(path)
        if spec.name not in sums:
            _check_md5(entry, spec, path)
            sums[spec.name] = got
            changed = True
        elif sums[spec.name] != got:
            raise ModelUnavailable(
                f"model {entry.name!r}: {path} has sha256 {got}, but {sums[spec.name]} was recorded when it was "
                f"downloaded; the file changed on disk. Delete {folder} and run "
                f"`elmo-fast models download {entry.name}` again"
            )
    if changed:
        _write_checksums(folder, sums)


def _fetch_one(entry: ModelEntry, spec: ModelFile, folder: Path, progress: bool) -> None:
    errors = []
    for url in (spec.url, *spec.mirrors):
        try:
            logger.info("downloading %s for model %r", url, entry.name)
            download(url, folder / spec.name, progress=progress)
            return
        except DownloadError as exc:
            errors.append(str(exc))
    raise ModelUnavailable(
        f"model {entry.name!r}: could not download {spec.name}: " + "; ".join(errors)
        + f". Check the network, or {by_hand(entry, folder)}"
    )


def fetch(entry: ModelEntry, *, root: Path | None = None, offline: bool | None = None, progress: bool = True,
          force: bool = False) -> Path:
    """Make sure every file of ``entry`` is in the cache and intact; returns its folder.

    ``offline`` (default: ``ELMO_FAST_OFFLINE``) allows no network access: a missing file is then an
    immediate :class:`ModelUnavailable` that says where to place it by hand. ``force`` deletes the
    cached copy first.
    """
    folder = model_dir(entry, root)
    if force and folder.exists():
        shutil.rmtree(folder)
    offline = offline_default() if offline is None else offline
    missing = [spec for spec in entry.files if not (folder / spec.name).is_file()]
    if missing and offline:
        raise ModelUnavailable(
            f"model {entry.name!r} is not in the cache {folder} and network access is off "
            f"(--offline or ELMO_FAST_OFFLINE=1). Unset it to download, or {by_hand(entry, folder)}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for spec in missing:
        _fetch_one(entry, spec, folder, progress)
    verify(entry, folder)
    return folder
