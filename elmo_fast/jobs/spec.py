"""What a file job computes: its options (checked once, :func:`check_job_options`) and its
:class:`JobSpec` (built once, :func:`build_spec`), the record a resumed run must match exactly."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from elmo_fast.batching import resolve_bucketing
from elmo_fast.jobs.lines import ENCODING_ERRORS, files_digest
from elmo_fast.reference.lowp import products_precision, projection_precision

OUTPUT_FORMATS = ("all", "top", "average")


class Embedder(Protocol):
    """What a file job needs of an :class:`~elmo_fast.ElmoEmbedder` (the jobs do not import it)."""

    elmo_bilm: Any
    device: torch.device

    def embed_planned(
        self, sentences: Sequence[Sequence[str]], batches: Iterable[Sequence[int]], on_batch: Callable[[int], object] | None = None
    ) -> list[np.ndarray]: ...


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


def model_fingerprint(embedder: Embedder) -> str:
    """SHA-256 over an :class:`~elmo_fast.ElmoEmbedder`'s model options, weight precision (with the
    projections' and the products' where they differ from it: int8 models before 2026-12-04 had int8
    projections, as ``ELMO_FAST_PRODUCTS=uniform`` still gives, and ``ELMO_FAST_PRODUCTS=fp32``
    multiplies in float32; a job started one way is not resumed another) and parameters."""
    bilm = embedder.elmo_bilm
    digest = hashlib.sha256(json.dumps(bilm.options.to_json_dict(), sort_keys=True).encode())
    precision = bilm.weight_precision
    if precision != "fp32":
        digest.update(precision.encode())
    for what, value in (("projections", projection_precision(precision)), ("products", products_precision(precision))):
        if value != precision:
            digest.update(f"{what} {value}".encode())
    for name, tensor in sorted(bilm.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class RayJobSpec(JobSpec):
    """:class:`JobSpec` plus what only a Ray job has; ``files`` hashes every input file's name, size, time."""

    engine: str = "ray"
    files: str = ""
    bucket: bool = True


def round_segment_size(segment_size: int, batch_size: int) -> int:
    """``segment_size`` rounded up to a whole number of batches, so batches never straddle segments."""
    if segment_size < batch_size or segment_size % batch_size:
        segment_size = max(1, -(-segment_size // batch_size)) * batch_size
    return segment_size


def check_job_options(
    *, state: str, output_format: str, batch_size: int, encoding_errors: str, bucket: bool | None, max_tokens: int | None
) -> bool:
    """Check the options every file job shares (local and Ray); returns ``bucket`` resolved for ``state``."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, not {output_format!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if encoding_errors not in ENCODING_ERRORS:
        raise ValueError(f"encoding_errors must be one of {ENCODING_ERRORS}, not {encoding_errors!r}")
    return resolve_bucketing(state, bucket, max_tokens)


def build_spec(
    input_path: Path,
    files: list[Path],
    *,
    model: str,
    state: str,
    output_format: str,
    batch_size: int,
    segment_size: int,
    forget_sentences: bool,
    use_sentence_keys: bool,
    encoding_errors: str,
    bucket: bool,
    max_tokens: int | None,
    engine: str = "local",
) -> JobSpec:
    """The :class:`JobSpec` of a job over ``files`` (``input_path`` itself, or a folder's files in key
    order); ``engine="ray"`` gives a :class:`RayJobSpec`, which also hashes every file."""
    stats = [f.stat() for f in files]
    common: dict[str, Any] = dict(
        input=str(input_path.resolve()),
        input_size=sum(s.st_size for s in stats),
        input_mtime_ns=max(s.st_mtime_ns for s in stats),
        output_format=output_format,
        batch_size=batch_size,
        segment_size=segment_size,
        forget_sentences=forget_sentences,
        use_sentence_keys=use_sentence_keys,
        state=state,
        encoding_errors=encoding_errors,
        model=model,
        bucket=bucket,
        max_tokens=max_tokens,
    )
    if engine == "ray":
        return RayJobSpec(**common, files=files_digest(input_path, files))
    return JobSpec(**common)
