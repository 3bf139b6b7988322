"""Dynamic batching: sentences from concurrent requests share one model forward.

Requests are admitted into a queue (at most ``max_queue_sentences`` sentences admitted and not yet
answered; past that :class:`QueueFull`, which the server answers with 503 and ``Retry-After``).
One collector task takes the first waiting request and every request waiting behind it, up to
``max_batch_tokens`` tokens; if none was waiting (the server was idle), it waits up to
``max_wait_ms`` for more to come. The collected
sentences are ordered by length and cut into batches of at most ``max_batch_tokens`` padded tokens
(:func:`elmo_fast.batching.plan_batches`), embedded in one worker thread (so the event loop keeps
answering while the model runs), and every request gets its own sentences' arrays back.

This is only sound for the batch-independent states ``"zero"`` and ``"warm"``: there a sentence's
vectors do not depend on which other sentences share its batch (up to float32 rounding of the
batched matrix products). ``"carry"`` is refused.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from elmo_fast.batching import CARRY_REASON, plan_batches

logger = logging.getLogger(__name__)

# embed_planned's signature: sentences, batches of indexes into them -> one array per sentence.
EmbedPlanned = Callable[[Sequence[Sequence[str]], list[list[int]]], list[np.ndarray]]


class QueueFull(Exception):
    """The server holds as many sentences as it may; the client should retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatcherStopped(Exception):
    """The server is shutting down and takes no new work."""


def check_state(state: str) -> None:
    """Raise ``ValueError`` unless ``state`` lets a sentence's vectors be independent of its batch."""
    if state not in ("zero", "warm"):
        raise ValueError(f"serving needs state 'zero' or 'warm', not {state!r}: {CARRY_REASON}")


@dataclass
class _Job:
    sentences: list[list[str]]
    future: asyncio.Future
    tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = sum(len(s) for s in self.sentences)


class DynamicBatcher:
    """Collects concurrent :meth:`embed` calls into token-budgeted batches run in one worker thread.

    Args:
        embed_planned: ``ElmoEmbedder.embed_planned`` or a function of the same contract.
        max_batch_tokens: padded tokens per forward (rows x longest sentence), and the collected
            tokens at which collection stops waiting.
        max_wait_ms: how long the first request of a collection waits for company.
        max_queue_sentences: sentences admitted and not yet answered, at most.
        on_batch: called in the event loop with each forward's sentence lengths (metrics).
    """

    def __init__(
        self,
        embed_planned: EmbedPlanned,
        *,
        max_batch_tokens: int,
        max_wait_ms: float,
        max_queue_sentences: int,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> None:
        if max_batch_tokens < 1 or max_wait_ms < 0 or max_queue_sentences < 1:
            raise ValueError("max_batch_tokens and max_queue_sentences must be positive, max_wait_ms not negative")
        self._embed_planned = embed_planned
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_sentences = max_queue_sentences
        self._on_batch = on_batch
        self.pending_sentences = 0
        self.pending_tokens = 0
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="elmo-serve-model")
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._seconds_per_token = 0.0

    def start(self) -> None:
        """Start the collector task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._collect_forever(), name="elmo-serve-batcher")

    async def stop(self) -> None:
        """Take no new work, answer everything already admitted, then stop the worker thread."""
        self._stopping = True
        await self._queue.put(None)
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def embed(self, sentences: list[list[str]]) -> list[np.ndarray]:
        """Embed ``sentences`` in whatever batch comes; one float32 ``(L + 1, len, 2P)`` array each.

        Raises:
            QueueFull: admitting them would exceed ``max_queue_sentences``.
            BatcherStopped: the batcher is stopping.
        """
        if self._stopping:
            raise BatcherStopped("the server is shutting down")
        if self.pending_sentences + len(sentences) > self.max_queue_sentences:
            raise QueueFull(
                f"the queue holds {self.pending_sentences} sentences and takes at most {self.max_queue_sentences} "
                f"(--max-queue-sentences); retry later",
                self._retry_after(),
            )
        job = _Job(sentences, asyncio.get_running_loop().create_future())
        self.pending_sentences += len(sentences)
        self.pending_tokens += job.tokens
        try:
            await self._queue.put(job)
            return await job.future
        finally:
            self.pending_sentences -= len(sentences)
            self.pending_tokens -= job.tokens

    def _retry_after(self) -> int:
        # Seconds to work off the queue at the last measured speed, at least 1.
        return max(1, int(np.ceil(self.pending_tokens * self._seconds_per_token)))

    async def _collect_forever(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            if first is None:
                break
            jobs, stop = await self._collect(first)
            await self._run(jobs)

    async def _collect(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus what is waiting; if nothing was, wait up to ``max_wait_s`` for company.

        A backlog (requests that came while the previous forward ran) goes at once: the model is the
        bottleneck then, and waiting would only leave it idle. Returns the jobs and whether the
        stop sentinel was seen.
        """
        jobs, tokens = [first], first.tokens
        while tokens < self.max_batch_tokens and not self._queue.empty():
            job = self._queue.get_nowait()
            if job is None:
                return jobs, True
            jobs.append(job)
            tokens += job.tokens
        if len(jobs) > 1:
            return jobs, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while tokens < self.max_batch_tokens and loop.time() < deadline:
            try:
                job = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
            except TimeoutError:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            tokens += job.tokens
        return jobs, False

    async def _run(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if not job.future.done()]
        sentences = [s for job in live for s in job.sentences]
        if not sentences:
            return
        lengths = [len(s) for s in sentences]
        plan = plan_batches(lengths, len(sentences), bucket=True, max_tokens=self.max_batch_tokens)
        start = time.perf_counter()
        try:
            arrays = await asyncio.get_running_loop().run_in_executor(self._executor, self._embed_planned, sentences, plan)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the model's error
            logger.exception("model forward failed for %d sentences", len(sentences))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._seconds_per_token = (time.perf_counter() - start) / max(1, sum(lengths))
        if self._on_batch is not None:
            for rows in plan:
                self._on_batch([lengths[i] for i in rows])
        offset = 0
        for job in live:
            n = len(job.sentences)
            if not job.future.done():
                job.future.set_result(arrays[offset : offset + n])
            offset += n
