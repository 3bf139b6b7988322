"""How ``embed_sentences`` and ``embed_file`` cut sentences into batches.

In order, ``batch_size`` consecutive sentences per batch (AllenNLP's way, and the only valid one for
``state="carry"``, where row i of a batch starts from the state row i of the previous batch left);
or, for the batch-independent states ``"zero"`` and ``"warm"``, bucketed: a stable sort by token
count so that a batch holds sentences of similar length and little padding, with the results put
back in the caller's order. Either way a token budget ``max_tokens`` can cap each batch's padded
size, ``rows x longest sentence`` (boundary tokens not counted).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice

BUCKET_STATES: tuple[str, ...] = ("zero", "warm")

# embed_sentences sorts within a look-ahead window of this many batches of sentences, so memory
# stays bounded on an endless stream; embed_file sorts within each checkpointed segment.
BUCKET_WINDOW_BATCHES: int = 16

CARRY_REASON = (
    "with state='carry' each batch row starts from the state the same row of the previous batch left, "
    "so batches must be batch_size sentences in the caller's order"
)


def resolve_bucketing(state: str, bucket: bool | None, max_tokens: int | None) -> bool:
    """The effective ``bucket`` flag for an embedder in ``state``, after checking the options.

    ``bucket=None`` (auto) means on for ``"zero"`` / ``"warm"`` and off for ``"carry"``.

    Raises:
        ValueError: ``bucket=True`` or a ``max_tokens`` with ``state="carry"``, or a
            ``max_tokens`` that is not a positive integer.
    """
    if bucket is not None and not isinstance(bucket, bool):
        raise ValueError(f"bucket must be True, False or None (auto), got {bucket!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
    if state not in BUCKET_STATES:
        if bucket:
            raise ValueError(f"bucket=True needs state 'zero' or 'warm', not {state!r}: {CARRY_REASON}")
        if max_tokens is not None:
            raise ValueError(f"max_tokens needs state 'zero' or 'warm', not {state!r}: {CARRY_REASON}")
        return False
    return True if bucket is None else bucket


def plan_batches(
    lengths: Sequence[int], batch_size: int, *, bucket: bool = False, max_tokens: int | None = None
) -> list[list[int]]:
    """Cut sentences ``0 .. len(lengths) - 1`` (of ``lengths[i]`` tokens) into batches of indexes.

    A batch holds at most ``batch_size`` sentences and, with ``max_tokens``, at most that many
    padded tokens (``len(batch) * max(lengths in batch)``); a sentence longer than the budget is a
    batch of its own. ``bucket`` orders the sentences by length first (stable: ties keep their
    order); without it the batches are consecutive runs.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if bucket else range(len(lengths))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        wide = max(longest, lengths[i])
        if current and (len(current) == batch_size or (max_tokens is not None and wide * (len(current) + 1) > max_tokens)):
            batches.append(current)
            current, wide = [], lengths[i]
        current.append(i)
        longest = wide
    if current:
        batches.append(current)
    return batches


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter), read lazily from ``items``."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
