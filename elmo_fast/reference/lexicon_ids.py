"""Tokens -> ids through a character lexicon (models converted from ELMoForManyLangs).

bilm-tf's models read UTF-8 bytes (:mod:`elmo_fast.reference.char_ids`); ELMoForManyLangs' models
read Unicode characters through a lexicon, and may add a word embedding. A ``lexicon.json``
(written by :func:`elmo_fast.models.manylangs.convert_manylangs`) holds, with every id already in
this model's tables:

- ``chars``: character -> id, with ``unknown_char`` for the others; id 0 is kept for padding tokens;
- ``begin_of_word``, ``end_of_word``, ``pad_char``: the ids around and after a token's characters;
- ``max_token_chars``: longer tokens keep their first ``max_token_chars`` characters (for both the
  character ids and the word lookup);
- ``words`` (or null) and ``unknown_word``: the word id, appended as a 51st slot;
- ``boundary_tokens``: input tokens that are given the sentence-boundary ids (``bos_ids`` /
  ``eos_ids`` of ``options.json``) as the source implementation does.

A token becomes ``[begin, c_1, ..., c_n, end, pad, ...]`` (50 slots) ``+ [word id]``.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import torch

MAX_CHARS: int = 50


class LexiconIds:
    """The id mapping of one ``lexicon.json`` (see the module docstring)."""

    def __init__(self, path: str | Path, bos_ids: Sequence[int], eos_ids: Sequence[int]) -> None:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        self.chars: dict[str, int] = data["chars"]
        self.begin, self.end = int(data["begin_of_word"]), int(data["end_of_word"])
        self.unknown_char, self.pad = int(data["unknown_char"]), int(data["pad_char"])
        self.max_token_chars = int(data["max_token_chars"])
        self.words: dict[str, int] | None = data.get("words")
        self.unknown_word = int(data.get("unknown_word", 0))
        boundaries = {"bos": list(bos_ids), "eos": list(eos_ids)}
        self.boundary: dict[str, list[int]] = {tok: boundaries[kind] for tok, kind in data.get("boundary_tokens", {}).items()}
        self.width = MAX_CHARS + (1 if self.words is not None else 0)

    def token_ids(self, token: str) -> list[int]:
        """The ``width`` ids of one token."""
        fixed = self.boundary.get(token)
        if fixed is not None:
            return list(fixed)
        token = token[: self.max_token_chars]
        ids = [self.pad] * MAX_CHARS
        ids[0] = self.begin
        for k, c in enumerate(token, start=1):
            ids[k] = self.chars.get(c, self.unknown_char)
        ids[len(token) + 1] = self.end
        if self.words is not None:
            ids.append(self.words.get(token, self.unknown_word))
        return ids

    def batch_to_ids(self, batch: Sequence[Sequence[str]]) -> torch.Tensor:
        """int64 ``(B, T, width)``, right-padded with all-zero tokens."""
        width = max((len(s) for s in batch), default=0)
        out = torch.zeros(len(batch), width, self.width, dtype=torch.int64)
        for i, sentence in enumerate(batch):
            if len(sentence):
                out[i, : len(sentence)] = torch.tensor([self.token_ids(t) for t in sentence], dtype=torch.int64)
        return out


@functools.lru_cache(maxsize=8)
def load_lexicon(path: str, bos_ids: tuple[int, ...], eos_ids: tuple[int, ...]) -> LexiconIds:
    """:class:`LexiconIds` for ``path`` (read once per process)."""
    return LexiconIds(path, bos_ids, eos_ids)
