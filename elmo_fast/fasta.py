"""Protein FASTA input: records read with Biopython, checked up front, residues as tokens.

A protein language model such as SeqVec is an ELMo whose tokens are single amino acids. This module
turns a FASTA file into ``(id, sequence)`` pairs for it, the way SeqVec's own reader prepares them:
the id is the header's first word, whitespace inside the sequence is dropped and letters are
upper-cased (SeqVec was trained on upper-case sequences; bio_embeddings only warns about lower case,
so a lower-case file gives different vectors there). ``*`` (a stop codon) is dropped too. Any ASCII
letter is a token, so the ambiguity and rare codes X, B, Z, U and O are embedded like the others.

Everything is checked before any embedding starts (:func:`scan_fasta`), each problem reported with
its 1-based line number: text before the first ``>`` header (not a FASTA file), a header without an
id, a record without residues, a repeated id, a character that is not a letter (digits, ``-`` gaps
of an alignment, ``.``). The parsing itself is Biopython's ``SimpleFastaParser`` (``pip install
'elmo_fast[fasta]'``); this module only counts lines around it.

HDF5 names: an id becomes a dataset name through :func:`hdf5_key`, which percent-escapes ``%``, ``/``
and an id of ``.`` alone (``/`` would otherwise create a group: Pfam-style ids such as ``Q9XYZ1/23-187`` are common),
so ``%2F`` in a key reads as ``/``; the id itself is kept unescaped in the ``original_id`` attribute.
"""
from __future__ import annotations

import hashlib
import logging
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

KEY_MODES = ("id", "md5")
_LETTERS = frozenset(string.ascii_letters)
_DROPPED = frozenset("*")


class FastaError(ValueError):
    """The input is not a FASTA file elmo_fast can embed; the message names the line."""


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: ``id`` (the header's first word), the full ``header`` (without ``>``), the
    cleaned ``sequence`` (upper case, no whitespace or ``*``) and the 1-based ``line`` of its header."""

    id: str
    header: str
    sequence: str
    line: int


@dataclass(frozen=True)
class FastaScan:
    """What :func:`scan_fasta` found: the number of records and the residues of each, in file order."""

    lengths: tuple[int, ...]

    @property
    def records(self) -> int:
        """Number of records."""
        return len(self.lengths)

    @property
    def residues(self) -> int:
        """Total residues."""
        return sum(self.lengths)


def require_biopython():
    """Biopython's ``SimpleFastaParser``, or an ``ImportError`` that says how to install it."""
    try:
        from Bio.SeqIO.FastaIO import SimpleFastaParser
    except ImportError:
        raise ImportError(
            "reading FASTA needs Biopython: pip install 'elmo_fast[fasta]' (or pip install biopython)"
        ) from None
    return SimpleFastaParser


def clean_sequence(raw: str) -> str:
    """``raw`` without whitespace or ``*``, upper-cased; a ``ValueError`` names any non-letter left."""
    residues = "".join(ch for ch in "".join(raw.split()) if ch not in _DROPPED)
    bad = sorted(set(residues) - _LETTERS)
    if bad:
        shown = ", ".join(repr(ch) for ch in bad[:10])
        raise ValueError(
            f"characters {shown} are not residues (one-letter amino-acid codes; '*' and whitespace are "
            "ignored); remove alignment gaps and other symbols"
        )
    return residues.upper()


def hdf5_key(record_id: str) -> str:
    """The HDF5 dataset name of ``record_id``: ``%`` and ``/`` percent-escaped, and an id of ``.``
    alone (HDF5's name for the group itself) written ``%2E``; reversible."""
    key = record_id.replace("%", "%25").replace("/", "%2F")
    return "%2E" if key == "." else key


def record_key(record: FastaRecord, key_by: str) -> str:
    """The dataset name of ``record``: :func:`hdf5_key` of its id (``"id"``) or the hex MD5 of its
    cleaned sequence (``"md5"``, bio_embeddings' default keys)."""
    if key_by == "md5":
        return hashlib.md5(record.sequence.encode()).hexdigest()
    if key_by == "id":
        return hdf5_key(record.id)
    raise ValueError(f"key_by must be one of {KEY_MODES}, not {key_by!r}")


class _LineCounter:
    """Lines of a text file, counting them and noting the line number of each ``>`` header; text
    before the first header is refused (Biopython would skip it silently)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.line = 0
        self.header_lines: list[int] = []
        # One generator for the whole file: Biopython iterates the handle more than once.
        self._lines = self._read()

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def _read(self) -> Iterator[str]:
        try:
            with open(self.path, encoding="utf-8", newline=None) as handle:
                for line in handle:
                    self.line += 1
                    if line.startswith(">"):
                        self.header_lines.append(self.line)
                    elif not self.header_lines and line.strip():
                        raise FastaError(
                            f"{self.path}: line {self.line} is not a FASTA header (expected '>' before any "
                            f"sequence, got {line.strip()[:40]!r}); is this a FASTA file? (plain text "
                            "sentences are read without --input-format fasta)"
                        )
                    yield line
        except UnicodeDecodeError as exc:
            raise FastaError(
                f"{self.path}: line {self.line + 1} is not UTF-8 text ({exc.reason}); is this a FASTA file? "
                "(compressed files must be decompressed first)"
            ) from None


def read_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Stream the records of a FASTA file, each checked as :func:`scan_fasta` checks it (except for
    repeated ids, which need the whole file: run :func:`scan_fasta` first).

    Raises:
        FastaError: the first problem, with its line number.
        ImportError: Biopython is not installed.
    """
    parser = require_biopython()
    path = Path(path)
    lines = _LineCounter(path)
    for index, (title, raw) in enumerate(parser(lines)):
        line = lines.header_lines[index]
        header = title.strip()
        if not header:
            raise FastaError(f"{path}: line {line}: a header without an id ('>' alone); give every record an id")
        record_id = header.split(None, 1)[0]
        try:
            sequence = clean_sequence(raw)
        except ValueError as exc:
            raise FastaError(f"{path}: record {record_id!r} (header at line {line}): {exc}") from None
        if not sequence:
            raise FastaError(
                f"{path}: record {record_id!r} (header at line {line}) has no residues; remove the empty record"
            )
        yield FastaRecord(record_id, header, sequence, line)
    if not lines.header_lines:
        raise FastaError(f"{path}: no FASTA record (no line starts with '>'); is this a FASTA file?")


def scan_fasta(path: str | Path, key_by: str = "id") -> FastaScan:
    """Check a whole FASTA file before any work: every record as :func:`read_fasta` checks it, plus
    no two records with the same dataset name (the same id, or with ``key_by="md5"`` the same
    sequence). Returns each record's residue count.

    Raises:
        FastaError: the first problem, naming its line (for a repeat, both lines).
    """
    seen: dict[str, int] = {}
    lengths = []
    for record in read_fasta(path):
        key = record_key(record, key_by)
        if key in seen:
            what = f"id {record.id!r}" if key_by == "id" else f"sequence of {record.id!r} (md5 keys)"
            raise FastaError(
                f"{path}: line {record.line} repeats the {what} first seen at line {seen[key]}; "
                "dataset names must be unique: rename or remove the duplicate"
            )
        seen[key] = record.line
        lengths.append(len(record.sequence))
    return FastaScan(tuple(lengths))


def check_pairs(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """``(id, sequence)`` pairs from Python code, cleaned as FASTA sequences are; a ``ValueError``
    names the first id whose sequence is empty or holds a non-letter."""
    for record_id, raw in pairs:
        if not isinstance(record_id, str) or not isinstance(raw, str):
            raise TypeError(f"expected (id, sequence) pairs of strings, got ({record_id!r}, {type(raw).__name__})")
        try:
            sequence = clean_sequence(raw)
        except ValueError as exc:
            raise ValueError(f"sequence {record_id!r}: {exc}") from None
        if not sequence:
            raise ValueError(f"sequence {record_id!r} has no residues")
        yield record_id, sequence
