"""How an ``elmo-fast`` subcommand is written: one ``add_<name>_command(sub)`` function per command.

A command module defines a handler ``run(args) -> exit status`` and an adder that builds its parser
with :func:`add_command`; ``elmo_fast/cli.py`` lists the adders in ``COMMANDS``. So a new command
(``models``, ``convert``, ``serve``, ``export-onnx``, ...) is one adder and one handler, plus one
line in ``COMMANDS``::

    def add_serve_command(sub: argparse._SubParsersAction) -> None:
        parser = add_command(sub, "serve", _serve, help="...", errors=(OSError, ValueError))
        parser.add_argument("--port", type=int, default=8000)

:func:`~elmo_fast.cli.main` runs the handler; an exception listed in ``errors`` (or :class:`CliError`)
becomes one line ``elmo-fast NAME: error: ...`` on stderr and exit status 2, anything else a traceback.
Library code logs through :mod:`logging` (loggers named after their modules, under ``elmo_fast``);
:func:`configure_logging` shows those records on stdout, at INFO by default (``--verbose``: DEBUG,
``--quiet``: warnings only), without breaking progress bars.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from elmo_fast.reference.quantize import WEIGHT_PRECISIONS

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A problem with the command's arguments or files, reported as one line (exit status 2)."""


def add_command(
    sub: argparse._SubParsersAction,
    name: str,
    handler: Handler,
    *,
    errors: Sequence[type[BaseException]] = (),
    **parser_kwargs: Any,
) -> argparse.ArgumentParser:
    """Add subcommand ``name``, run by ``handler(args)``; ``errors`` are reported as one line (exit 2)."""
    parser = sub.add_parser(name, **parser_kwargs)
    parser.set_defaults(handler=handler, errors=(CliError, *errors))
    return parser


def add_weight_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--weight-precision`` (``embed``, ``serve``): the storage and product precision of the weights."""
    parser.add_argument(
        "--weight-precision",
        choices=WEIGHT_PRECISIONS,
        default="fp32",
        help="storage of the biLSTM, highway and projection weights: fp32 (default), bf16 or int8 (int8 keeps "
        "the two projections in bf16); the cpp backend multiplies in that precision (faster, small error; "
        "see elmo_fast.reference.lowp)",
    )


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    device_default: str | None = "cpu",
    device_help: str = "torch device (default cpu)",
) -> None:
    """The model arguments every model-running command shares: --options, --weights, --backend, --device."""
    parser.add_argument("--options", "--options-file", dest="options", type=Path, help="options.json of the model")
    parser.add_argument("--weights", "--weight-file", dest="weights", type=Path, help="weights.hdf5 of the model")
    parser.add_argument("--backend", default="auto", help="auto (default), cuda, triton, cpp or ref")
    parser.add_argument("--device", default=device_default, help=device_help)


def check_model_files(args: argparse.Namespace) -> None:
    """Both of --options/--weights or neither (the bundled default model); else :class:`CliError`."""
    if (args.options is None) != (args.weights is None):
        raise CliError("give both --options and --weights, or neither (bundled default model)")


def add_model_name_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model NAME`` (a published model, `elmo-fast models list`) and ``--offline``."""
    parser.add_argument("--model", default=None, help="a model name (`elmo-fast models list`), fetched on first use")
    parser.add_argument("--offline", action="store_true", help="with --model: no network, use the cache only")


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    """``--verbose`` / ``--quiet``: the level of the library's log records shown."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                       help="show debug log records (backend choice, caches, job steps)")
    group.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                       help="show warnings and errors only")
    parser.set_defaults(log_level=logging.INFO)


class _TqdmHandler(logging.Handler):
    """Writes records to the current stdout through ``tqdm.write`` (progress bars stay intact)."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()
        except Exception:  # a handler must not raise
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Show the ``elmo_fast`` loggers' records at ``level`` and above on stdout (replaces an earlier call's)."""
    logger = logging.getLogger("elmo_fast")
    for handler in [h for h in logger.handlers if isinstance(h, _TqdmHandler)]:
        logger.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)


def run_handler(args: argparse.Namespace) -> int:
    """Run the parsed command's handler; listed errors become one line on stderr and exit status 2."""
    try:
        return args.handler(args)
    except args.errors as exc:
        print(f"elmo-fast {args.command}: error: {exc}", file=sys.stderr)
        return 2
