"""``elmo-fast export-onnx``: the zero-state model as one ONNX graph.

:func:`add_export_onnx_command` is its adder (listed in :data:`elmo_fast.cli.COMMANDS`, the
convention of :mod:`elmo_fast.commands`); the handler returns the exit status.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from elmo_fast.commands import CliError, add_command
from elmo_fast.weights import WeightFileError


def _errors() -> tuple[type[BaseException], ...]:
    # OnnxUnavailable is a RuntimeError: listed without importing torch.onnx at parser build time
    from elmo_fast.export.onnx import OnnxUnavailable

    return (OnnxUnavailable, WeightFileError, ValueError, OSError)


def add_export_onnx_command(sub: argparse._SubParsersAction) -> None:
    """Add the ``export-onnx`` subcommand to ``sub``."""
    cmd = add_command(
        sub,
        "export-onnx",
        _export_onnx,
        errors=_errors(),
        help="export the zero-state model as one ONNX graph (char_ids -> embeddings, mask), pip install 'elmo_fast[onnx]'",
        description="Write OUTPUT, an ONNX graph of the model with state zero: input char_ids int64 (batch, tokens, 50) "
        "as batch_to_ids makes them (a model converted from ELMoForManyLangs: its lexicon's ids, as "
        "BiLm.batch_to_ids makes them); outputs embeddings float32 (batch, L + 1, tokens, 2P) as "
        "ElmoEmbedder.batch_to_embeddings returns them (padding positions 0) and mask bool (batch, tokens). "
        "Batch size and sentence length are dynamic. Without --model or --options/--weights the bundled "
        "default model is used.",
    )
    cmd.add_argument("output", type=Path, help="the .onnx file to write")
    cmd.add_argument("--options", "--options-file", dest="options", type=Path, help="options.json of the model")
    cmd.add_argument("--weights", "--weight-file", dest="weights", type=Path, help="weights.hdf5 of the model")
    cmd.add_argument("--model", default=None, help="a model name (`elmo-fast models list`) or folder, fetched on first use")
    cmd.add_argument("--offline", action="store_true", help="with --model: no network, use the cache only")
    cmd.add_argument("--opset", type=int, default=None, help="ONNX opset (default: elmo_fast.export.onnx.OPSET)")
    cmd.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    cmd.add_argument("--no-check", action="store_true", help="skip onnx.checker on the written file")


def _model_files(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """``(options, weights)`` from --options/--weights or --model (both None: the bundled model)."""
    if (args.options is None) != (args.weights is None):
        raise CliError("give both --options and --weights, or neither (bundled default model)")
    if args.offline and args.model is None:
        raise CliError("--offline goes with --model")
    if args.model is None:
        return args.options, args.weights
    if args.options is not None:
        raise CliError("give --model or --options/--weights, not both")
    from elmo_fast.models import resolve

    return resolve(args.model, offline=args.offline or None)


def _export_onnx(args: argparse.Namespace) -> int:
    from elmo_fast.export.onnx import OPSET, export_onnx, model_weights

    if args.output.exists() and not args.overwrite:
        raise CliError(f"{args.output} exists; pass --overwrite to replace it")
    weights = model_weights(*_model_files(args))
    path = export_onnx(args.output, weights, opset=args.opset or OPSET, check=not args.no_check)
    print(f"wrote {path}", file=sys.stderr)
    return 0
