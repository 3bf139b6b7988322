"""ONNX export of the zero-state model (:class:`~elmo_fast.export.graph.EmbeddingsGraph`) and running it.

Exporter: ``torch.onnx.export(..., dynamo=True)`` — ``torch.export`` then onnxscript's translation
(the ``[onnx]`` extra installs ``onnx``, ``onnxscript`` and ``onnxruntime``). The TorchScript
exporter (``dynamo=False``) is deprecated in torch 2.13 and would need the time loop written as a
scripted loop; the dynamo exporter translates the graph's ``scan`` into one ONNX ``Scan`` node per
biLSTM layer, so batch size and sentence length stay dynamic.

The ONNX graph has one input, ``char_ids`` int64 ``(batch, tokens, 50)`` (for a model converted
from ELMoForManyLangs: its lexicon's ids, ``(batch, tokens, options.id_width)``, as
``BiLm.batch_to_ids`` makes them), and two outputs,
``embeddings`` float32 ``(batch, L + 1, tokens, 2P)`` (padding positions 0) and ``mask`` bool
``(batch, tokens)``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from elmo_fast.export.graph import EmbeddingsGraph
from elmo_fast.weights import ElmoOptions, ElmoWeights, PathLike, load_weights

logger = logging.getLogger(__name__)

INPUT_NAMES: tuple[str, ...] = ("char_ids",)
OUTPUT_NAMES: tuple[str, ...] = ("embeddings", "mask")
# ONNX opset of the exported graph (Scan with batch-free scan inputs: opset >= 9; 18 is what
# onnxscript's translations target by default).
OPSET: int = 18
INSTALL_HINT = "pip install 'elmo_fast[onnx]' (onnx, onnxscript, onnxruntime)"


class OnnxUnavailable(RuntimeError):
    """The ``[onnx]`` extra is not installed; the message says how to install it."""


def require_onnx(*modules: str) -> None:
    """Import ``modules`` (default: onnx, onnxscript) or raise :class:`OnnxUnavailable` naming the extra."""
    import importlib

    for module in modules or ("onnx", "onnxscript"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise OnnxUnavailable(f"{module} is needed for ONNX export/inference ({exc}); {INSTALL_HINT}") from None


def model_weights(options_file: PathLike | None = None, weight_file: PathLike | None = None) -> ElmoWeights:
    """The weights of ``options_file`` + ``weight_file``, or of the bundled default model when both are None."""
    if (options_file is None) != (weight_file is None):
        raise ValueError("give both options_file and weight_file, or neither (for the bundled default model)")
    if options_file is None:
        from elmo_fast.default_model import default_model_files

        options_file, weight_file = default_model_files()
    return load_weights(options_file, weight_file)


def example_char_ids(batch: int = 2, tokens: int = 3, options: ElmoOptions | None = None) -> torch.Tensor:
    """Character ids of a small mixed-length batch, the example input the exporter traces with.

    For a model with a character lexicon (``options.lexicon_file``, converted from ELMoForManyLangs)
    the ids are its lexicon's, ``(batch, tokens, options.id_width)``; otherwise bilm-tf's.
    """
    sentences = [["word"] * tokens] + [["a"] * max(1, tokens - 1 - k) for k in range(batch - 1)]
    if options is not None and options.lexicon_file is not None:
        from elmo_fast.reference.lexicon_ids import load_lexicon

        return load_lexicon(options.lexicon_file, options.bos_ids, options.eos_ids).batch_to_ids(sentences)
    from elmo_fast.inputs import batch_to_ids

    return batch_to_ids(sentences)


def export_onnx(
    output: PathLike,
    weights: ElmoWeights,
    *,
    opset: int = OPSET,
    check: bool = True,
) -> Path:
    """Write the zero-state model of ``weights`` to ``output`` as one ONNX graph; returns the path.

    The weights are stored inside the file (models over 2 GB would need external data; the original
    ELMo is 360 MB). With ``check``, ``onnx.checker.check_model`` runs on the written file.
    """
    require_onnx()
    output = Path(output)
    model = EmbeddingsGraph(weights).eval()
    # torch's exporter warns that torchvision's ops cannot be registered when torchvision is absent
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch, tokens = torch.export.Dim("batch"), torch.export.Dim("tokens")
    with torch.no_grad():
        program = torch.onnx.export(
            model,
            (example_char_ids(options=weights.options),),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: batch, 1: tokens},),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(output), external_data=False)
    if check:
        check_onnx(output)
    logger.info("wrote %s (%d bytes)", output, output.stat().st_size)
    return output


def check_onnx(path: PathLike) -> None:
    """``onnx.checker.check_model`` with full shape inference on the file at ``path`` (raises when invalid)."""
    require_onnx("onnx")
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def onnx_session(path: PathLike, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU for the exported file (``threads``: intra-op threads)."""
    require_onnx("onnxruntime")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, char_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an exported model: int64 ``(B, T, 50)`` ids -> ``(embeddings, mask)`` as torch tensors."""
    embeddings, mask = session.run(list(OUTPUT_NAMES), {INPUT_NAMES[0]: char_ids.to("cpu", torch.int64).numpy()})
    return torch.from_numpy(embeddings), torch.from_numpy(mask)
