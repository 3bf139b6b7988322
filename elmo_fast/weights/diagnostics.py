"""Diagnostics for weight files: errors that say what is wrong with an HDF5 file and where to look."""
from __future__ import annotations

from pathlib import Path


def other_places(handle, name: str) -> list[str]:
    """Paths in ``handle`` of datasets whose last component is ``name``'s (a file from another layout)."""
    import h5py

    leaf = name.rsplit("/", 1)[-1]
    found: list[str] = []

    def visit(path: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and path.rsplit("/", 1)[-1] == leaf and path != name:
            found.append(path)

    try:
        handle.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError):
        pass
    return found


def missing_message(path: Path, handle, name: str) -> str:
    """The error for a dataset that is not where the bilm-tf layout puts it, with a hint at what is."""
    elsewhere = other_places(handle, name)
    if elsewhere:
        shown = ", ".join(repr(x) for x in elsewhere[:3])
        return (
            f"{path}: dataset {name!r} is missing; a dataset of that name is at {shown} "
            "(a file from another tool? elmo_fast reads the bilm-tf layout AllenNLP reads)"
        )
    try:
        top = sorted(handle.keys())
    except (OSError, RuntimeError, KeyError, ValueError):
        top = []
    shown = ", ".join(repr(x) for x in top[:8]) + (", ..." if len(top) > 8 else "")
    return f"{path}: dataset {name!r} is missing (top-level names in the file: {shown or 'none'})"


def has_fletcher32(dataset) -> bool:
    """Whether an h5py dataset carries a Fletcher32 checksum (False when that cannot be read)."""
    try:
        return bool(dataset.fletcher32)
    except (OSError, RuntimeError, ValueError):
        return False


def has_other_filters(dataset) -> bool:
    """Whether an h5py dataset uses filters besides Fletcher32 (True when that cannot be read)."""
    try:
        return bool(dataset.compression or dataset.shuffle or dataset.scaleoffset is not None)
    except (OSError, RuntimeError, ValueError):
        return True
