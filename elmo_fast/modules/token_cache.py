"""An LRU cache of token embeddings (the char-CNN + highway + projection output), keyed by a token's
character ids, so that a word seen in an earlier batch is not encoded again.

It returns exactly the numbers the encoder would compute when the encoder's result for one token does
not depend on the other tokens of the call, which holds for the ``cpp`` backend (see
the ``cpp`` backend of :mod:`elmo_fast.ops.token_encoder`); :class:`~elmo_fast.modules.BiLm` only uses
it for such backends, and never when gradients are needed.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

DEFAULT_TOKEN_CACHE_SIZE: int = 10_000


class TokenCache:
    """Up to ``capacity`` token embeddings, least recently used evicted first.

    Entries live in one ``(rows, P)`` table (grown as needed); ``stamp`` identifies the encoder
    weights they were computed with, and a different stamp empties the cache.
    """

    def __init__(self, capacity: int = DEFAULT_TOKEN_CACHE_SIZE) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"token cache capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._slots: OrderedDict[bytes, int] = OrderedDict()
        self._table: torch.Tensor | None = None
        self._stamp: Hashable = None

    def __len__(self) -> int:
        return len(self._slots)

    def clear(self) -> None:
        """Drop every entry (the hit and miss counters stay)."""
        self._slots.clear()
        self._table = None
        self._stamp = None

    def embed(self, char_ids: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor], stamp: Hashable) -> torch.Tensor:
        """Embeddings ``(N, P)`` of N **distinct** tokens ``char_ids`` ``(N, 50)``.

        Cached rows are copied from the table; the others are computed with one ``encode`` call on
        just those rows, returned, and stored.
        """
        if stamp != self._stamp:
            self.clear()
            self._stamp = stamp
        keys = [row.tobytes() for row in char_ids.to("cpu", torch.int16).numpy()]
        hit_rows, hit_slots, miss_rows = [], [], []
        for i, key in enumerate(keys):
            slot = self._slots.get(key)
            if slot is None:
                miss_rows.append(i)
            else:
                self._slots.move_to_end(key)
                hit_rows.append(i)
                hit_slots.append(slot)
        self.hits += len(hit_rows)
        self.misses += len(miss_rows)
        if not hit_rows:
            out = computed = encode(char_ids)
        else:
            assert self._table is not None
            out = self._table.new_empty(len(keys), self._table.shape[1])
            index = torch.tensor(hit_rows, device=out.device)
            out[index] = self._table[torch.tensor(hit_slots, device=out.device)]
            computed = encode(char_ids[miss_rows]) if miss_rows else None
            if computed is not None:
                out[torch.tensor(miss_rows, device=out.device)] = computed
        if computed is not None and len(computed):
            self._insert([keys[i] for i in miss_rows], computed)
        return out

    def _insert(self, keys: list[bytes], values: torch.Tensor) -> None:
        # More new entries than fit: keep the last ones, as if inserted one by one.
        keys, values = keys[-self.capacity :], values[-self.capacity :]
        slots = []
        for key in keys:
            if len(self._slots) < self.capacity:
                slot = len(self._slots)
            else:
                _, slot = self._slots.popitem(last=False)
            self._slots[key] = slot
            slots.append(slot)
        needed = max(slots) + 1
        if self._table is None or self._table.shape[0] < needed:
            rows = min(self.capacity, max(needed, 2 * (0 if self._table is None else self._table.shape[0]), 1024))
            table = values.new_empty(rows, values.shape[1])
            if self._table is not None:
                table[: self._table.shape[0]] = self._table
            self._table = table
        self._table[torch.tensor(slots, device=values.device)] = values
