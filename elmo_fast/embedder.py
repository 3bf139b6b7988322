"""``ElmoEmbedder``: AllenNLP's (<= 0.9) ``allennlp.commands.elmo.ElmoEmbedder``, plus ``embed_file``."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

from elmo_fast.batching import BUCKET_WINDOW_BATCHES, chunked, plan_batches, resolve_bucketing
from elmo_fast.inputs import check_batch
from elmo_fast.jobs.spec import OUTPUT_FORMATS, check_job_options
from elmo_fast.modules.elmo import load_bilm
from elmo_fast.modules.runtime import DEFAULT_MAX_SENTENCE_LENGTH, RuntimeOptions
from elmo_fast.modules.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from elmo_fast.reference.char_ids import remove_sentence_boundaries
from elmo_fast.weights import PathLike

DEFAULT_BATCH_SIZE = 64
__all__ = ["DEFAULT_BATCH_SIZE", "OUTPUT_FORMATS", "ElmoEmbedder"]


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


class ElmoEmbedder:
    """Raw biLM layers for tokenised sentences (no scalar mix, no dropout), as numpy arrays.

    Args:
        options_file, weight_file: the model files; both None uses the bundled default model; a model
            name (`elmo-fast models list`) or folder as options_file with weight_file None fetches it.
        cuda_device: AllenNLP's GPU index (-1 = CPU); ``device`` overrides it.
        state, backend, device, max_sentence_length, weight_precision, token_cache_size: how the
            biLM runs (keyword-only; defaults ``"carry"``: AllenNLP parity, the embedder never resets
            on its own; ``"auto"``; ``cuda_device``'s device; 100 000 tokens; ``"fp32"``; 10 000
            tokens); see :class:`~elmo_fast.modules.runtime.RuntimeOptions`.
    """

    def __init__(
        self,
        options_file: PathLike | None = None,
        weight_file: PathLike | None = None,
        cuda_device: int = -1,
        *,
        state: str = "carry",
        backend: str = "auto",
        device: torch.device | str | None = None,
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
        weight_precision: str = "fp32",
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    ) -> None:
        if device is None:
            device = f"cuda:{cuda_device}" if cuda_device >= 0 else "cpu"
        self.device = torch.device(device)
        runtime = RuntimeOptions(
            state=state, backend=backend, device=self.device, weight_precision=weight_precision,
            token_cache_size=token_cache_size, max_sentence_length=max_sentence_length,
        )
        self.elmo_bilm = load_bilm(options_file, weight_file, runtime=runtime)
        self.elmo_bilm.eval()
        self.cuda_device = self.device.index if self.device.type == "cuda" else -1

    @property
    def num_layers(self) -> int:
        """Layers per token (L + 1: the token layer and every biLSTM layer)."""
        return self.elmo_bilm.num_layers

    def reset_states(self) -> None:
        """Forget the carried state (``state="carry"``)."""
        self.elmo_bilm.reset_states()

    def _empty(self) -> np.ndarray:
        return np.zeros((self.num_layers, 0, self.elmo_bilm.get_output_dim()), dtype=np.float32)

    @torch.no_grad()
    def batch_to_embeddings(self, batch: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch: activations ``(B, L + 1, T, 2P)`` (boundaries removed) and mask ``(B, T)``."""
        check_batch(batch)
        return self._embeddings(batch)

    def _embeddings(self, batch: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        # batch checked by the caller
        out = self.elmo_bilm(self.elmo_bilm.batch_to_ids(batch).to(self.device))
        layers = []
        mask = None
        for layer in out.activations:
            stripped, mask = remove_sentence_boundaries(layer, out.mask)
            layers.append(stripped)
        return torch.stack(layers, dim=1), mask

    def embed_sentence(self, sentence: Sequence[str]) -> np.ndarray:
        """One sentence -> float32 ``(L + 1, len, 2P)``."""
        return self.embed_batch([sentence])[0]

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """A batch -> one float32 ``(L + 1, len_i, 2P)`` array per sentence (empty: ``(L + 1, 0, 2P)``).

        ``[[]]`` returns one empty array without running the model (AllenNLP's behaviour); an empty
        sentence inside a larger batch still runs (and, with ``state="carry"``, moves its row's state).
        """
        check_batch(batch)
        return self._embed_checked(batch)

    @torch.no_grad()
    def _embed_checked(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(batch) == 1 and len(batch[0]) == 0:
            return [self._empty()]
        if len(batch) == 0:
            return []
        embeddings, mask = self._embeddings(batch)
        lengths = mask.sum(dim=1).tolist()
        array = embeddings.to("cpu", torch.float32).numpy()
        return [array[i, :, :n] if n else self._empty() for i, n in enumerate(lengths)]

    def embed_planned(
        self, sentences: Sequence[Sequence[str]], batches: Iterable[Sequence[int]], on_batch: Callable[[int], object] | None = None
    ) -> list[np.ndarray]:
        """Embed ``sentences`` in the given ``batches`` (lists of indexes into them, e.g. from
        :func:`elmo_fast.batching.plan_batches`); one array per sentence, in the sentences' order.
        ``on_batch`` is called with each batch's size. ``sentences`` are checked once, here."""
        check_batch(sentences)
        return self._embed_planned_checked(sentences, batches, on_batch)

    def _embed_planned_checked(
        self, sentences: Sequence[Sequence[str]], batches: Iterable[Sequence[int]], on_batch: Callable[[int], object] | None = None
    ) -> list[np.ndarray]:
        arrays: dict[int, np.ndarray] = {}
        for rows in batches:
            arrays.update(zip(rows, self._embed_checked([sentences[i] for i in rows])))
            if on_batch is not None:
                on_batch(len(rows))
        return [arrays[i] for i in range(len(sentences))]

    def embed_sentences(
        self,
        sentences: Iterable[Sequence[str]],
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        bucket: bool | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Lazily embed an iterable of sentences, at most ``batch_size`` per batch; results come in order.

        ``bucket`` batches sentences of similar length together (less padding) within a look-ahead
        window of ``BUCKET_WINDOW_BATCHES * batch_size`` sentences, yielding each window's results
        in the caller's order; vectors then equal the unbucketed ones up to float32 rounding.
        ``None`` (default) buckets for ``state="zero"`` / ``"warm"``, never for ``"carry"``, whose
        batches must stay as given (``bucket=True`` with it is a ``ValueError``). ``max_tokens``
        caps each batch at that many padded tokens (sentences x longest sentence, see
        :func:`elmo_fast.batching.plan_batches`); it needs ``"zero"`` or ``"warm"`` too.

        The arguments are checked at the call (a ``TypeError`` for ``None``, a string or anything
        not iterable); each batch is checked as :meth:`embed_batch` checks it.
        """
        _check_batch_size(batch_size)
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Iterable):
            check_batch(sentences)
        bucket = resolve_bucketing(self.elmo_bilm.state, bucket, max_tokens)
        if not bucket and max_tokens is None:
            return self._embed_in_order(sentences, batch_size)
        return self._embed_windows(sentences, batch_size, bucket, max_tokens)

    def _embed_in_order(self, sentences: Iterable[Sequence[str]], batch_size: int) -> Iterator[np.ndarray]:
        for batch in chunked(sentences, batch_size):
            yield from self.embed_batch(batch)

    def _embed_windows(
        self, sentences: Iterable[Sequence[str]], batch_size: int, bucket: bool, max_tokens: int | None
    ) -> Iterator[np.ndarray]:
        for window in chunked(sentences, batch_size * BUCKET_WINDOW_BATCHES):
            check_batch(window)
            plan = plan_batches([len(s) for s in window], batch_size, bucket=bucket, max_tokens=max_tokens)
            yield from self._embed_planned_checked(window, plan)

    def embed_file(
        self,
        input_file: PathLike | IO[str],
        output_file_path: PathLike,
        output_format: str = "all",
        batch_size: int = DEFAULT_BATCH_SIZE,
        forget_sentences: bool = False,
        use_sentence_keys: bool = False,
        *,
        resume: bool = False,
        encoding_errors: str = "strict",
        segment_size: int = 4096,
        progress: bool = True,
        bucket: bool | None = None,
        max_tokens: int | None = None,
    ) -> None:
        """Embed a text file, one whitespace-tokenised sentence per line, into an hdf5 file.

        The layout is AllenNLP's ``elmo`` command's: one float32 dataset per line keyed by its line
        number (or by the sentence with ``use_sentence_keys``) holding ``(L + 1, len, 2P)``
        (``"all"``), the top layer ``(len, 2P)`` (``"top"``) or the layer average ``(len, 2P)``
        (``"average"``); plus ``sentence_to_index``, a one-element string dataset with a JSON map
        sentence -> key (a repeated sentence maps to its last line), unless ``forget_sentences`` or
        ``use_sentence_keys``.

        ``input_file`` is a path or an open text file (closed afterwards, as AllenNLP does). Blank
        lines are an error, as in AllenNLP; ``\r\n`` endings are fine; undecodable bytes follow
        ``encoding_errors`` (``"strict"``: an error naming the line, ``"replace"``, ``"ignore"``).

        Lines are streamed and memory holds one segment of ``segment_size`` sentences (plus, at the
        end, the sentence map). Completed segments are checkpointed in ``OUTPUT.parts/``; a killed
        run continues with ``resume=True`` and gives a file identical to an uninterrupted run (see
        :mod:`elmo_fast.jobs`). Nothing is written at ``output_file_path`` until the run is
        complete; then an existing file there is replaced without asking, as AllenNLP's
        ``embed_file`` does (``elmo-fast embed`` refuses unless ``--overwrite``).

        ``bucket`` and ``max_tokens`` mean what they mean for :meth:`embed_sentences` (by default
        ``"zero"`` / ``"warm"`` bucket, ``"carry"`` never does), with each segment as the window.
        """
        from elmo_fast.jobs.local import run_embed_file

        bucket = check_job_options(
            state=self.elmo_bilm.state, output_format=output_format, batch_size=batch_size,
            encoding_errors=encoding_errors, bucket=bucket, max_tokens=max_tokens,
        )
        spooled = None
        if isinstance(input_file, (str, os.PathLike)):
            path = Path(input_file)
        else:
            name = getattr(input_file, "name", None)
            if isinstance(name, str) and os.path.isfile(name):
                path = Path(name)
            else:
                spooled = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False)
                with spooled:
                    shutil.copyfileobj(input_file, spooled)
                path = Path(spooled.name)
            input_file.close()
        if not path.is_file():
            raise FileNotFoundError(f"input file {path} not found")
        try:
            run_embed_file(
                self,
                path,
                Path(output_file_path),
                output_format=output_format,
                batch_size=batch_size,
                forget_sentences=forget_sentences,
                use_sentence_keys=use_sentence_keys,
                resume=resume,
                encoding_errors=encoding_errors,
                segment_size=segment_size,
                progress=progress,
                bucket=bucket,
                max_tokens=max_tokens,
            )
        finally:
            if spooled is not None:
                os.unlink(spooled.name)

    def embed_fasta(self, input_file: PathLike, **options) -> Iterator[tuple[str, np.ndarray]]:
        """Embed the proteins of a FASTA file: ``(id, array)`` per record, in file order.

        The whole file is checked first (:func:`elmo_fast.fasta.scan_fasta`); ``options`` are those
        of :func:`elmo_fast.jobs.fasta.embed_pairs` (``output_format``, ``per_protein``,
        ``batch_size``, ``max_tokens``, ``window_residues``). Needs ``state="zero"`` or ``"warm"``.
        For an hdf5 file use :func:`elmo_fast.jobs.fasta.run_embed_fasta` (``elmo-fast embed
        --input-format fasta``).
        """
        from elmo_fast.fasta import read_fasta, scan_fasta
        from elmo_fast.jobs.fasta import embed_pairs

        scan_fasta(input_file)
        return embed_pairs(self, ((r.id, r.sequence) for r in read_fasta(input_file)), **options)
