"""``elmo-fast embed --input-format fasta``: the protein options of the ``embed`` command."""
from __future__ import annotations

import argparse
import sys

from elmo_fast.fasta import KEY_MODES
from elmo_fast.jobs.fasta import DEFAULT_MAX_TOKENS, DEFAULT_WINDOW_RESIDUES

# Text-only options of `embed` that mean nothing for FASTA input, refused rather than ignored.
_TEXT_ONLY = {"use_sentence_keys": "--use-sentence-keys", "forget_sentences": "--forget-sentences", "no_bucket": "--no-bucket"}
_FASTA_ONLY = {"per_protein": "--per-protein", "key_by": "--key-by", "checkpoint_residues": "--checkpoint-residues"}


def add_fasta_arguments(embed: argparse.ArgumentParser) -> None:
    """The ``--input-format`` switch and the FASTA options of ``elmo-fast embed``."""
    group = embed.add_argument_group("proteins (--input-format fasta; pip install 'elmo_fast[fasta]')")
    group.add_argument(
        "--input-format",
        choices=("text", "fasta"),
        default="text",
        help="text: one sentence per line (default); fasta: protein sequences, one dataset per record keyed by "
        "its id, residues as tokens, --state zero by default, batches of --max-tokens residues "
        f"(default {DEFAULT_MAX_TOKENS})",
    )
    group.add_argument(
        "--per-protein",
        action="store_true",
        default=None,
        help="write SeqVec's per-protein vector (sum over layers, mean over residues: (2P,)) instead of per-residue arrays",
    )
    group.add_argument(
        "--key-by",
        choices=KEY_MODES,
        default=None,
        help="dataset names: the record id with '%%' and '/' percent-escaped (default), or the sequence's MD5 "
        "(bio_embeddings' default keys)",
    )
    group.add_argument(
        "--checkpoint-residues",
        type=int,
        default=None,
        metavar="N",
        help=f"residues per checkpointed segment, sorted and batched together (default {DEFAULT_WINDOW_RESIDUES})",
    )


def check_input_format(args: argparse.Namespace) -> None:
    """Refuse options of the other input format; set ``--state``'s default for this one."""
    fasta = args.input_format == "fasta"
    unused = _TEXT_ONLY if fasta else _FASTA_ONLY
    given = [flag for name, flag in unused.items() if getattr(args, name) not in (None, False)]
    if given:
        other = "text" if fasta else "fasta"
        raise ValueError(f"{', '.join(given)}: only with --input-format {other} (this run reads {args.input_format})")
    if args.state is None:
        args.state = "zero" if fasta else "carry"


def embed_fasta_command(args: argparse.Namespace, embedder) -> int:
    """Run ``elmo-fast embed --input-format fasta`` with an embedder built from the command's options."""
    from elmo_fast.jobs.fasta import run_embed_fasta

    run_embed_fasta(
        embedder,
        args.input,
        args.output,
        output_format=args.format,
        per_protein=bool(args.per_protein),
        key_by=args.key_by or "id",
        batch_size=args.batch_size,
        max_tokens=DEFAULT_MAX_TOKENS if args.max_tokens is None else args.max_tokens,
        window_residues=DEFAULT_WINDOW_RESIDUES if args.checkpoint_residues is None else args.checkpoint_residues,
        resume=args.resume,
        progress=not args.quiet,
    )
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
