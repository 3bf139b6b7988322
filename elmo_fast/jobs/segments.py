"""The checkpoint folder ``OUTPUT.parts/``: the job file, one hdf5 file per segment, and the final merge.

A segment file is written under a temporary name and renamed when complete, so a killed run leaves
only complete segments; :func:`prepare` checks that a resumed run computes the same job.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np
import torch

from elmo_fast.jobs.spec import JobSpec

class ResumeError(RuntimeError):
    """An earlier run's segments cannot be reused (or exist and resume was not asked for)."""


def segment_path(parts: Path, index: int) -> Path:
    """Where segment ``index`` of the job in ``parts`` is stored."""
    return parts / f"segment-{index:06d}.h5"


SEGMENT_FORMAT = 2


def write_segment(path: Path, records: list[tuple[str, str, np.ndarray]], state) -> None:
    """One segment file: keys, sentences, token counts and every array joined on the token axis.

    Writing one dataset per segment instead of one per sentence keeps checkpointing cheap; the
    per-sentence datasets of AllenNLP's layout are made once, by :func:`merge`.
    """
    import h5py

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as out:
        out.attrs["format"] = SEGMENT_FORMAT
        out.create_dataset("keys", data=[key for key, _, _ in records], dtype=h5py.string_dtype())
        out.create_dataset("sentences", data=[sentence for _, sentence, _ in records], dtype=h5py.string_dtype())
        out.create_dataset("lengths", data=np.array([a.shape[-2] for _, _, a in records], dtype=np.int64))
        if records:
            flat = np.concatenate([a for _, _, a in records], axis=-2).astype(np.float32, copy=False)
            out.create_dataset("flat", data=flat)
        if state is not None:
            out.create_dataset("state_h", data=state[0].to("cpu").numpy())
            out.create_dataset("state_c", data=state[1].to("cpu").numpy())
    os.replace(tmp, path)


def read_segment(path: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    """The ``(key, sentence, array)`` records of a segment written by :func:`write_segment`."""
    import h5py

    with h5py.File(path, "r") as seg:
        keys = seg["keys"].asstr()[...]
        sentences = seg["sentences"].asstr()[...]
        lengths = seg["lengths"][...]
        flat = seg["flat"][...] if len(keys) else None
    ends = np.cumsum(lengths)
    for key, sentence, end, length in zip(keys, sentences, ends, lengths):
        yield str(key), str(sentence), flat[..., end - length : end, :]


def segment_complete(path: Path) -> bool:
    """Whether ``path`` is a finished, readable segment file."""
    import h5py

    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            f["keys"].shape
            if f.attrs.get("format") != SEGMENT_FORMAT:
                return False
    except (OSError, KeyError):
        return False
    return True


def complete_segments(parts: Path) -> int:
    """How many segments, counted from the first, are complete."""
    count = 0
    while segment_complete(segment_path(parts, count)):
        count += 1
    return count


def write_state(path: Path, state) -> None:
    """Store a carried LSTM state ``(h, c)`` atomically."""
    import h5py

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as out:
        out.create_dataset("state_h", data=state[0].to("cpu").numpy())
        out.create_dataset("state_c", data=state[1].to("cpu").numpy())
    os.replace(tmp, path)


def read_state(path: Path, device: torch.device):
    """The carried state stored in ``path`` (a segment or state file), or None when it holds none."""
    import h5py

    with h5py.File(path, "r") as f:
        if "state_h" not in f:
            return None
        return torch.from_numpy(f["state_h"][...]).to(device), torch.from_numpy(f["state_c"][...]).to(device)


def prepare(parts: Path, spec: JobSpec, resume: bool, initial_state) -> int:
    """Create ``parts`` for ``spec`` (or check it matches, with ``resume``); the complete segments.

    Raises :class:`ResumeError` when ``parts`` exists and ``resume`` is False, or holds another job.
    """
    job_file = parts / "job.json"
    if parts.exists():
        if not resume:
            raise ResumeError(
                f"{parts} holds an interrupted run; pass resume=True (--resume) to continue it, "
                "or delete the folder to start over"
            )
        try:
            previous = json.loads(job_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResumeError(f"{job_file} is unreadable ({exc}); delete {parts} to start over") from None
        # A key an older job.json lacks had its field's default then (no bucketing, no budget).
        defaults = {f.name: f.default for f in fields(spec) if f.default is not MISSING}
        differing = [k for k, v in asdict(spec).items() if previous.get(k, defaults.get(k)) != v]
        if differing:
            raise ResumeError(
                f"cannot resume: {', '.join(differing)} differ from the interrupted run in {parts} "
                "(same input file, model and options are needed); delete the folder to start over"
            )
        for leftover in parts.glob("*.tmp"):
            leftover.unlink()
        return complete_segments(parts)
    parts.mkdir(parents=True)
    if initial_state is not None:
        write_state(parts / "initial-state.h5", initial_state)
    tmp = job_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(spec), indent=1))
    os.replace(tmp, job_file)
    return 0


# NOTE: HDF5 keeps metadata for every object created since the file was opened. With one handle, the
# merge of a 100 MB corpus (1.36 M sentence datasets, benchmarks/soak.py) grew resident memory by
# 118 MB and kept growing; reopening the file every MERGE_REOPEN_EVERY datasets leaves only HDF5's
# metadata cache (32 MiB at most by default): +33 MB after 100 k datasets, +41 MB after 600 k.
MERGE_REOPEN_EVERY = 50_000


def merge(parts: Path, segments: int, output: Path, spec: JobSpec) -> None:
    """Join the first ``segments`` segments into AllenNLP's layout at ``output`` (atomically)."""
    import h5py

    tmp = output.with_name(f".{output.name}.merging.tmp")
    sentence_to_index: dict[str, str] = {}
    keep_map = not spec.forget_sentences and not spec.use_sentence_keys
    try:
        out = h5py.File(tmp, "w")
        try:
            written = 0
            for index in range(segments):
                for key, sentence, array in read_segment(segment_path(parts, index)):
                    out.create_dataset(key, array.shape, dtype="float32", data=array)
                    if keep_map:
                        sentence_to_index[sentence] = key
                    written += 1
                    if written % MERGE_REOPEN_EVERY == 0:
                        out.close()
                        out = h5py.File(tmp, "a")
            if keep_map:
                mapping = out.create_dataset("sentence_to_index", (1,), dtype=h5py.special_dtype(vlen=str))
                mapping[0] = json.dumps(sentence_to_index)
        finally:
            out.close()
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
