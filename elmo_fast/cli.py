"""``elmo-fast`` command line: ``embed`` a text file into hdf5, ``env`` report."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="elmo-fast", description="Fast, faithful ELMo embeddings.")
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser(
        "embed",
        help="embed a text file (one whitespace-tokenised sentence per line) into hdf5",
        description="Embed INPUT (one whitespace-tokenised sentence per line) into OUTPUT, an hdf5 file "
        "laid out as AllenNLP's `elmo` command writes it. Without --options/--weights the bundled "
        "default model is used.",
    )
    embed.add_argument("input", type=Path, help="input text file (UTF-8), one sentence per line")
    embed.add_argument("output", type=Path, help="output hdf5 file")
    embed.add_argument("--options", "--options-file", dest="options", type=Path, help="options.json of the model")
    embed.add_argument("--weights", "--weight-file", dest="weights", type=Path, help="weights.hdf5 of the model")
    fmt = embed.add_mutually_exclusive_group()
    fmt.add_argument("--all", dest="format", action="store_const", const="all", help="all layers (default)")
    fmt.add_argument("--top", dest="format", action="store_const", const="top", help="top layer only")
    fmt.add_argument("--average", dest="format", action="store_const", const="average", help="average of the layers")
    embed.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default 64)")
    embed.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    embed.add_argument("--cuda-device", type=int, default=-1, help="AllenNLP-style GPU index (-1 = CPU)")
    embed.add_argument(
        "--state",
        choices=("carry", "zero"),
        default="carry",
        help="carry: AllenNLP's stateful behaviour (default); zero: every sentence independent",
    )
    embed.add_argument("--backend", default="auto", help="auto (default), cuda, triton, cpp or ref")
    embed.add_argument("--forget-sentences", action="store_true", help="do not write the sentence_to_index map")
    embed.add_argument("--use-sentence-keys", action="store_true", help="key datasets by sentence, not line number")
    embed.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    embed.add_argument("--quiet", action="store_true", help="no progress bar")
    embed.set_defaults(format="all")

    sub.add_parser("env", help="print versions and which backends loaded (and why the others did not)")
    from elmo_fast.train.cli import add_train_commands

    add_train_commands(sub)
    return parser


def _embed(args: argparse.Namespace) -> int:
    from elmo_fast.embedder import ElmoEmbedder

    if (args.options is None) != (args.weights is None):
        raise SystemExit("elmo-fast embed: give both --options and --weights, or neither (bundled default model)")
    if not args.input.is_file():
        raise SystemExit(f"elmo-fast embed: input file {args.input} not found")
    if args.output.exists() and not args.overwrite:
        raise SystemExit(f"elmo-fast embed: {args.output} exists; pass --overwrite to replace it")
    if args.batch_size < 1:
        raise SystemExit(f"elmo-fast embed: --batch-size must be positive, got {args.batch_size}")
    device = args.device or (f"cuda:{args.cuda_device}" if args.cuda_device >= 0 else "cpu")
    embedder = ElmoEmbedder(args.options, args.weights, state=args.state, backend=args.backend, device=device)
    embedder.embed_file(
        args.input,
        args.output,
        output_format=args.format,
        batch_size=args.batch_size,
        forget_sentences=args.forget_sentences,
        use_sentence_keys=args.use_sentence_keys,
        progress=not args.quiet,
    )
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``elmo-fast`` console script and ``python -m elmo_fast``."""
    args = _build_parser().parse_args(argv)
    if hasattr(args, "handler"):
        return args.handler(args)
    if args.command == "env":
        from elmo_fast import env_report

        print(env_report())
        return 0
    from elmo_fast._backends import BackendUnavailable
    from elmo_fast.weights import WeightFileError

    try:
        return _embed(args)
    except (WeightFileError, BackendUnavailable, ValueError, UnicodeDecodeError) as exc:
        print(f"elmo-fast embed: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
