"""``elmo-fast export-onnx``: the zero-state model as one ONNX graph.

:func:`add_export_commands` adds it to the ``elmo-fast`` parser; it sets ``handler`` to the function
that runs it and returns the exit status.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_export_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``export-onnx`` subcommand to ``sub``."""
    cmd = sub.add_parser(
        "export-onnx",
        help="export the zero-state model as one ONNX graph (char_ids -> embeddings, mask), pip install 'elmo_fast[onnx]'",
        description="Write OUTPUT, an ONNX graph of the model with state zero: input char_ids int64 (batch, tokens, 50) "
        "as batch_to_ids makes them; outputs embeddings float32 (batch, L + 1, tokens, 2P) as "
        "ElmoEmbedder.batch_to_embeddings returns them (padding positions 0) and mask bool (batch, tokens). "
        "Batch size and sentence length are dynamic. Without --options/--weights the bundled default model is used.",
    )
    cmd.add_argument("output", type=Path, help="the .onnx file to write")
    # Model selection: --options/--weights, or neither for the bundled model. A named-model option
    # (--model NAME) resolves to these two files and goes through the same _weights() below.
    cmd.add_argument("--options", "--options-file", dest="options", type=Path, help="options.json of the model")
    cmd.add_argument("--weights", "--weight-file", dest="weights", type=Path, help="weights.hdf5 of the model")
    cmd.add_argument("--opset", type=int, default=None, help="ONNX opset (default: elmo_fast.export.onnx.OPSET)")
    cmd.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    cmd.add_argument("--no-check", action="store_true", help="skip onnx.checker on the written file")
    cmd.set_defaults(handler=_export_onnx)


def _weights(args: argparse.Namespace):
    from elmo_fast.export.onnx import model_weights

    return model_weights(args.options, args.weights)


def _export_onnx(args: argparse.Namespace) -> int:
    from elmo_fast.export.onnx import OPSET, OnnxUnavailable, export_onnx
    from elmo_fast.weights import WeightFileError

    try:
        if args.output.exists() and not args.overwrite:
            raise ValueError(f"{args.output} exists; pass --overwrite to replace it")
        path = export_onnx(args.output, _weights(args), opset=args.opset or OPSET, check=not args.no_check)
    except (OnnxUnavailable, WeightFileError, ValueError, OSError) as exc:
        print(f"elmo-fast export-onnx: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}", file=sys.stderr)
    return 0
