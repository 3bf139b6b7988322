"""``elmo-fast models list|download`` and ``elmo-fast convert manylangs|tf``.

:func:`add_models_command` and :func:`add_convert_command` add them to the ``elmo-fast`` parser with
:func:`elmo_fast.commands.add_command` (both are listed in :data:`elmo_fast.cli.COMMANDS`); an error
is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from elmo_fast.commands import CliError, add_command
from elmo_fast.models.cache import ModelUnavailable
from elmo_fast.weights import WeightFileError


def add_models_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast models list|download``."""
    models = add_command(
        sub,
        "models",
        _models,
        errors=(ModelUnavailable, ValueError),
        help="list the published models known by name, or download one into the cache",
        description="Published ELMo models by name. The cache is $ELMO_FAST_CACHE (default ~/.cache/elmo_fast).",
    )
    msub = models.add_subparsers(dest="models_command", required=True)
    listing = msub.add_parser("list", help="print the registry as a Markdown table")
    listing.add_argument("--urls", action="store_true", help="add each model's URLs and where they were found")
    download = msub.add_parser("download", help="download (and for ManyLangs models convert) a model into the cache")
    download.add_argument("name", help="a model name from `elmo-fast models list`")
    download.add_argument("--force", action="store_true", help="delete the cached copy and download again")
    download.add_argument("--offline", action="store_true", help="no network: only check the cached copy")
    download.add_argument("--quiet", action="store_true", help="no progress bar")


def add_convert_command(sub: argparse._SubParsersAction) -> None:
    """``elmo-fast convert manylangs|tf``."""
    convert = add_command(
        sub,
        "convert",
        _convert,
        errors=(WeightFileError, ValueError, OSError, ImportError),
        help="convert an ELMoForManyLangs model or a TensorFlow checkpoint to options.json + weights.hdf5",
        description="Write DEST/options.json + DEST/weights.hdf5 (and DEST/lexicon.json for ManyLangs models) "
        "that elmo_fast (and, for `tf`, AllenNLP) loads.",
    )
    csub = convert.add_subparsers(dest="convert_command", required=True)
    many = csub.add_parser("manylangs", help="an ELMoForManyLangs model folder (config.json, char.dic, *.pkl)")
    many.add_argument("src", type=Path, help="the unpacked model folder")
    many.add_argument("dest", type=Path, help="output folder")
    tf = csub.add_parser("tf", help="a bilm-tf training checkpoint or a TF-Hub elmo module (pip install 'elmo_fast[tf]')")
    tf.add_argument("checkpoint", help="checkpoint prefix or folder (a TF-Hub module folder: its variables/ checkpoint)")
    tf.add_argument("dest", type=Path, help="output folder")
    tf.add_argument("--options", type=Path, default=None, help="the model's options.json (bilm-tf writes it next to the checkpoint)")
    for p in (many, tf):
        p.add_argument("--overwrite", action="store_true", help="replace files already in DEST")


def format_table(with_urls: bool = False) -> str:
    """The registry as a Markdown table (the README's table is this output)."""
    from elmo_fast.models import list_models

    head = ["name", "language", "domain", "size", "format", "source"] + (["files", "found in"] if with_urls else [])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in list_models():
        cells = [f"`{e.name}`", e.language, e.domain, e.size, e.format, e.publisher]
        if with_urls:
            cells += ["<br>".join(f.url for f in e.files), e.source]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _models(args: argparse.Namespace) -> int:
    from elmo_fast.models import fetch, find, resolve

    if args.models_command == "list":
        print(format_table(args.urls))
        return 0
    entry = find(args.name)
    if entry is None:
        raise CliError(f"unknown model {args.name!r}; see `elmo-fast models list`")
    if args.force:
        fetch(entry, offline=args.offline, progress=not args.quiet, force=True)
    options, weights = resolve(entry.name, offline=args.offline, progress=not args.quiet)
    print(f"{entry.name}: {options.parent}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    if args.dest.exists() and any(args.dest.iterdir()) and not args.overwrite:
        raise CliError(f"{args.dest} is not empty; pass --overwrite to replace its files")
    if args.convert_command == "manylangs":
        from elmo_fast.models.manylangs import convert_manylangs

        convert_manylangs(args.src, args.dest)
    else:
        from elmo_fast.models.tf import convert_tf

        convert_tf(args.checkpoint, args.dest, options_file=args.options)
    print(f"wrote {args.dest / 'options.json'} and {args.dest / 'weights.hdf5'}")
    return 0
