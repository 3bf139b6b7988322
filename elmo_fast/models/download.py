"""HTTP(S) download with the standard library: progress bar, resume, temp file + rename.

A file is written to ``DEST.part``; an interrupted transfer leaves that file behind and the next
call asks the server for the rest (``Range: bytes=N-``). A server that ignores the range (answers
200) is read from the start again. ``DEST`` appears only when the transfer is complete.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: float = float(os.environ.get("ELMO_FAST_CONNECT_TIMEOUT", "10"))
"""Seconds a connection attempt (and each read) may wait; ``ELMO_FAST_CONNECT_TIMEOUT`` overrides."""
CHUNK: int = 1 << 20
ATTEMPTS: int = 3


class DownloadError(OSError):
    """A file could not be fetched (network, HTTP status, or an incomplete transfer)."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB pieces."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": "elmo-fast"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)


def _transfer(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One attempt: append to ``part`` from where it ends; raises on any failure."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The range starts at or past the end: the partial file is stale; start over.
            part.unlink()
            response = _open(url, 0, timeout)
            offset = 0
        else:
            raise
    with response:
        status = getattr(response, "status", 200)
        if offset and status != 206:
            logger.info("%s ignored the range request (HTTP %s); downloading from the start", url, status)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with open(part, mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[: -len(".part")], disable=not progress
        ) as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"{url}: transfer ended after {part.stat().st_size} of {total} bytes")


def download(url: str, dest: Path, *, timeout: float | None = None, progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part`` if present); returns ``dest``.

    Raises :class:`DownloadError` naming the URL; a 4xx answer is not retried, a dropped connection
    is resumed up to :data:`ATTEMPTS` times.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    last: Exception | None = None
    for attempt in range(ATTEMPTS):
        try:
            _transfer(url, part, timeout, progress)
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, DownloadError) as exc:
            last = exc
            reason = getattr(exc, "reason", exc)
            if isinstance(exc, urllib.error.URLError) and not part.exists():
                # No byte arrived: no route, no DNS, refused. Retrying would only delay the error.
                raise DownloadError(f"{url}: {reason}") from None
            logger.warning("download of %s interrupted (%s); resuming (attempt %d of %d)", url, reason, attempt + 2, ATTEMPTS)
    raise DownloadError(f"{url}: {getattr(last, 'reason', last)} (gave up after {ATTEMPTS} attempts; rerun to resume)")
