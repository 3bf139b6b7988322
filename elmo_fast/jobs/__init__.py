"""File jobs: embed a text file (or a folder of them) into AllenNLP's hdf5 layout, resumably.

The public interface, for both engines:

- :func:`check_job_options` checks the options every job shares, once, at the public boundary
  (:meth:`elmo_fast.ElmoEmbedder.embed_file`, :func:`embed_file_ray`); the layers below trust them;
- :func:`build_spec` builds the :class:`JobSpec` (what a resumed run must match);
- :func:`run_embed_file` runs the job in this process (``engine="local"``), :func:`embed_file_ray`
  on a Ray cluster (``engine="ray"``); both write the same segments (:mod:`elmo_fast.jobs.segments`)
  and merge them the same way;
- :func:`run_embed_fasta` embeds a protein FASTA file (one dataset per record, bio_embeddings'
  layout) through the same segments, and :func:`embed_pairs` embeds ``(id, sequence)`` pairs lazily.

Modules: :mod:`~elmo_fast.jobs.lines` (reading and checking the corpus), :mod:`~elmo_fast.jobs.spec`
(options and spec), :mod:`~elmo_fast.jobs.segments` (the checkpoint folder and the merge),
:mod:`~elmo_fast.jobs.local` and :mod:`~elmo_fast.jobs.ray_engine` (the two engines), :mod:`~elmo_fast.jobs.fasta`
(proteins; the FASTA reader is :mod:`elmo_fast.fasta`). None of them
imports the embedder at import time except the Ray engine's workers, which build their own.
"""
from elmo_fast.jobs.fasta import FastaJobSpec, embed_pairs, reduce_per_protein, run_embed_fasta
from elmo_fast.jobs.lines import ENCODING_ERRORS, input_files, read_lines, scan_lines
from elmo_fast.jobs.local import embed_records, run_embed_file
from elmo_fast.jobs.ray_engine import (
    CARRY_REASON,
    ENGINES,
    RAY_STATES,
    RayEmbedReport,
    RayJobFailed,
    RayUnavailable,
    embed_file_ray,
    require_ray,
)
from elmo_fast.jobs.segments import ResumeError
from elmo_fast.jobs.spec import OUTPUT_FORMATS, JobSpec, RayJobSpec, build_spec, check_job_options, model_fingerprint

__all__ = [
    "CARRY_REASON",
    "ENCODING_ERRORS",
    "ENGINES",
    "FastaJobSpec",
    "OUTPUT_FORMATS",
    "RAY_STATES",
    "JobSpec",
    "RayEmbedReport",
    "RayJobFailed",
    "RayJobSpec",
    "RayUnavailable",
    "ResumeError",
    "build_spec",
    "check_job_options",
    "embed_file_ray",
    "embed_pairs",
    "embed_records",
    "input_files",
    "model_fingerprint",
    "read_lines",
    "reduce_per_protein",
    "require_ray",
    "run_embed_fasta",
    "run_embed_file",
    "scan_lines",
]
