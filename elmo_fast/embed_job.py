"""Resumable ``embed_file``: stream lines, write checkpointed segments, merge into AllenNLP's layout.

A run writes ``OUTPUT.parts/``: ``job.json`` (what is being computed) and one small hdf5 file per
segment of ``segment_size`` sentences, each written to a temporary name and renamed when complete,
holding the segment's datasets, its sentences and (with ``state="carry"``) the carried LSTM state
after it. A killed run leaves only complete segments; ``resume=True`` checks that ``job.json``
matches, reloads the state and continues after the last complete segment. At the end the segments
are merged into ``OUTPUT`` (again via a temporary file and a rename) and the folder is removed, so
the result is identical to an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from elmo_fast.embedder import ElmoEmbedder

ENCODING_ERRORS = ("strict", "replace", "ignore")
_BAD_BYTE = range(0xDC80, 0xDD00)


class ResumeError(RuntimeError):
    """An earlier run's segments cannot be reused (or exist and resume was not asked for)."""


def read_lines(path: Path, encoding_errors: str = "strict") -> Iterator[str]:
    """Stripped lines of a UTF-8 file with universal newlines (``\\n``, ``\\r\\n``, ``\\r``).

    Undecodable bytes raise a ``ValueError`` naming the line (``"strict"``), become U+FFFD
    (``"replace"``) or vanish (``"ignore"``).
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise ValueError(f"encoding_errors must be one of {ENCODING_ERRORS}, not {encoding_errors!r}")
    with open(path, encoding="utf-8", errors="surrogateescape", newline=None) as handle:
        for number, line in enumerate(handle):
            if any(ord(ch) in _BAD_BYTE for ch in line):
                if encoding_errors == "strict":
                    raise ValueError(
                        f"{path}: line {number} (0-based) is not valid UTF-8; pass encoding_errors='replace' "
                        "(--encoding-errors replace) to substitute U+FFFD, or fix the file"
                    )
                fill = "\ufffd" if encoding_errors == "replace" else ""
                line = "".join(fill if ord(ch) in _BAD_BYTE else ch for ch in line)
            yield line.strip()


def scan_lines(
    path: Path,
    encoding_errors: str,
    unique: bool = False,
    seen: set[str] | None = None,
    *,
    max_tokens: int | None = None,
) -> int:
    """Count lines and reject blank ones (AllenNLP refuses them) before any work is done.

    ``unique``: also reject a repeated line (sentences used as keys must be distinct); ``seen``
    carries the sentences of earlier files when several files make one corpus. ``max_tokens``:
    also reject a line of more tokens (the model's ``max_sentence_length``).
    """
    blank = []
    seen = set() if seen is None else seen
    count = 0
    for count, line in enumerate(read_lines(path, encoding_errors), start=1):
        if not line:
            blank.append(count - 1)
            continue
        if max_tokens is not None and len(line.split()) > max_tokens:
            raise ValueError(
                f"{path}: line {count - 1} (0-based) has {len(line.split())} tokens, more than "
                f"max_sentence_length={max_tokens}; split it or raise the limit (--max-sentence-length)"
            )
        if unique:
            if line in seen:
                raise ValueError(
                    f"{path}: line {count - 1} repeats the sentence {line!r}; duplicate sentences need "
                    "line-number keys (drop use_sentence_keys / --use-sentence-keys)"
                )
            seen.add(line)
    if blank:
        shown = ", ".join(map(str, blank[:20])) + (" ..." if len(blank) > 20 else "")
        raise ValueError(f"{path}: {len(blank)} empty line(s) at (0-based) line indexes {shown}; remove them")
    return count


@dataclass(frozen=True)
class JobSpec:
    """Everything that determines the output; a resumed run must match it exactly."""

    input: str
    input_size: int
    input_mtime_ns: int
    output_format: str
    batch_size: int
    segment_size: int
    forget_sentences: bool
    use_sentence_keys: bool
    state: str
    encoding_errors: str
    model: str
    bucket: bool = False
    max_tokens: int | None = None


def model_fingerprint(embedder: ElmoEmbedder) -> str:
    """SHA-256 over the model's options, weight precision and parameters."""
    digest = hashlib.sha256(json.dumps(embedder.elmo_bilm.options.to_json_dict(), sort_keys=True).encode())
    if embedder.elmo_bilm.weight_precision != "fp32":
        digest.update(embedder.elmo_bilm.weight_precision.encode())
    for name, tensor in sorted(embedder.elmo_bilm.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _segment_path(parts: Path, index: int) -> Path:
    return parts / f"segment-{index:06d}.h5"


SEGMENT_FORMAT = 2


def _write_segment(path: Path, records: list[tuple[str, str, np.ndarray]], state) -> None:
    """One segment file: keys, sentences, token counts and every array joined on the token axis.

    Writing one dataset per segment instead of one per sentence keeps checkpointing cheap; the
    per-sentence datasets of AllenNLP's layout are made once, by :func:`_merge`.
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


def _read_segment(path: Path) -> Iterator[tuple[str, str, np.ndarray]]:
    """The ``(key, sentence, array)`` records of a segment written by :func:`_write_segment`."""
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


def _complete_segments(parts: Path) -> int:
    count = 0
    while segment_complete(_segment_path(parts, count)):
        count += 1
    return count


def _write_state(path: Path, state) -> None:
    import h5py

    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as out:
        out.create_dataset("state_h", data=state[0].to("cpu").numpy())
        out.create_dataset("state_c", data=state[1].to("cpu").numpy())
    os.replace(tmp, path)


def _read_state(path: Path, device: torch.device):
    import h5py

    with h5py.File(path, "r") as f:
        if "state_h" not in f:
            return None
        return torch.from_numpy(f["state_h"][...]).to(device), torch.from_numpy(f["state_c"][...]).to(device)


def _prepare(parts: Path, spec: JobSpec, resume: bool, initial_state) -> int:
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
        return _complete_segments(parts)
    parts.mkdir(parents=True)
    if initial_state is not None:
        _write_state(parts / "initial-state.h5", initial_state)
    tmp = job_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(spec), indent=1))
    os.replace(tmp, job_file)
    return 0


def round_segment_size(segment_size: int, batch_size: int) -> int:
    """``segment_size`` rounded up to a whole number of batches, so batches never straddle segments."""
    if segment_size < batch_size or segment_size % batch_size:
        segment_size = max(1, -(-segment_size // batch_size)) * batch_size
    return segment_size


def embed_records(
    embedder: ElmoEmbedder,
    sentences: list[str],
    first_index: int,
    *,
    batch_size: int,
    output_format: str,
    use_sentence_keys: bool,
    bucket: bool = False,
    max_tokens: int | None = None,
    on_batch: Callable[[int], object] | None = None,
) -> list[tuple[str, str, np.ndarray]]:
    """``(key, sentence, array)`` for lines ``first_index, first_index + 1, ...`` of a corpus.

    Batches are ``batch_size`` consecutive lines, or with ``bucket`` lines of similar length
    (a stable sort by token count, then the results put back in line order: less padding, and
    with ``state="zero"``/``"warm"`` the same vectors up to float32 rounding); ``max_tokens``
    caps their padded size (:func:`elmo_fast.batching.plan_batches`). ``on_batch`` is called with
    each batch's size.
    """
    from elmo_fast.batching import plan_batches

    tokens = [s.split() for s in sentences]
    plan = plan_batches([len(t) for t in tokens], batch_size, bucket=bucket, max_tokens=max_tokens)
    arrays = embedder.embed_planned(tokens, plan, on_batch)
    if output_format == "top":
        arrays = [a[-1] for a in arrays]
    elif output_format == "average":
        arrays = [np.average(a, axis=0) for a in arrays]
    return [
        (sentence if use_sentence_keys else str(first_index + i), sentence, array)
        for i, (sentence, array) in enumerate(zip(sentences, arrays))
    ]


# NOTE: HDF5 keeps metadata for every object created since the file was opened. With one handle, the
# merge of a 100 MB corpus (1.36 M sentence datasets, benchmarks/soak.py) grew resident memory by
# 118 MB and kept growing; reopening the file every MERGE_REOPEN_EVERY datasets leaves only HDF5's
# metadata cache (32 MiB at most by default): +33 MB after 100 k datasets, +41 MB after 600 k.
MERGE_REOPEN_EVERY = 50_000


def _merge(parts: Path, segments: int, output: Path, spec: JobSpec) -> None:
    import h5py

    tmp = output.with_name(f".{output.name}.merging.tmp")
    sentence_to_index: dict[str, str] = {}
    keep_map = not spec.forget_sentences and not spec.use_sentence_keys
    try:
        out = h5py.File(tmp, "w")
        try:
            written = 0
            for index in range(segments):
                for key, sentence, array in _read_segment(_segment_path(parts, index)):
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


def run_embed_file(
    embedder: ElmoEmbedder,
    input_path: Path,
    output: Path,
    *,
    output_format: str,
    batch_size: int,
    forget_sentences: bool,
    use_sentence_keys: bool,
    resume: bool,
    encoding_errors: str,
    segment_size: int,
    progress: bool,
    bucket: bool = False,
    max_tokens: int | None = None,
) -> None:
    """The work behind :meth:`ElmoEmbedder.embed_file` for a file on disk (see the module docstring)."""
    from tqdm import tqdm

    from elmo_fast.embedder import _batches

    segment_size = round_segment_size(segment_size, batch_size)
    total = scan_lines(
        input_path, encoding_errors, unique=use_sentence_keys, max_tokens=embedder.elmo_bilm.max_sentence_length
    )
    stat = input_path.stat()
    spec = JobSpec(
        input=str(input_path.resolve()),
        input_size=stat.st_size,
        input_mtime_ns=stat.st_mtime_ns,
        output_format=output_format,
        batch_size=batch_size,
        segment_size=segment_size,
        forget_sentences=forget_sentences,
        use_sentence_keys=use_sentence_keys,
        state=embedder.elmo_bilm.state,
        encoding_errors=encoding_errors,
        model=model_fingerprint(embedder),
        bucket=bucket,
        max_tokens=max_tokens,
    )
    parts = output.with_name(output.name + ".parts")
    carry = embedder.elmo_bilm.state == "carry"
    done = _prepare(parts, spec, resume, embedder.elmo_bilm._states if carry else None)
    if carry and resume:
        # The state the next segment starts from: after the last complete one, else the run's start.
        source = _segment_path(parts, done - 1) if done else parts / "initial-state.h5"
        embedder.elmo_bilm._states = _read_state(source, embedder.device) if source.exists() else None
    start = done * segment_size
    lines = read_lines(input_path, encoding_errors)
    for _ in range(min(start, total)):
        next(lines)
    with tqdm(total=total, initial=min(start, total), unit="sent", disable=not progress, desc="embedding") as bar:
        index = start
        segment = done
        for chunk in _batches(lines, segment_size):
            records = embed_records(
                embedder,
                chunk,
                index,
                batch_size=batch_size,
                output_format=output_format,
                use_sentence_keys=use_sentence_keys,
                bucket=bucket,
                max_tokens=max_tokens,
                on_batch=bar.update,
            )
            index += len(chunk)
            _write_segment(_segment_path(parts, segment), records, embedder.elmo_bilm._states if carry else None)
            segment += 1
    _merge(parts, segment, output, spec)
    shutil.rmtree(parts)


# Public names of the segment machinery for other file jobs (elmo_fast.fasta_job): the same
# functions, so a FASTA run checkpoints, resumes and refuses a changed job exactly as embed_file does.
segment_path = _segment_path
write_segment = _write_segment
read_segment = _read_segment
prepare_parts = _prepare
