"""Training data: the softmax vocabulary, the encoded corpus, and bilm-tf's windows.

A corpus file holds one whitespace-tokenised sentence per line (``input_format="lines"``), or raw
text that :func:`split_sentences` and :func:`tokenize_raw` cut into sentences and tokens
(``input_format="raw"``). Every sentence of n words gives
n + 1 predictions per direction, as in bilm-tf:

* forward LM: inputs ``<S> w1 .. wn``, targets ``w1 .. wn </S>`` (each input predicts the next token);
* backward LM: inputs ``</S> wn .. w1``, targets ``wn .. w1 <S>`` (each predicts the previous token).

:class:`WindowStream` (bilm-tf's scheme): sentences are concatenated into ``B`` row streams and cut
into windows of ``n_steps`` positions; the LSTM state is carried from one window to the next
(truncated back-propagation), so a row's state also flows across sentence boundaries.
:class:`SentenceBatches`: one whole sentence per row, read from zero state, as
``ElmoEmbedder(state="zero")`` later reads it. Inputs are *type* ids (every distinct
word keeps its own characters for the char-CNN); targets are softmax ids (rare words -> ``<UNK>``).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elmo_fast.reference.char_ids import BOS_TOKEN, EOS_TOKEN, MAX_CHARS, token_to_ids

UNK_TOKEN = "<UNK>"
SPECIAL_TOKENS: tuple[str, ...] = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
BOS_ID, EOS_ID, UNK_ID = 0, 1, 2
BOS_TYPE, EOS_TYPE = 0, 1
"""Type ids of the boundary tokens in every :class:`EncodedCorpus`."""


INPUT_FORMATS: tuple[str, ...] = ("lines", "raw")

_RAW_TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")
# Sentence-final punctuation (with any closing quotes or brackets) before whitespace and an opening
# quote or bracket (optional) and a word character; the caller checks that character is a capital.
_SENTENCE_END = re.compile(r"""[.!?]+["'\u201d\u2019)\]]*(?=\s+["'\u201c\u2018(\[]*(\w))""")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")


def split_sentences(text: str) -> list[str]:
    """Cut raw text into sentences: at blank lines, and after ``.``, ``!`` or ``?`` (with any closing
    quotes or brackets) followed by whitespace and a capital letter (after an optional opening quote
    or bracket). Line breaks inside a paragraph are spaces.

    A deliberately simple rule: abbreviations before a capital ("Mr. Smith", "e.g. Paris") are cut
    too, and a sentence that starts in lower case or with a digit is joined to the previous one.
    For a better split, split the text yourself and use one sentence per line.
    """
    sentences = []
    for paragraph in _BLANK_LINE.split(text):
        paragraph = " ".join(paragraph.split())
        start = 0
        for match in _SENTENCE_END.finditer(paragraph):
            if match.group(1).isupper():
                sentences.append(paragraph[start : match.end()].strip())
                start = match.end()
        if paragraph[start:].strip():
            sentences.append(paragraph[start:].strip())
    return sentences


def tokenize_raw(sentence: str) -> list[str]:
    """Whitespace tokens with punctuation split off: runs of word characters (kept together across
    inner ``-``, ``'`` and ``.``, as in ``well-known``, ``don't``, ``3.5``) and single punctuation
    marks. The default model's corpus (``scripts/build_wordnet_corpus.py``) is tokenised this way."""
    return _RAW_TOKEN.findall(sentence)


def read_sentences(path: str | Path, input_format: str = "lines") -> Iterator[list[str]]:
    """Yield the sentences of a UTF-8 text file as token lists.

    ``"lines"``: the whitespace-split tokens of every non-empty line. ``"raw"``: the whole file cut by
    :func:`split_sentences`, each sentence tokenised by :func:`tokenize_raw`.
    """
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
    if input_format == "raw":
        for sentence in split_sentences(Path(path).read_text(encoding="utf-8")):
            tokens = tokenize_raw(sentence)
            if tokens:
                yield tokens
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            tokens = line.split()
            if tokens:
                yield tokens


class Vocabulary:
    """The softmax vocabulary: ``<S>``, ``</S>``, ``<UNK>``, then words by descending frequency.

    Stored as bilm-tf's vocabulary file (one word per line). Frequency order matters: the sampled
    softmax draws ids from a log-uniform (Zipf) distribution over this order.
    """

    def __init__(self, words: Sequence[str]) -> None:
        if tuple(words[:3]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}, got {tuple(words[:3])}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("the vocabulary holds a word twice")

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        """Softmax id of ``word`` (``<UNK>`` when it is not in the vocabulary)."""
        return self.index.get(word, UNK_ID)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], max_size: int, min_count: int = 1) -> Vocabulary:
        """The ``max_size`` most frequent words seen at least ``min_count`` times (ties: alphabetical)."""
        counts = Counter(w for s in sentences for w in s)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIAL_TOKENS, *ranked[:max_size]])

    def save(self, path: str | Path) -> None:
        """Write one word per line."""
        Path(path).write_text("".join(w + "\n" for w in self.words), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a file written by :meth:`save` (or a bilm-tf vocabulary file in the same order); the
        last line needs no newline."""
        words = Path(path).read_text(encoding="utf-8").split("\n")
        if words and words[-1] == "":
            words.pop()
        return cls(words)


@dataclass
class EncodedCorpus:
    """A corpus as arrays: ``tokens`` (type ids of all sentences, concatenated), ``offsets``
    (sentence i is ``tokens[offsets[i]:offsets[i + 1]]``), ``char_ids`` ``(n_types, 50)`` per type
    (types 0 and 1 are ``<S>`` and ``</S>``), ``target_ids`` ``(n_types,)`` softmax id per type."""

    tokens: np.ndarray
    offsets: np.ndarray
    char_ids: torch.Tensor
    target_ids: np.ndarray

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_predictions(self) -> int:
        """Predictions per direction in one pass: words plus one per sentence."""
        return len(self.tokens) + self.n_sentences

    def oov_rate(self) -> float:
        """Fraction of predicted tokens (sentence ends included) whose target is ``<UNK>``."""
        if self.n_predictions == 0:
            return 0.0
        return float((self.target_ids[self.tokens] == UNK_ID).sum()) / self.n_predictions


def encode_corpus(sentences: Iterable[Sequence[str]], vocab: Vocabulary) -> EncodedCorpus:
    """Map every token to a type id (its own characters) and every type to its softmax id."""
    types: dict[str, int] = {BOS_TOKEN: BOS_TYPE, EOS_TOKEN: EOS_TYPE}
    tokens: list[int] = []
    offsets = [0]
    for sentence in sentences:
        for word in sentence:
            tokens.append(types.setdefault(word, len(types)))
        offsets.append(len(tokens))
    names = list(types)
    char_ids = torch.tensor([token_to_ids(w) for w in names], dtype=torch.int16).reshape(len(names), MAX_CHARS)
    target_ids = np.array([vocab.id(w) for w in names], dtype=np.int64)
    target_ids[BOS_TYPE], target_ids[EOS_TYPE] = BOS_ID, EOS_ID
    return EncodedCorpus(np.array(tokens, dtype=np.int64), np.array(offsets, dtype=np.int64), char_ids, target_ids)


@dataclass
class Window:
    """One training step's data, shape ``(2, B, W)`` for direction (forward, backward) x row x step.

    ``inputs``: type ids in each direction's reading order (0 beyond ``lengths``); ``targets``:
    softmax ids; ``lengths`` ``(B,)``: real positions per row (rows end early only at the very end
    of a stream).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor


class WindowStream:
    """The windows of one pass over a corpus, in sentence order ``order``.

    ``drop_remainder``: cut the stream to ``B * (N // B)`` positions so every row has the same length
    (training); otherwise the last row is shorter and every prediction is kept (evaluation).
    """

    def __init__(
        self, corpus: EncodedCorpus, order: np.ndarray, batch_size: int, n_steps: int, drop_remainder: bool
    ) -> None:
        fwd_in, fwd_out, bwd_in, bwd_out = _direction_streams(corpus, order)
        total = len(fwd_in)
        row_len = total // batch_size if drop_remainder else -(-total // batch_size)
        self.batch_size, self.n_steps = batch_size, n_steps
        self.row_lengths = np.clip(total - np.arange(batch_size) * row_len, 0, row_len)
        if drop_remainder:
            self.row_lengths[:] = row_len
        self._rows = [_rows(x, batch_size, row_len) for x in (fwd_in, fwd_out, bwd_in, bwd_out)]
        self.n_windows = -(-row_len // n_steps) if row_len else 0

    def __len__(self) -> int:
        return self.n_windows

    def window(self, k: int) -> Window:
        """Window ``k`` (0-based) of this pass."""
        if not 0 <= k < self.n_windows:
            raise IndexError(f"window {k} out of range 0..{self.n_windows - 1}")
        start = k * self.n_steps
        lengths = np.clip(self.row_lengths - start, 0, self.n_steps)
        sl = slice(start, start + self.n_steps)
        pieces = [torch.from_numpy(np.ascontiguousarray(r[:, sl])) for r in self._rows]
        width = pieces[0].shape[1]
        if width < self.n_steps:
            pieces = [torch.nn.functional.pad(p, (0, self.n_steps - width)) for p in pieces]
        return Window(
            inputs=torch.stack((pieces[0], pieces[2])),
            targets=torch.stack((pieces[1], pieces[3])),
            lengths=torch.from_numpy(lengths.astype(np.int64)),
        )


class SentenceBatches:
    """Whole sentences, one per row, each read from zero state (nothing carried between windows).

    ``order``: the sentences to use, in order; within consecutive chunks of ``sort_chunk`` sentences
    (the whole order when None) sentences are sorted by length so a window holds similar lengths and
    little padding. Row b of a window has ``len_b + 1`` real positions.
    """

    def __init__(self, corpus: EncodedCorpus, order: np.ndarray, batch_size: int, sort_chunk: int | None = None) -> None:
        self.corpus = corpus
        lengths = np.diff(corpus.offsets)
        chunk = len(order) if sort_chunk is None else sort_chunk
        pieces = [order[i : i + chunk] for i in range(0, len(order), max(chunk, 1))]
        ordered = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in pieces]) if pieces else order
        self.batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def window(self, k: int) -> Window:
        """The ``k``-th batch of sentences."""
        corpus, rows = self.corpus, self.batches[k]
        lengths = np.diff(corpus.offsets)[rows]
        arrays = np.zeros((4, len(rows), int(lengths.max()) + 1), dtype=np.int64)
        for r, i in enumerate(rows):
            for j, sequence in enumerate(_sentence_sequences(corpus, i)):
                arrays[j, r, : len(sequence)] = sequence
        arrays[[1, 3]] = corpus.target_ids[arrays[[1, 3]]]
        t = torch.from_numpy(arrays)
        return Window(inputs=t[[0, 2]], targets=t[[1, 3]], lengths=torch.from_numpy(lengths + 1))


def _sentence_sequences(corpus: EncodedCorpus, i: int) -> tuple[np.ndarray, ...]:
    # Type ids of sentence i: forward inputs <S> w1..wn and targets w1..wn </S>; backward inputs
    # </S> wn..w1 and targets wn..w1 <S>.
    words = corpus.tokens[corpus.offsets[i] : corpus.offsets[i + 1]]
    back = words[::-1]
    bos, eos = np.array([BOS_TYPE]), np.array([EOS_TYPE])
    return (np.concatenate((bos, words)), np.concatenate((words, eos)), np.concatenate((eos, back)), np.concatenate((back, bos)))


def _direction_streams(corpus: EncodedCorpus, order: np.ndarray) -> list[np.ndarray]:
    # The four sequences of every sentence in ``order``, concatenated; targets as softmax ids.
    parts = [_sentence_sequences(corpus, i) for i in order]
    if not parts:
        return [np.zeros(0, np.int64)] * 4
    streams = [np.concatenate(p) for p in zip(*parts)]
    streams[1], streams[3] = corpus.target_ids[streams[1]], corpus.target_ids[streams[3]]
    return streams


def _rows(stream: np.ndarray, batch_size: int, row_len: int) -> np.ndarray:
    out = np.zeros((batch_size, row_len), dtype=np.int64)
    flat = stream[: batch_size * row_len]
    out.reshape(-1)[: len(flat)] = flat
    return out


def epoch_order(n_sentences: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sentence order of one training epoch (a pure function of seed and epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_sentences)
