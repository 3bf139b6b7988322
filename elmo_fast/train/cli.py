"""``elmo-fast train``, ``elmo-fast perplexity`` and ``elmo-fast export``.

:func:`add_train_commands` adds them to the ``elmo-fast`` parser with
:func:`elmo_fast.commands.add_command`, the convention every subcommand follows.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from elmo_fast.commands import add_command
from elmo_fast.train.config import ConfigError
from elmo_fast.weights import WeightFileError

logger = logging.getLogger(__name__)

# what the training commands report as one line (exit status 2) rather than a traceback
TRAIN_ERRORS = (ConfigError, WeightFileError, FileExistsError, FileNotFoundError, ValueError, UnicodeDecodeError)


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``perplexity`` and ``export`` subcommands to ``sub``."""
    train = add_command(
        sub,
        "train",
        _train,
        errors=TRAIN_ERRORS,
        help="pretrain a biLM from a text corpus (one sentence per line, or raw text: config input_format)",
        description="Pretrain a biLM as CONFIG (JSON, or TOML for *.toml) says; see elmo_fast.train.config for the fields. "
        "Checkpoints go to the config's output_dir; the finished model is exported to output_dir/model.",
    )
    train.add_argument("config", type=Path, help="training config (JSON, or TOML when named *.toml)")
    train.add_argument("--resume", action="store_true", help="continue output_dir/checkpoint.pt exactly")
    train.add_argument("--stop-after-minutes", type=float, default=None, help="checkpoint and stop after this long")
    train.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    ppl = add_command(
        sub,
        "perplexity",
        _perplexity,
        errors=TRAIN_ERRORS,
        help="held-out perplexity of a trained biLM (forward, backward, mean)",
        description="Perplexity of MODEL (a checkpoint.pt, a training output_dir, or an exported folder with "
        "vocab.txt and the softmax) on HELDOUT (one whitespace-tokenised sentence per line, or raw text "
        "with --input-format raw).",
    )
    ppl.add_argument("model", type=Path, help="checkpoint file, training output folder or export folder")
    ppl.add_argument("heldout", type=Path, help="held-out text, one sentence per line")
    ppl.add_argument(
        "--input-format",
        choices=("lines", "raw"),
        default="lines",
        help="lines: one whitespace-tokenised sentence per line (default); raw: running text, split into "
        "sentences and tokens as a training config's input_format \"raw\" does",
    )
    ppl.add_argument("--batch-size", type=int, default=64, help="row streams (default 64)")
    ppl.add_argument("--n-steps", type=int, default=20, help="window length (default 20)")
    ppl.add_argument(
        "--state",
        choices=("zero", "carry"),
        default="zero",
        help="zero: every sentence from zero state (default; batch-independent); carry: read the file in order "
        "as --batch-size streams with the state carried across windows and sentences, as in training",
    )
    ppl.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ppl.add_argument("--quiet", action="store_true", help="no progress bar")

    export = add_command(
        sub,
        "export",
        _export,
        errors=TRAIN_ERRORS,
        help="export a checkpoint as options.json + weights.hdf5 (original ELMo layout) + vocab.txt",
        description="Write OUTPUT/options.json, OUTPUT/weights.hdf5 (bilm-tf layout, loadable by AllenNLP) and "
        "OUTPUT/vocab.txt from CHECKPOINT. The softmax is stored as extra datasets unless --no-softmax.",
    )
    export.add_argument("checkpoint", type=Path, help="checkpoint.pt or a training output folder")
    export.add_argument("output", type=Path, help="output folder")
    export.add_argument("--no-softmax", action="store_true", help="leave the LM softmax out of weights.hdf5")


def _threads(n: int | None) -> None:
    import torch

    if n is not None:
        if n < 1:
            raise ValueError(f"--threads must be positive, got {n}")
        torch.set_num_threads(n)


def _train(args: argparse.Namespace) -> int:
    from elmo_fast.train.config import load_config
    from elmo_fast.train.trainer import train

    _threads(args.threads)
    config = load_config(args.config)
    stop = None if args.stop_after_minutes is None else 60.0 * args.stop_after_minutes
    result = train(config, resume=args.resume, progress=not args.quiet, stop_after_seconds=stop)
    loss = "" if math.isnan(result.last_loss) else f"last step's loss {result.last_loss:.4f}, "
    logger.info(
        f"{'finished' if result.finished else 'stopped'} at step {result.step}: {loss}"
        f"{result.tokens_per_second:.0f} tokens/s over {result.elapsed:.0f}s of training"
    )
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    from elmo_fast.train.checkpoint import load_language_model
    from elmo_fast.train.data import encode_corpus, read_sentences
    from elmo_fast.train.trainer import evaluate

    _threads(args.threads)
    if args.batch_size < 1 or args.n_steps < 1:
        raise ValueError("--batch-size and --n-steps must be positive")
    if not args.heldout.is_file():
        raise FileNotFoundError(f"{args.heldout}: held-out file not found")
    model, vocab = load_language_model(args.model)
    corpus = encode_corpus(read_sentences(args.heldout, args.input_format), vocab)
    print(evaluate(model, corpus, args.batch_size, args.n_steps, state=args.state, progress=not args.quiet))
    return 0


def _export(args: argparse.Namespace) -> int:
    from elmo_fast.train.checkpoint import export_model, load_language_model

    checkpoint = args.checkpoint
    if checkpoint.is_dir():
        checkpoint = checkpoint / "checkpoint.pt"
    model, vocab = load_language_model(checkpoint)
    export_model(model, vocab, args.output, include_softmax=not args.no_softmax)
    print(f"wrote {args.output}/options.json, weights.hdf5, vocab.txt", file=sys.stderr)
    return 0
