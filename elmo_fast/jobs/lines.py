"""Reading a corpus: lines of UTF-8 text, checked before any work is done, from a file or a folder."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from elmo_fast.weights import PathLike

ENCODING_ERRORS = ("strict", "replace", "ignore")
# surrogateescape maps undecodable bytes 0x80-0xFF to these code points
BAD_BYTES = range(0xDC80, 0xDD00)


def read_lines(path: Path, encoding_errors: str = "strict") -> Iterator[str]:
    """Stripped lines of a UTF-8 file with universal newlines (``\\n``, ``\\r\\n``, ``\\r``).

    Undecodable bytes raise a ``ValueError`` naming the line (``"strict"``), become U+FFFD
    (``"replace"``) or vanish (``"ignore"``).
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise ValueError(f"encoding_errors must be one of {ENCODING_ERRORS}, not {encoding_errors!r}")
    with open(path, encoding="utf-8", errors="surrogateescape", newline=None) as handle:
        for number, line in enumerate(handle):
            if any(ord(ch) in BAD_BYTES for ch in line):
                if encoding_errors == "strict":
                    raise ValueError(
                        f"{path}: line {number} (0-based) is not valid UTF-8; pass encoding_errors='replace' "
                        "(--encoding-errors replace) to substitute U+FFFD, or fix the file"
                    )
                fill = "\ufffd" if encoding_errors == "replace" else ""
                line = "".join(fill if ord(ch) in BAD_BYTES else ch for ch in line)
            yield line.strip()


def scan_lines(
    path: Path,
    encoding_errors: str,
    unique: bool = False,
    seen: set[str] | None = None,
    *,
    max_tokens: int | None = None,
) -> int:
    """Count lines and reject blank ones (AllenNLP refuses them) before any work is done.

    ``unique``: also reject a repeated line (sentences used as keys must be distinct); ``seen``
    carries the sentences of earlier files when several files make one corpus. ``max_tokens``:
    also reject a line of more tokens (the model's ``max_sentence_length``).
    """
    blank = []
    seen = set() if seen is None else seen
    count = 0
    for count, line in enumerate(read_lines(path, encoding_errors), start=1):
        if not line:
            blank.append(count - 1)
            continue
        if max_tokens is not None and len(line.split()) > max_tokens:
            raise ValueError(
                f"{path}: line {count - 1} (0-based) has {len(line.split())} tokens, more than "
                f"max_sentence_length={max_tokens}; split it or raise the limit (--max-sentence-length)"
            )
        if unique:
            if line in seen:
                raise ValueError(
                    f"{path}: line {count - 1} repeats the sentence {line!r}; duplicate sentences need "
                    "line-number keys (drop use_sentence_keys / --use-sentence-keys)"
                )
            seen.add(line)
    if blank:
        shown = ", ".join(map(str, blank[:20])) + (" ..." if len(blank) > 20 else "")
        raise ValueError(f"{path}: {len(blank)} empty line(s) at (0-based) line indexes {shown}; remove them")
    return count


def input_files(path: PathLike) -> list[Path]:
    """The files a job reads: ``path`` itself, or the files of a directory in key order (module docstring)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"input {path} not found")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(root, n) for n in names if not n.startswith(".") and Path(root, n).is_file()]
    if not files:
        raise FileNotFoundError(f"input directory {path} holds no (non-hidden) files")
    return sorted(files, key=lambda f: f.relative_to(path).as_posix())


def files_digest(root: Path, files: list[Path]) -> str:
    """SHA-256 over every input file's name (relative to ``root``), size and modification time."""
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        name = f.relative_to(root).as_posix() if root.is_dir() else f.name
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
