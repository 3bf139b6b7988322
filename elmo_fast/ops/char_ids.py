"""``char_ids``: tokenised sentences -> character ids, with a numba kernel where numba imports.

Semantics: :func:`elmo_fast.reference.char_ids.batch_to_ids_ref` (docs/semantics.md,
"Characters to ids"), bit for bit. Python encodes every token of the batch once (``str.encode``, the C codec)
into one flat UTF-8 buffer plus offsets; one compiled loop then writes the ``(B, T, 50)`` ids, in
place of the reference's 50-element Python list per token. numba is optional
(``pip install 'elmo_fast[numba]'``): it is imported, and the kernel compiled, on first use; without
it the reference runs.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
import torch

from elmo_fast.reference.char_ids import (
    BOS_BYTE,
    BOS_TOKEN,
    BOW,
    EOS_BYTE,
    EOS_TOKEN,
    EOW,
    MAX_BYTES,
    MAX_CHARS,
    PAD,
    batch_to_ids_ref,
)

# The literal boundary tokens travel through the byte buffer as one byte that UTF-8 never
# produces (0xFE, 0xFF), so the kernel needs no second array. The test is string equality, as in
# the reference: "<S\ud800>" encodes to b"<S>" but is an ordinary token.
BOS_MARK: int = 0xFF
EOS_MARK: int = 0xFE
_MARKS: dict[str, bytes] = {BOS_TOKEN: bytes([BOS_MARK]), EOS_TOKEN: bytes([EOS_MARK])}


def char_ids_kernel(p_bytes: np.ndarray, o_tokens: np.ndarray, sentence_lengths: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` ``[B, T, 50]`` (zeros on entry) with the ids of the tokens in ``p_bytes``.

    Token k (sentences concatenated, in order) is ``p_bytes[o_tokens[k]:o_tokens[k + 1]]``;
    sentence b holds ``sentence_lengths[b]`` tokens. Compiled by :func:`_compiled_kernel`.
    """
    i_tok = 0
    for i_b in range(sentence_lengths.shape[0]):
        for i_t in range(sentence_lengths[i_b]):
            o_start = o_tokens[i_tok]
            n = min(o_tokens[i_tok + 1] - o_start, MAX_BYTES)
            out[i_b, i_t, 0] = BOW + 1
            for k in range(n):
                b = np.int64(p_bytes[o_start + k])
                if b == BOS_MARK:
                    b = BOS_BYTE
                elif b == EOS_MARK:
                    b = EOS_BYTE
                out[i_b, i_t, k + 1] = b + 1
            out[i_b, i_t, n + 1] = EOW + 1
            for k in range(n + 2, MAX_CHARS):
                out[i_b, i_t, k] = PAD + 1
            i_tok += 1


@functools.lru_cache(maxsize=None)
def _compiled_kernel() -> Callable[..., None]:
    """:func:`char_ids_kernel` through ``numba.njit``; raises ImportError without numba.

    ``cache=True`` keeps the machine code across processes: numba writes it next to this file, or
    where that is read-only (site-packages) in the user's cache folder (``NUMBA_CACHE_DIR``
    overrides). Where neither is writable numba refuses ``cache=True`` at decoration, and the kernel
    is compiled per process instead.
    """
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(char_ids_kernel)
    except RuntimeError:
        return numba.njit(cache=False, nogil=True)(char_ids_kernel)


@functools.lru_cache(maxsize=None)
def probe_numba() -> tuple[bool, str]:
    """Whether the numba kernel runs in this process, and why (not).

    The first call imports numba and compiles (or loads from the cache) the kernel by running it
    once on a small batch.
    """
    try:
        import numba
    except Exception as exc:  # any import failure means "not loaded"; report it as it is
        return False, f"numba did not import: {type(exc).__name__}: {exc}"
    try:
        batch_to_ids_numba([[BOS_TOKEN, "a"]])
    except Exception as exc:
        return False, f"numba {numba.__version__} loaded but the kernel failed: {type(exc).__name__}: {exc}"
    return True, f"numba {numba.__version__}"


def encode_batch(batch: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's inputs: flat UTF-8 bytes ``uint8``, token offsets ``int64 [N + 1]`` and
    sentence lengths ``int64 [B]``. Bytes are encoded with ``errors="ignore"`` (lone surrogates
    vanish) and not yet cut to 48; ``"<S>"`` / ``"</S>"`` become one marker byte each."""
    # Lengths first, then the tokens: a malformed batch fails as it does in the reference.
    sentence_lengths = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch))
    encoded = [_MARKS.get(token) or token.encode("utf-8", "ignore") for sentence in batch for token in sentence]
    o_tokens = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=o_tokens[1:])
    p_bytes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return p_bytes, o_tokens, sentence_lengths


def batch_to_ids_numba(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """:func:`~elmo_fast.reference.char_ids.batch_to_ids_ref` computed by the numba kernel
    (int64 ``(B, T, 50)``, identical); raises ImportError without numba."""
    kernel = _compiled_kernel()
    p_bytes, o_tokens, sentence_lengths = encode_batch(batch)
    width = int(sentence_lengths.max()) if len(sentence_lengths) else 0
    out = np.zeros((len(sentence_lengths), width, MAX_CHARS), dtype=np.int64)
    if len(o_tokens) > 1:
        kernel(p_bytes, o_tokens, sentence_lengths, out)
    return torch.from_numpy(out)


def char_ids(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Character ids of a batch of tokenised sentences: numba where it loaded, else the reference."""
    if probe_numba()[0]:
        return batch_to_ids_numba(batch)
    return batch_to_ids_ref(batch)
