"""Reference tokens -> character ids, and sentence-boundary insertion/removal.

The id scheme is bilm-tf's, as AllenNLP reads it (docs/semantics.md, "Characters to ids"): every
token becomes 50 slots ``[BOW, bytes..., EOW, PAD, ...]`` with every id shifted by one so that 0
is free for padding tokens.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_CHARS: int = 50
MAX_BYTES: int = MAX_CHARS - 2
BOS_BYTE: int = 256
EOS_BYTE: int = 257
BOW: int = 258
EOW: int = 259
PAD: int = 260
BOS_TOKEN: str = "<S>"
EOS_TOKEN: str = "</S>"


def _wrap(byte_values: Sequence[int]) -> list[int]:
    ids = [PAD + 1] * MAX_CHARS
    ids[0] = BOW + 1
    for k, b in enumerate(byte_values, start=1):
        ids[k] = b + 1
    ids[len(byte_values) + 1] = EOW + 1
    return ids


BOS_IDS: tuple[int, ...] = tuple(_wrap([BOS_BYTE]))
EOS_IDS: tuple[int, ...] = tuple(_wrap([EOS_BYTE]))


def token_to_ids(token: str) -> list[int]:
    """The 50 character ids of one token (already shifted by +1; 0 never appears)."""
    if token == BOS_TOKEN:
        return list(BOS_IDS)
    if token == EOS_TOKEN:
        return list(EOS_IDS)
    return _wrap(token.encode("utf-8", "ignore")[:MAX_BYTES])


def batch_to_ids_ref(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Character ids of a batch of tokenised sentences: int64 ``(B, T, 50)``, right-padded with 0."""
    width = max((len(s) for s in batch), default=0)
    out = torch.zeros(len(batch), width, MAX_CHARS, dtype=torch.int64)
    for i, sentence in enumerate(batch):
        if len(sentence):
            out[i, : len(sentence)] = torch.tensor([token_to_ids(t) for t in sentence], dtype=torch.int64)
    return out


def add_sentence_boundaries(
    char_ids: torch.Tensor,
    mask: torch.Tensor,
    bos_ids: Sequence[int] | None = None,
    eos_ids: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert the begin/end-of-sentence tokens around every sentence.

    ``char_ids`` ``(B, T, W)`` (W = 50, or 51 with a word id) and its token mask ``(B, T)`` become
    ``(B, T + 2, W)`` and ``(B, T + 2)``: row b holds BOS at 0, its tokens at 1..len_b and EOS at
    len_b + 1. Every row, even an empty one, gets its boundary pair. ``bos_ids`` / ``eos_ids``:
    the boundary tokens' ids (default bilm-tf's ``<S>`` / ``</S>``).
    """
    batch, width = mask.shape
    lengths = mask.sum(dim=1)
    out = char_ids.new_zeros(batch, width + 2, char_ids.shape[-1])
    out[:, 1 : width + 1] = char_ids * mask.unsqueeze(-1).to(char_ids.dtype)
    out[:, 0] = torch.tensor(bos_ids or BOS_IDS, dtype=char_ids.dtype, device=char_ids.device)
    rows = torch.arange(batch, device=char_ids.device)
    out[rows, lengths + 1] = torch.tensor(eos_ids or EOS_IDS, dtype=char_ids.dtype, device=char_ids.device)
    return out, length_mask(lengths + 2, width + 2)


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """Bool ``(B, width)``: position t of row b is real iff t < lengths[b]."""
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def remove_sentence_boundaries(
    tensor: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the boundary positions: ``(B, T + 2, H)`` -> ``(B, T, H)`` with padding exactly 0.

    Position t of row b takes position t + 1 when t < len_b (len_b = mask row sum - 2), else 0.
    """
    batch, width = mask.shape
    lengths = mask.sum(dim=1) - 2
    new_mask = length_mask(lengths, width - 2)
    inner = tensor[:, 1 : width - 1]
    out = torch.where(new_mask.unsqueeze(-1), inner, torch.zeros((), dtype=tensor.dtype, device=tensor.device))
    return out, new_mask
