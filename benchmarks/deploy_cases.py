"""Setup factories for the deployment rows of ``run.py`` (``--onnx``, ``--compile``).

Both run the work of an ``embed`` row — ``ElmoEmbedder.batch_to_embeddings`` with ``state="zero"``:
character ids in, ``(B, L + 1, T, 2P)`` embeddings and the mask out — through another runtime:

- ``onnxruntime``: the file ``elmo-fast export-onnx`` writes (:func:`elmo_fast.export.export_onnx`),
  run by an ONNX Runtime CPU session with as many intra-op threads as torch uses; the timed call is
  ``batch_to_ids`` plus ``session.run`` (the ids to numpy and the outputs back are inside it).
- ``<backend>+compile``: the same embedder with its biLM wrapped in ``torch.compile(fullgraph=True,
  dynamic=False)`` (inductor). The warm-up call compiles each shape, outside the timed region.
  ``dynamic=False``: torch 2.13's inductor fails on the ``ref`` LSTM's ``scan`` with symbolic shapes
  (``KeyError`` in ``decompose_scan_to_while_loop``); a benchmark case repeats one shape anyway.
"""
from __future__ import annotations

from pathlib import Path

import torch

import cases
from elmo_fast import ElmoEmbedder, batch_to_ids
from elmo_fast.weights import load_options

DEFAULT = "default"
"""The ``--configs`` name of the model bundled in the package (its real weights, not random ones)."""


def model_files(config: str, directory: Path) -> tuple[Path, Path]:
    """``cases.model_files``, plus the bundled model for :data:`DEFAULT`."""
    if config == DEFAULT:
        from elmo_fast.default_model import default_model_files

        return default_model_files()
    return cases.model_files(config, directory)


def options(config: str):
    """The :class:`~elmo_fast.weights.ElmoOptions` of a ``--configs`` name."""
    if config == DEFAULT:
        return load_options(model_files(DEFAULT, Path("."))[0])
    return cases.BENCH_CONFIGS[config]


def onnx_file(files: tuple[Path, Path], directory: Path) -> Path:
    """Export the model of ``files`` once into ``directory``; returns the ``.onnx`` path."""
    from elmo_fast.export import export_onnx
    from elmo_fast.weights import load_weights

    path = directory / f"{Path(files[1]).stem}-{abs(hash(str(files[1])))}.onnx"
    if not path.is_file():
        export_onnx(path, load_weights(*files))
    return path


def setup_onnx(path: Path, batch: int) -> tuple[cases.Case, object]:
    """The ``onnxruntime`` case on ``batch`` sentences, and the session (for the error columns)."""
    from elmo_fast.export import onnx_session, run_onnx

    session = onnx_session(path, threads=torch.get_num_threads())
    batch_sentences = cases.sentences(batch)

    def run():
        return run_onnx(session, batch_to_ids(batch_sentences))

    return cases.Case(run, sum(map(len, batch_sentences)), torch.device("cpu")), session


def onnx_output(session, batch: int) -> torch.Tensor:
    """The ONNX embeddings of the benchmark batch in float64 (as :func:`cases.embed_output`)."""
    from elmo_fast.export import run_onnx

    return run_onnx(session, batch_to_ids(cases.sentences(batch)))[0].double()


def compiled_embedder(files: tuple[Path, Path], backend: str, device: torch.device, freezing: bool = False) -> ElmoEmbedder:
    """An embedder as :func:`cases.load_embedder` makes it, its biLM compiled with ``fullgraph=True``.

    ``freezing``: inductor's ``freezing`` option, which treats the (frozen) weights as constants (meant
    to let the compiler fold the packing of the ``cpp`` ops' weights, which otherwise runs in every call).
    """
    embedder = cases.load_embedder(files, backend, device)
    options = {"freezing": True} if freezing else None
    embedder.elmo_bilm = torch.compile(embedder.elmo_bilm, fullgraph=True, dynamic=False, options=options)
    return embedder
