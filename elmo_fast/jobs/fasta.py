"""Embed protein sequences: batches by residues, per-protein reduction, resumable FASTA -> hdf5 jobs.

Every sequence is embedded independently of the others (``state="zero"``, or ``"warm"``), so the
sequences can be sorted by length and cut into batches of at most ``max_tokens`` padded residues
(rows x longest sequence): little padding, bounded memory, and each protein's vectors equal
``embed_sentence(list(sequence))`` up to float32 rounding. Work goes window by window: a window
holds consecutive sequences up to ``window_residues`` residues, is sorted and batched, and its
results come back in input order; a 5,000-residue protein is one window and one batch of its own.

``run_embed_fasta`` writes one dataset per record. It checks the whole file first
(:func:`elmo_fast.fasta.scan_fasta`: nothing is written for a bad file), checkpoints each window as
a segment in ``OUTPUT.parts/`` through :mod:`elmo_fast.jobs.segments`' functions (``resume``
continues a killed run, a changed file, model or option is refused) and merges the segments into
``OUTPUT`` at the end.

Output layout (bio_embeddings' embed stage): dataset name = the record id (escaped, see
:func:`elmo_fast.fasta.hdf5_key`) or the sequence's MD5 (``key_by="md5"``, bio_embeddings' default),
float32 ``(L + 1, len, 2P)`` per residue (``"all"``; SeqVec: ``(3, len, 1024)``), ``(len, 2P)`` for
``"top"``/``"average"``, or ``(2P,)`` with ``per_protein`` (SeqVec's reduction: the sum over layers,
then the mean over residues). Attributes: ``original_id`` (as bio_embeddings writes it) and
``header`` (the whole header line without ``>``).
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from elmo_fast.batching import BUCKET_STATES, plan_batches
from elmo_fast.fasta import FastaRecord, check_pairs, read_fasta, record_key, scan_fasta
from elmo_fast.jobs.segments import MERGE_REOPEN_EVERY, prepare, read_segment, segment_path, write_segment
from elmo_fast.jobs.spec import OUTPUT_FORMATS, model_fingerprint


class ProteinEmbedder(Protocol):
    """What a protein job needs of an :class:`~elmo_fast.ElmoEmbedder` (the jobs do not import it)."""

    elmo_bilm: Any

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]: ...


logger = logging.getLogger(__name__)

# NOTE: SeqVec's own script batches 15,000 residues and bio_embeddings 15,000 amino acids; 16,384
# padded residues is the budget benchmarks/proteins.py measures.
DEFAULT_MAX_TOKENS = 16_384
# A window (and a checkpointed segment) holds about this many residues: at "all" on SeqVec's size
# that is 32,768 x 3 x 1024 float32 = 400 MB of results, written once more as one array per segment.
DEFAULT_WINDOW_RESIDUES = 32_768


def reduce_per_protein(embedding: np.ndarray) -> np.ndarray:
    """SeqVec's per-protein vector: ``(L + 1, len, 2P)`` summed over layers, then averaged over residues."""
    if embedding.ndim != 3:
        raise ValueError(f"reduce_per_protein takes an all-layer (layers, len, dim) array, got shape {embedding.shape}")
    return embedding.sum(axis=0).mean(axis=0)


def _shape(array: np.ndarray, output_format: str, per_protein: bool) -> np.ndarray:
    if per_protein:
        return reduce_per_protein(array)
    if output_format == "top":
        return array[-1]
    if output_format == "average":
        return np.average(array, axis=0)
    return array


def check_options(embedder: ProteinEmbedder, output_format: str, per_protein: bool, batch_size: int, max_tokens: int | None) -> None:
    """Reject options a protein job cannot run with, each error saying what to change."""
    state = embedder.elmo_bilm.state
    if state not in BUCKET_STATES:
        raise ValueError(
            f"protein embedding needs state 'zero' (default for FASTA) or 'warm', not {state!r}: sequences are "
            "sorted by length and batched by residues, so each one must not depend on its batch (SeqVec and "
            "bio_embeddings carry state between proteins; see the README's Proteins section)"
        )
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    if per_protein and output_format != "all":
        raise ValueError("per_protein is SeqVec's reduction of all layers; it does not combine with 'top' or 'average'")
    for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _windows(items: Iterable, size_of: Callable[[object], int], budget: int) -> Iterator[list]:
    """Consecutive runs of ``items`` that reach ``budget`` (the last may be smaller)."""
    window, total = [], 0
    for item in items:
        window.append(item)
        total += size_of(item)
        if total >= budget:
            yield window
            window, total = [], 0
    if window:
        yield window


def embed_window(
    embedder: ProteinEmbedder,
    sequences: list[str],
    *,
    output_format: str = "all",
    per_protein: bool = False,
    batch_size: int = 64,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    on_residues: Callable[[int], object] | None = None,
) -> list[np.ndarray]:
    """One array per sequence, in order: sorted by length, at most ``batch_size`` rows and
    ``max_tokens`` padded residues per batch, each batch shaped (and reduced) as soon as it is done.
    ``on_residues`` is called with each batch's residue count (a progress bar)."""
    tokens = [list(s) for s in sequences]
    plan = plan_batches([len(t) for t in tokens], batch_size, bucket=True, max_tokens=max_tokens)
    arrays: list[np.ndarray | None] = [None] * len(tokens)
    for rows in plan:
        for i, array in zip(rows, embedder.embed_batch([tokens[i] for i in rows])):
            arrays[i] = _shape(array, output_format, per_protein)
        if on_residues is not None:
            on_residues(sum(len(tokens[i]) for i in rows))
    return arrays


def embed_pairs(
    embedder: ProteinEmbedder,
    pairs: Iterable[tuple[str, str]],
    *,
    output_format: str = "all",
    per_protein: bool = False,
    batch_size: int = 64,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    window_residues: int = DEFAULT_WINDOW_RESIDUES,
) -> Iterator[tuple[str, np.ndarray]]:
    """Lazily embed ``(id, sequence)`` pairs; yields ``(id, array)`` in input order (see the module
    docstring for shapes). Sequences are cleaned as FASTA sequences are (whitespace and ``*``
    dropped, upper-cased); ids are passed through unchanged."""
    check_options(embedder, output_format, per_protein, batch_size, max_tokens)
    for window in _windows(check_pairs(pairs), lambda pair: len(pair[1]), window_residues):
        arrays = embed_window(
            embedder,
            [sequence for _, sequence in window],
            output_format=output_format,
            per_protein=per_protein,
            batch_size=batch_size,
            max_tokens=max_tokens,
        )
        yield from ((record_id, array) for (record_id, _), array in zip(window, arrays))


@dataclass(frozen=True)
class FastaJobSpec:
    """Everything that determines a FASTA job's output; a resumed run must match it exactly."""

    input: str
    input_size: int
    input_mtime_ns: int
    input_format: str
    output_format: str
    per_protein: bool
    key_by: str
    batch_size: int
    max_tokens: int | None
    window_residues: int
    state: str
    model: str


def _merge_fasta(parts: Path, segments: int, output: Path, per_protein: bool) -> None:
    """One dataset per record from the segments, with ``original_id`` and ``header`` attributes;
    the file is reopened every ``MERGE_REOPEN_EVERY`` datasets (see :mod:`elmo_fast.jobs.segments`)."""
    import h5py

    records = (record for index in range(segments) for record in read_segment(segment_path(parts, index)))
    tmp = output.with_name(f".{output.name}.merging.tmp")
    try:
        h5py.File(tmp, "w").close()
        written = MERGE_REOPEN_EVERY
        while written == MERGE_REOPEN_EVERY:
            written = 0
            with h5py.File(tmp, "a") as out:
                for key, header, array in islice(records, MERGE_REOPEN_EVERY):
                    dataset = out.create_dataset(key, data=array[0] if per_protein else array, dtype="float32")
                    dataset.attrs["original_id"] = header.split(None, 1)[0]
                    dataset.attrs["header"] = header
                    written += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)


def run_embed_fasta(
    embedder: ProteinEmbedder,
    input_path: Path,
    output: Path,
    *,
    output_format: str = "all",
    per_protein: bool = False,
    key_by: str = "id",
    batch_size: int = 64,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
    window_residues: int = DEFAULT_WINDOW_RESIDUES,
    resume: bool = False,
    progress: bool = True,
) -> None:
    """Embed a FASTA file into ``output`` (see the module docstring); nothing is written there until
    the run is complete, and a bad file is refused before any work."""
    from tqdm import tqdm

    check_options(embedder, output_format, per_protein, batch_size, max_tokens)
    if window_residues < 1:
        raise ValueError(f"window_residues must be a positive integer, got {window_residues!r}")
    scan = scan_fasta(input_path, key_by)
    stat = input_path.stat()
    identity = (str(input_path.resolve()), stat.st_size, stat.st_mtime_ns, "fasta")
    options = (output_format, per_protein, key_by, batch_size, max_tokens, window_residues)
    spec = FastaJobSpec(*identity, *options, embedder.elmo_bilm.state, model_fingerprint(embedder))
    parts = output.with_name(output.name + ".parts")
    done = prepare(parts, spec, resume, None)
    windows = _windows(read_fasta(input_path), lambda record: len(record.sequence), window_residues)
    skipped = 0
    with tqdm(total=scan.residues, unit="res", unit_scale=True, disable=not progress, desc="embedding") as bar:
        for index, window in enumerate(windows):
            if index < done:
                skipped += sum(len(r.sequence) for r in window)
                continue
            if skipped:
                bar.update(skipped)
                skipped = 0
            _embed_segment(embedder, window, parts, index, spec, bar.update)
    segments = index + 1
    _merge_fasta(parts, segments, output, per_protein)
    shutil.rmtree(parts)
    logger.info("wrote %s: %d records, %d residues", output, scan.records, scan.residues)


def _embed_segment(
    embedder: ProteinEmbedder, window: list[FastaRecord], parts: Path, index: int, spec: FastaJobSpec, on_residues
) -> None:
    arrays = embed_window(
        embedder,
        [record.sequence for record in window],
        output_format=spec.output_format,
        per_protein=spec.per_protein,
        batch_size=spec.batch_size,
        max_tokens=spec.max_tokens,
        on_residues=on_residues,
    )
    records = [
        (record_key(record, spec.key_by), record.header, array[None] if spec.per_protein else array)
        for record, array in zip(window, arrays)
    ]
    write_segment(segment_path(parts, index), records, None)
