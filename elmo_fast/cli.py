"""``elmo-fast`` command line: ``embed`` a text file into hdf5, ``probe``, ``serve``, ``env``, the
training commands, ``models`` / ``convert`` (:mod:`elmo_fast.models.cli`) and ``export-onnx``
(:mod:`elmo_fast.export.cli`).

Every subcommand is an ``add_<name>_command(sub)`` function listed in :data:`COMMANDS` (the
convention is in :mod:`elmo_fast.commands`): to add one, write its adder and handler and append the
adder here.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from elmo_fast._backends import BackendUnavailable
from elmo_fast.commands import (
    CliError,
    add_command,
    add_logging_flags,
    add_model_arguments,
    add_model_name_arguments,
    add_weight_precision_argument,
    check_model_files,
    configure_logging,
    run_handler,
)
from elmo_fast.export.cli import add_export_onnx_command
from elmo_fast.fasta_cli import add_fasta_arguments, check_input_format, embed_fasta_command
from elmo_fast.jobs.segments import ResumeError
from elmo_fast.models.cli import add_convert_command, add_models_command
from elmo_fast.train.cli import add_train_commands
from elmo_fast.weights import WeightFileError

__all__ = ["COMMANDS", "CliError", "build_parser", "main"]

# what embed, probe and serve report as one line (exit status 2) rather than a traceback
FILE_ERRORS = (WeightFileError, BackendUnavailable, ResumeError, ValueError, TypeError, OSError)
# embed also reports a missing optional dependency (Biopython for --input-format fasta) as one line
EMBED_ERRORS = (*FILE_ERRORS, ImportError)


def add_embed_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast embed INPUT OUTPUT``."""
    embed = add_command(
        sub,
        "embed",
        _embed,
        errors=EMBED_ERRORS,
        help="embed a text file (one whitespace-tokenised sentence per line), or a FASTA file of proteins, into hdf5",
        description="Embed INPUT (one whitespace-tokenised sentence per line) into OUTPUT, an hdf5 file "
        "laid out as AllenNLP's `elmo` command writes it. Without --options/--weights the bundled "
        "default model is used.",
    )
    embed.add_argument(
        "input", type=Path, help="input text file (UTF-8), one sentence per line; --engine ray also takes a directory"
    )
    embed.add_argument("output", type=Path, help="output hdf5 file")
    add_model_arguments(
        embed, device_default=None, device_help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)"
    )
    add_model_name_arguments(embed)
    _add_embed_run_arguments(embed)
    _add_embed_file_arguments(embed)
    ray = embed.add_argument_group("distributed (pip install 'elmo_fast[ray]')")
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a pool of Ray workers, one model each (--state zero or warm)",
    )
    ray.add_argument("--num-workers", type=int, default=None, help="Ray workers (default: one per GPU, else per CPU)")
    ray.add_argument("--address", default=None, help="Ray cluster to join (default: a new local instance, or RAY_ADDRESS)")
    embed.set_defaults(format="all")
    add_fasta_arguments(embed)


def _add_embed_run_arguments(embed: argparse.ArgumentParser) -> None:
    """How the model runs: batches, GPU index, state, precision (--backend/--device: :func:`add_model_arguments`)."""
    fmt = embed.add_mutually_exclusive_group()
    fmt.add_argument("--all", dest="format", action="store_const", const="all", help="all layers (default)")
    fmt.add_argument("--top", dest="format", action="store_const", const="top", help="top layer only")
    fmt.add_argument("--average", dest="format", action="store_const", const="average", help="average of the layers")
    embed.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default 64)")
    embed.add_argument("--cuda-device", type=int, default=-1, help="AllenNLP-style GPU index (-1 = CPU)")
    embed.add_argument(
        "--state",
        choices=("carry", "zero", "warm"),
        default=None,
        help="carry: AllenNLP's stateful behaviour (default for text); zero: every sentence independent, from zero "
        "state (default for --input-format fasta); warm: independent, from one fixed warmed-up state",
    )
    add_weight_precision_argument(embed)


def _add_embed_file_arguments(embed: argparse.ArgumentParser) -> None:
    """What is written and how the file is read: keys, overwrite/resume, encoding, segments, batching."""
    embed.add_argument("--forget-sentences", action="store_true", help="do not write the sentence_to_index map")
    embed.add_argument("--use-sentence-keys", action="store_true", help="key datasets by sentence, not line number")
    embed.add_argument("--overwrite", action="store_true", help="replace OUTPUT (and any interrupted run's OUTPUT.parts/)")
    embed.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.parts/")
    embed.add_argument(
        "--encoding-errors",
        choices=("strict", "replace", "ignore"),
        default="strict",
        help="undecodable bytes: error naming the line (default), replace with U+FFFD, or drop",
    )
    embed.add_argument(
        "--checkpoint-every", type=int, default=4096, metavar="N", help="sentences per checkpointed segment (default 4096)"
    )
    embed.add_argument(
        "--no-bucket",
        action="store_true",
        help="batch lines in file order, not by length (--state zero/warm bucket by default: less padding, "
        "vectors equal up to float32 rounding; carry never reorders)",
    )
    embed.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        metavar="N",
        help="at most N padded tokens per batch (sentences x longest sentence); needs --state zero or warm",
    )
    embed.add_argument(
        "--max-sentence-length",
        type=int,
        default=None,
        metavar="N",
        help="refuse sentences of more than N tokens with an error naming the limit (default 100000)",
    )
    embed.add_argument("--quiet", action="store_true", help="no progress bar")


def add_probe_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast probe``."""
    probe = add_command(
        sub,
        "probe",
        _probe,
        errors=FILE_ERRORS,
        help="measure what each layer knows (part of speech, word sense) on WordNet's example sentences",
        description="Build labelled data from WordNet's example sentences (Debian: apt-get install wordnet-base), "
        "embed it and report, on held-out words, part-of-speech probe accuracy and nearest-neighbour word-sense "
        "accuracy per layer and for a learned mix; writes probe.json and probe.png.",
    )
    add_model_arguments(probe)
    probe.add_argument("--wordnet-dir", type=Path, default=Path("/usr/share/wordnet"), help="WordNet dict folder")
    probe.add_argument("--out-dir", type=Path, default=Path("probe_results"), help="where to write probe.json/png")
    probe.add_argument("--state", choices=("zero", "warm"), default="zero", help="LSTM start state (default zero)")
    probe.add_argument("--max-items", type=int, default=None, help="subsample each dataset (quick runs)")
    probe.add_argument("--seed", type=int, default=0)


def add_serve_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast serve``."""
    serve = add_command(
        sub,
        "serve",
        _serve,
        errors=FILE_ERRORS,
        help="HTTP embedding service with dynamic batching (pip install 'elmo_fast[serve]')",
        description="Serve POST /embed, /health, /metrics, OpenAPI docs at /docs and a similarity page at /. "
        "Concurrent requests are batched together up to --max-batch-tokens or --max-wait-ms; with --state zero "
        "or warm every sentence still gets its own vectors. SIGTERM finishes in-flight requests and exits 0.",
    )
    add_model_arguments(serve)
    add_model_name_arguments(serve)
    add_weight_precision_argument(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--state", choices=("zero", "warm", "carry"), default="zero", help="zero (default) or warm; carry is refused")
    serve.add_argument("--max-batch-tokens", type=int, default=2048, metavar="N", help="padded tokens per forward (default 2048)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS", help="wait for company per batch (default 5)")
    serve.add_argument("--max-queue-sentences", type=int, default=1024, metavar="N", help="admitted sentences before 503 (default 1024)")
    serve.add_argument("--max-request-sentences", type=int, default=64, metavar="N", help="sentences per request (default 64)")
    serve.add_argument("--max-sentence-length", type=int, default=256, metavar="N", help="tokens per sentence (default 256)")
    serve.add_argument(
        "--log-level",
        dest="server_log_level",
        default=None,
        choices=SERVER_LOG_LEVELS,
        help="uvicorn's and the library's log level (default: from --verbose/--quiet, else info)",
    )


SERVER_LOG_LEVELS = ("debug", "info", "warning", "error")


def add_env_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast env``."""
    add_command(sub, "env", _env, help="print versions and which backends loaded (and why the others did not)")


COMMANDS = (
    add_embed_command,
    add_probe_command,
    add_serve_command,
    add_env_command,
    add_train_commands,
    add_models_command,
    add_convert_command,
    add_export_onnx_command,
)
"""Every subcommand's adder, in the order ``elmo-fast --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``elmo-fast`` parser: the logging flags and every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="elmo-fast", description="Fast, faithful ELMo embeddings.")
    add_logging_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _check_output(args: argparse.Namespace) -> None:
    parts = args.output.with_name(args.output.name + ".parts")
    if args.resume and args.overwrite:
        raise CliError("--resume and --overwrite exclude each other")
    if args.output.exists() and not args.overwrite:
        hint = " (the run is already complete)" if args.resume and not parts.exists() else ""
        raise CliError(f"{args.output} exists{hint}; pass --overwrite to replace it")
    if parts.exists() and not args.resume:
        if not args.overwrite:
            raise CliError(
                f"{parts} holds an interrupted run; pass --resume to continue it or --overwrite to start over"
            )
        shutil.rmtree(parts)
    if args.batch_size < 1 or args.checkpoint_every < 1:
        raise CliError("--batch-size and --checkpoint-every must be positive")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise CliError("--max-tokens must be positive")
    if args.max_tokens is not None and args.state == "carry":
        raise CliError(
            "--max-tokens needs --state zero or warm: with carry (the default) each batch row starts from the "
            "state the same row of the previous batch left, so batches are --batch-size lines in file order"
        )


def _file_job_options(args: argparse.Namespace) -> dict:
    """The options both engines' file jobs take, from ``embed``'s arguments."""
    return dict(
        output_format=args.format, batch_size=args.batch_size, forget_sentences=args.forget_sentences,
        use_sentence_keys=args.use_sentence_keys, resume=args.resume, encoding_errors=args.encoding_errors,
        segment_size=args.checkpoint_every, max_tokens=args.max_tokens, progress=not args.quiet,
    )


def _embed_ray(args: argparse.Namespace) -> int:
    """``--engine ray``: :func:`elmo_fast.jobs.embed_file_ray` with the command's options."""
    from elmo_fast.jobs import CARRY_REASON, RayJobFailed, RayUnavailable, embed_file_ray, require_ray

    if args.max_sentence_length is not None:
        raise CliError("--max-sentence-length does not apply to --engine ray (its workers use the default limit)")
    if args.state == "carry":
        raise CliError(f"--engine ray needs --state zero or --state warm, not carry (the default): {CARRY_REASON}")
    if args.device is not None or args.cuda_device >= 0:
        raise CliError(
            "--device/--cuda-device do not apply to --engine ray: workers use a GPU each where the cluster has GPUs"
        )
    if not args.input.exists():
        raise CliError(f"input {args.input} not found")
    try:
        require_ray()
    except RayUnavailable as exc:
        raise CliError(str(exc)) from None
    _check_output(args)
    try:
        report = embed_file_ray(
            args.input, args.output, args.options, args.weights, state=args.state, backend=args.backend,
            weight_precision=args.weight_precision, bucket=not args.no_bucket, num_workers=args.num_workers, address=args.address, **_file_job_options(args),
        )
    except RayJobFailed as exc:
        raise CliError(str(exc)) from None
    reused = f", {report.reused} reused from the interrupted run" if report.reused else ""
    print(f"wrote {args.output} ({report.segments} segments on {report.workers} Ray workers{reused})", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    try:
        return _embed_checked(args)
    except KeyboardInterrupt:
        print("elmo-fast embed: interrupted; completed segments are kept, continue with --resume", file=sys.stderr)
        return 130


def _embed_checked(args: argparse.Namespace) -> int:
    from elmo_fast.embedder import ElmoEmbedder

    _resolve_model_name(args, progress=not args.quiet)
    check_input_format(args)
    if args.input_format == "fasta" and args.engine == "ray":
        raise CliError("--input-format fasta runs on the local engine (drop --engine ray)")
    if args.engine == "ray":
        return _embed_ray(args)
    if args.num_workers is not None or args.address is not None:
        raise CliError("--num-workers and --address need --engine ray")
    if args.input.is_dir():
        raise CliError(f"{args.input} is a directory; directories are read by --engine ray (or join the files into one)")
    if not args.input.is_file():
        raise CliError(f"input file {args.input} not found")
    _check_output(args)
    device = args.device or (f"cuda:{args.cuda_device}" if args.cuda_device >= 0 else "cpu")
    limit = {} if args.max_sentence_length is None else {"max_sentence_length": args.max_sentence_length}
    embedder = ElmoEmbedder(
        args.options,
        args.weights,
        state=args.state,
        backend=args.backend,
        device=device,
        weight_precision=args.weight_precision,
        **limit,
    )
    if args.input_format == "fasta":
        return embed_fasta_command(args, embedder)
    embedder.embed_file(args.input, args.output, bucket=False if args.no_bucket else None, **_file_job_options(args))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _probe(args: argparse.Namespace) -> int:
    from elmo_fast.embedder import ElmoEmbedder
    from elmo_fast.probe import run_probe

    check_model_files(args)
    embedder = ElmoEmbedder(args.options, args.weights, state=args.state, backend=args.backend, device=args.device)
    name = str(args.weights) if args.weights else "bundled default model"
    report = run_probe(embedder, name, args.out_dir, args.wordnet_dir, seed=args.seed, max_items=args.max_items)
    for task in ("pos", "senses"):
        result = report[task]
        cells = [f"{k.replace('layer_', 'layer ')}: {v:.3f}" for k, v in result.items() if k.startswith(("layer_", "mix", "baseline")) and isinstance(v, float)]
        print(f"{task:7s} " + "  ".join(cells))
        if "answerable_only" in result:
            only = "  ".join(f"{k.replace('layer_', 'layer ')}: {v:.3f}" for k, v in result["answerable_only"].items())
            print(
                f"        answerable {result['answerable_items']} of {result['scored_items']} scored items "
                f"(accuracy ceiling {result['accuracy_ceiling']:.3f}); on answerable items only: {only}"
            )
    print(f"wrote {args.out_dir / 'probe.json'}" + (f" and {report['plot']}" if report["plot"] else " (no plot: pip install matplotlib)"))
    return 0


def _resolve_model_name(args: argparse.Namespace, *, progress: bool = True) -> None:
    """Check --options/--weights, then turn ``--model NAME`` into them (downloading on first use)."""
    check_model_files(args)
    if args.model is None:
        return
    if args.options is not None:
        raise CliError("give --model or --options/--weights, not both")
    from elmo_fast.models import resolve

    args.options, args.weights = resolve(args.model, offline=args.offline or None, progress=progress)


def _serve(args: argparse.Namespace) -> int:
    """``elmo-fast serve``: :func:`elmo_fast.serve.run_server` with the command's options."""
    from elmo_fast.batching import CARRY_REASON

    if args.state == "carry":
        raise CliError(f"--state carry cannot be served: {CARRY_REASON}; use --state zero or warm")
    _resolve_model_name(args, progress=True)
    try:
        from elmo_fast.serve import ServeConfig, run_server
    except ImportError as exc:
        raise CliError(f"{exc}; install the server with: pip install 'elmo_fast[serve]'") from None
    from elmo_fast.embedder import ElmoEmbedder

    level = args.server_log_level or logging.getLevelName(args.log_level).lower()
    if args.server_log_level is not None:
        configure_logging(getattr(logging, level.upper()))
    config = ServeConfig(
        max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms,
        max_queue_sentences=args.max_queue_sentences,
        max_request_sentences=args.max_request_sentences,
        max_sentence_length=args.max_sentence_length,
    )
    embedder = ElmoEmbedder(
        args.options,
        args.weights,
        state=args.state,
        backend=args.backend,
        device=args.device,
        max_sentence_length=args.max_sentence_length,
        weight_precision=args.weight_precision,
    )
    name = str(args.weights) if args.weights else "bundled default model"
    return run_server(embedder, config, host=args.host, port=args.port, model_name=name, log_level=level)


def _env(args: argparse.Namespace) -> int:
    from elmo_fast import env_report

    print(env_report())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``elmo-fast`` console script and ``python -m elmo_fast``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return run_handler(args)


if __name__ == "__main__":
    sys.exit(main())
