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

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
import numpy as np

from elmo_fast.batching import chunked, plan_batches
from elmo_fast.jobs.lines import read_lines, scan_lines
from elmo_fast.jobs.segments import merge, prepare, read_state, segment_path, write_segment
from elmo_fast.jobs.spec import Embedder, build_spec, model_fingerprint, round_segment_size

logger = logging.getLogger(__name__)


def embed_records(
    embedder: Embedder,
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


def run_embed_file(
    embedder: Embedder,
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
    """The work behind :meth:`~elmo_fast.ElmoEmbedder.embed_file` for a file on disk (see the module docstring).

    The arguments are trusted: :meth:`~elmo_fast.ElmoEmbedder.embed_file` checked them
    (:func:`~elmo_fast.jobs.spec.check_job_options`).
    """
    from tqdm import tqdm

    segment_size = round_segment_size(segment_size, batch_size)
    bilm = embedder.elmo_bilm
    total = scan_lines(input_path, encoding_errors, unique=use_sentence_keys, max_tokens=bilm.max_sentence_length)
    spec = build_spec(
        input_path, [input_path], model=model_fingerprint(embedder), state=bilm.state, output_format=output_format,
        batch_size=batch_size, segment_size=segment_size, forget_sentences=forget_sentences,
        use_sentence_keys=use_sentence_keys, encoding_errors=encoding_errors, bucket=bucket, max_tokens=max_tokens,
    )
    parts = output.with_name(output.name + ".parts")
    carry = bilm.state == "carry"
    done = prepare(parts, spec, resume, bilm.carried_state if carry else None)
    if carry and resume:
        # The state the next segment starts from: after the last complete one, else the run's start.
        source = segment_path(parts, done - 1) if done else parts / "initial-state.h5"
        bilm.carried_state = read_state(source, embedder.device) if source.exists() else None
    if done:
        logger.info("resuming %s after %d complete segment(s) of %d sentences", parts, done, segment_size)
    start = done * segment_size
    lines = read_lines(input_path, encoding_errors)
    for _ in range(min(start, total)):
        next(lines)
    with tqdm(total=total, initial=min(start, total), unit="sent", disable=not progress, desc="embedding") as bar:
        index = start
        segment = done
        for chunk in chunked(lines, segment_size):
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
            write_segment(segment_path(parts, segment), records, bilm.carried_state if carry else None)
            segment += 1
    logger.debug("merging %d segment(s) into %s", segment, output)
    merge(parts, segment, output, spec)
    shutil.rmtree(parts)
