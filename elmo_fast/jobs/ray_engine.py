"""Embed a corpus on Ray: a pool of actors, one model each, writing the same segments as ``embed_file``.

:func:`embed_file_ray` gives the hdf5 file that :meth:`ElmoEmbedder.embed_file` gives (same keys,
same ``sentence_to_index``, same layout) for ``state="zero"`` or ``"warm"``, computed by many
workers. The input is cut into segments of ``segment_size`` lines exactly as the single-process job
cuts it (:mod:`elmo_fast.jobs.local`): segment ``k`` holds lines ``k * segment_size ...``, each one is
embedded by one worker and written by that worker to ``OUTPUT.parts/segment-k.h5`` (a temporary
name, then a rename), and the driver merges the segments with the single-process merge.

Faults: a worker that dies (a crash, a lost node) is restarted by Ray and its segment is retried
(``max_retries`` times per worker); a job that still fails keeps its finished segments, and a rerun
with ``resume=True`` computes only the missing ones, in any order.

Why Ray core actors and not Ray Data: the output must equal the single-process file, whose keys
are line numbers, whose lines follow universal newlines, and whose blank lines are errors;
``ray.data.read_text`` splits on ``\\n`` only, drops blank lines and numbers nothing. Resume needs
segments that are fixed, addressable line ranges written once, while Ray Data re-blocks rows as it
likes. What is left for Ray Data (an actor pool with retries) is what Ray core actors give directly,
without its start-up cost (~5 s measured here for a trivial dataset). So the driver streams the lines
(the cheap part: reading text is orders of magnitude faster than embedding it) and ships each
segment's lines to a free actor through Ray's object store; the expensive part runs on the actors.

A directory as input is read as its files concatenated (the key scheme): every regular file under
it, hidden ones (names starting with ``.``) skipped, in sorted order of relative path, each file's
lines following the previous file's, so keys run ``"0" ... "N-1"`` over the whole corpus, as if the
files had been joined by ``cat`` (each ending with a newline). :func:`input_files` lists that order.

On a cluster, every node needs elmo_fast installed, the model files at the same path, and
``OUTPUT``'s folder on a filesystem that all nodes share (the workers write the segments there).
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import ModuleType

import torch

from elmo_fast.batching import chunked
from elmo_fast.jobs.lines import input_files, read_lines, scan_lines
from elmo_fast.jobs.local import embed_records
from elmo_fast.jobs.segments import merge, prepare, segment_complete, segment_path, write_segment
from elmo_fast.jobs.spec import build_spec, check_job_options, model_fingerprint, round_segment_size
from elmo_fast.weights import PathLike

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_STATES = ("zero", "warm")
CARRY_REASON = (
    "carried state hands each sentence's LSTM state to the next batch, a strictly sequential chain, and "
    "once sentences are spread over workers no worker holds its predecessor's state"
)


class RayUnavailable(ImportError):
    """Ray is not installed (it is an optional dependency)."""


class RayJobFailed(RuntimeError):
    """A Ray worker could not start, or died more than ``max_retries`` times."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable(
            f"the ray engine needs Ray, which is not installed ({exc}); install it with "
            "pip install 'elmo_fast[ray]'"
        ) from None
    return ray


@dataclass(frozen=True)
class RayEmbedReport:
    """What :func:`embed_file_ray` did: ``reused`` segments came from an earlier run, not recomputed."""

    sentences: int
    segments: int
    reused: int
    workers: int
    embed_seconds: float
    merge_seconds: float


def _segments(files: list[Path], encoding_errors: str, segment_size: int) -> Iterator[list[str]]:
    return chunked(chain.from_iterable(read_lines(f, encoding_errors) for f in files), segment_size)


class SegmentWorker:
    """One model on one worker (a GPU, or a share of the CPUs); Ray runs it as an actor.

    ``crash_at`` is a test hook: ``(marker, k)`` makes the first call for segment ``k`` that creates
    the file ``marker`` kill its process (``os._exit``) before writing anything.
    """

    def __init__(
        self,
        options_file: PathLike | None,
        weight_file: PathLike | None,
        parts: str,
        job: dict,
        threads: int,
        crash_at: tuple[str, int] | None = None,
    ) -> None:
        from elmo_fast.embedder import ElmoEmbedder

        torch.set_num_threads(threads)
        self.parts = Path(parts)
        if not (self.parts / "job.json").is_file():
            raise FileNotFoundError(
                f"{self.parts}/job.json is not visible on this worker's node: on a cluster OUTPUT must be "
                "on a filesystem shared by all nodes"
            )
        self.embedder = ElmoEmbedder(
            options_file, weight_file, state=job["state"], backend=job["backend"], device=job["device"],
            weight_precision=job.get("weight_precision", "fp32"),
        )
        self.job = job
        self.crash_at = crash_at

    def fingerprint(self) -> str:
        """The model's :func:`model_fingerprint` (the driver checks that every worker loaded the same one)."""
        return model_fingerprint(self.embedder)

    def embed_segment(self, index: int, lines: list[str]) -> tuple[int, int]:
        """Embed segment ``index`` (its ``lines``), write its file atomically; ``(index, len(lines))``."""
        if self.crash_at is not None and index == self.crash_at[1]:
            try:
                os.close(os.open(self.crash_at[0], os.O_CREAT | os.O_EXCL))
                os._exit(1)
            except FileExistsError:
                pass
        job = self.job
        records = embed_records(
            self.embedder,
            lines,
            index * job["segment_size"],
            batch_size=job["batch_size"],
            output_format=job["output_format"],
            use_sentence_keys=job["use_sentence_keys"],
            bucket=job["bucket"],
            max_tokens=job.get("max_tokens"),
        )
        write_segment(segment_path(self.parts, index), records, None)
        return index, len(lines)


def _plan_workers(ray: ModuleType, num_workers: int | None, gpus_per_worker: float | None) -> tuple[int, dict, int]:
    """``(workers, actor resources, torch threads per worker)`` for the connected cluster."""
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be positive, got {num_workers}")
    if gpus_per_worker > 0:
        workers = num_workers or max(1, int(gpus // gpus_per_worker))
        if workers * gpus_per_worker > gpus:
            raise ValueError(f"{workers} workers x {gpus_per_worker} GPU need more than the cluster's {gpus:g} GPUs")
        return workers, {"num_cpus": 1, "num_gpus": gpus_per_worker}, 1
    workers = num_workers or max(1, cpus)
    share = max(1, cpus // workers)
    if workers * share > cpus:
        raise ValueError(f"{workers} CPU workers need {workers} CPUs; the Ray cluster has {cpus}")
    return workers, {"num_cpus": share}, share


def embed_file_ray(
    input_path: PathLike,
    output_file_path: PathLike,
    options_file: PathLike | None = None,
    weight_file: PathLike | None = None,
    *,
    state: str = "zero",
    output_format: str = "all",
    batch_size: int = 64,
    forget_sentences: bool = False,
    use_sentence_keys: bool = False,
    resume: bool = False,
    encoding_errors: str = "strict",
    segment_size: int = 4096,
    bucket: bool = True,
    max_tokens: int | None = None,
    backend: str = "auto",
    weight_precision: str = "fp32",
    num_workers: int | None = None,
    gpus_per_worker: float | None = None,
    address: str | None = None,
    max_retries: int = 3,
    progress: bool = True,
    _crash_at: tuple[str, int] | None = None,
) -> RayEmbedReport:
    """Embed a text file, or a directory of them, into one hdf5 file on a Ray cluster.

    The arguments shared with :meth:`ElmoEmbedder.embed_file` mean the same, and the output is
    the file that method writes for the same input (a directory: its files concatenated, see the
    module docstring), keys and ``sentence_to_index`` included. With ``bucket`` (default) each
    segment is batched by sentence length, which cuts padding; vectors then equal the
    single-process in-order ones up to float32 rounding (about 1e-6), and without it
    (``embed_file(..., bucket=False)``) bit for bit.
    ``max_tokens`` caps each batch's padded size, as in :meth:`ElmoEmbedder.embed_sentences`.

    Args:
        state: ``"zero"`` or ``"warm"`` (``"carry"`` is refused: see :data:`CARRY_REASON`).
        weight_precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` weights and products in every worker
            (see :class:`~elmo_fast.ElmoEmbedder`); part of the model fingerprint, so ``resume``
            refuses parts made with another precision.
        num_workers: actors, each holding one model; default one per GPU of the cluster, or one
            per CPU where it has none (CPU workers split the CPUs evenly and use that many threads).
        gpus_per_worker: GPUs per actor; default 1 where the cluster has GPUs, else 0.
        address: the Ray cluster to join (``ray start --head`` prints it; ``"auto"`` finds one on
            this machine). ``None``: this process's Ray if ``ray.init`` was called, else
            ``RAY_ADDRESS``, else a new local instance, shut down at the end.
        max_retries: restarts of a dead worker, and retries of the segment it was embedding.
        _crash_at: test hook, see :class:`SegmentWorker`.

    Raises:
        RayUnavailable: Ray is not installed.
        ResumeError: an earlier run's ``OUTPUT.parts/`` exists (and ``resume`` is False) or differs.
        RayJobFailed: a worker failed to start or died more than ``max_retries`` times; finished
            segments are kept for ``resume``.
    """
    _check_ray_state(state)
    check_job_options(
        state=state, output_format=output_format, batch_size=batch_size, encoding_errors=encoding_errors,
        bucket=bucket, max_tokens=max_tokens,
    )
    ray = require_ray()
    input_path, output = Path(input_path), Path(output_file_path)
    files = input_files(input_path)
    segment_size = round_segment_size(segment_size, batch_size)
    seen: set[str] = set()
    total = sum(scan_lines(f, encoding_errors, unique=use_sentence_keys, seen=seen) for f in files)
    del seen
    fingerprint = _driver_fingerprint(options_file, weight_file, state, backend, weight_precision)
    spec = build_spec(
        input_path, files, model=fingerprint, state=state, output_format=output_format, batch_size=batch_size,
        segment_size=segment_size, forget_sentences=forget_sentences, use_sentence_keys=use_sentence_keys,
        encoding_errors=encoding_errors, bucket=bucket, max_tokens=max_tokens, engine="ray",
    )
    parts = output.with_name(output.name + ".parts")
    prepare(parts, spec, resume, None)
    n_segments = -(-total // segment_size)
    finished = {k for k in range(n_segments) if segment_complete(segment_path(parts, k))}
    start = time.perf_counter()
    workers = 0
    if len(finished) < n_segments:
        fields = ("state", "segment_size", "batch_size", "output_format", "use_sentence_keys", "bucket", "max_tokens")
        job = {"backend": backend, "weight_precision": weight_precision, **{name: getattr(spec, name) for name in fields}}
        pool_args = (files, parts, job, finished, total, options_file, weight_file, fingerprint)
        workers = _with_ray(ray, address, pool_args, encoding_errors=encoding_errors, num_workers=num_workers,
                            gpus_per_worker=gpus_per_worker, max_retries=max_retries, progress=progress, crash_at=_crash_at)
    merging = time.perf_counter()
    merge(parts, n_segments, output, spec)
    shutil.rmtree(parts)
    return RayEmbedReport(
        sentences=total,
        segments=n_segments,
        reused=len(finished),
        workers=workers,
        embed_seconds=merging - start,
        merge_seconds=time.perf_counter() - merging,
    )


def _check_ray_state(state: str) -> None:
    if state not in RAY_STATES:
        raise ValueError(
            f"state must be one of {RAY_STATES}, not {state!r}"
            + (f": {CARRY_REASON}; use the local engine (ElmoEmbedder.embed_file) for 'carry'" if state == "carry" else "")
        )


def _driver_fingerprint(
    options_file: PathLike | None, weight_file: PathLike | None, state: str, backend: str, weight_precision: str = "fp32"
) -> str:
    """The model's fingerprint as the driver loads it (every worker must load the same)."""
    from elmo_fast.embedder import ElmoEmbedder

    return model_fingerprint(ElmoEmbedder(options_file, weight_file, state=state, backend=backend, weight_precision=weight_precision))


def _with_ray(ray: ModuleType, address: str | None, pool_args: tuple, **options) -> int:
    """:func:`_run_pool` inside this process's Ray (started at ``address`` and shut down if not running)."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    try:
        return _run_pool(ray, *pool_args, **options)
    finally:
        if started:
            ray.shutdown()


def _run_pool(
    ray: ModuleType,
    files: list[Path],
    parts: Path,
    job: dict,
    finished: set[int],
    total: int,
    options_file: PathLike | None,
    weight_file: PathLike | None,
    fingerprint: str,
    *,
    encoding_errors: str,
    num_workers: int | None,
    gpus_per_worker: float | None,
    max_retries: int,
    progress: bool,
    crash_at: tuple[str, int] | None,
) -> int:
    """Start the actors, feed them every unfinished segment, wait for all; the number of actors."""
    from ray.exceptions import RayActorError, RayTaskError
    from ray.util import ActorPool
    from tqdm import tqdm

    pending = -(-total // job["segment_size"]) - len(finished)
    workers, resources, threads = _plan_workers(ray, num_workers, gpus_per_worker)
    workers = min(workers, pending)
    logger.info("Ray: %d worker(s) with %s for %d segment(s)", workers, resources, pending)
    job = dict(job, device="cuda" if resources.get("num_gpus") else "cpu")
    remote = ray.remote(SegmentWorker).options(max_restarts=max_retries, max_task_retries=max_retries, **resources)
    options_file, weight_file = (None if f is None else str(Path(f).resolve()) for f in (options_file, weight_file))
    actors = [
        remote.remote(options_file, weight_file, str(parts.resolve()), job, threads, crash_at) for _ in range(workers)
    ]
    try:
        prints = ray.get([a.fingerprint.remote() for a in actors])
    except RayActorError as exc:
        raise RayJobFailed(f"a Ray worker failed to start: {exc}") from None
    if any(p != fingerprint for p in prints):
        raise RayJobFailed(
            "a Ray worker loaded different model weights than the driver: the model files differ between nodes"
        )
    pool = ActorPool(actors)
    done = sum(min(job["segment_size"], total - k * job["segment_size"]) for k in finished)
    failure: BaseException | None = None
    with tqdm(total=total, initial=done, unit="sent", disable=not progress, desc=f"embedding ({workers} workers)") as bar:
        segments = ((k, lines) for k, lines in enumerate(_segments(files, encoding_errors, job["segment_size"])))
        todo = ((k, lines) for k, lines in segments if k not in finished)
        for item in todo:
            if not pool.has_free():
                failure = _collect(pool, bar, failure)
            if failure is not None:
                break
            pool.submit(lambda actor, kl: actor.embed_segment.remote(*kl), item)
        while pool.has_next():
            failure = _collect(pool, bar, failure)
    if isinstance(failure, RayTaskError):
        raise failure.cause from None
    if failure is not None:
        raise RayJobFailed(
            f"a Ray worker died more than max_retries={max_retries} times ({failure}); finished segments are "
            f"kept in {parts}, continue with resume=True (--resume)"
        ) from None
    return workers


def _collect(pool, bar, failure: BaseException | None) -> BaseException | None:
    """Wait for one segment; the first failure seen so far (later segments still finish and are kept)."""
    from ray.exceptions import RayError

    try:
        _, count = pool.get_next_unordered()
        bar.update(count)
    except RayError as exc:
        return failure or exc
    return failure
