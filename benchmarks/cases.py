"""Setup factories shared by ``run.py`` and the pytest-benchmark file.

Each ``setup_*`` builds everything a case needs (model, inputs) outside the timed region and
returns a :class:`Case`: a zero-argument callable that runs the timed work once, plus the number
of real tokens it processes. The baselines are imported, never re-written: the model is loaded
through elmo_fast's public loading path from bilm-tf files, the ops come from ``elmo_fast.ops``,
and the anchor is ``torch.nn.LSTM`` itself.
"""
from __future__ import annotations

import random
import string
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from elmo_fast import ElmoEmbedder, _backends, batch_to_ids
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.ops.token_encoder import token_encoder
from elmo_fast.weights import CONFIGS, ElmoOptions, ElmoWeights, random_weights, save_weights

# The shapes of tests/fixtures/allennlp_tiny: a model that runs in milliseconds, for smoke tests.
TINY = ElmoOptions(projection_dim=16, cell_dim=32, filters=((1, 4), (2, 8), (3, 16)), n_highway=1, char_embed_dim=4)
BENCH_CONFIGS: dict[str, ElmoOptions] = {**CONFIGS, "tiny": TINY}

SENTENCE_SEED = 1234
MEAN_TOKENS = 20
ANCHOR = "torch.nn.LSTM"

# torch says this once per process; the anchor measures that default implementation on purpose.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


@dataclass
class Case:
    """One benchmark case: ``fn()`` runs the timed work once over ``tokens`` real tokens."""

    fn: Callable[[], object]
    tokens: int
    device: torch.device

    def sync(self) -> None:
        """Wait for queued device work, so a timer around ``fn`` measures all of it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def sentences(batch: int, seed: int = SENTENCE_SEED) -> list[list[str]]:
    """The first ``batch`` sentences of a fixed pool: 16 to 24 random lowercase words each (~20)."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 10))) for _ in range(2000)]
    pool = [[rng.choice(vocab) for _ in range(rng.randint(MEAN_TOKENS - 4, MEAN_TOKENS + 4))] for _ in range(max(batch, 32))]
    return pool[:batch]


def model_files(config: str, directory: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a random-weight model of ``config`` in the original bilm-tf layout; returns (options, weights)."""
    options_file, weight_file = directory / f"{config}_options.json", directory / f"{config}_weights.hdf5"
    if not weight_file.is_file():
        save_weights(random_weights(BENCH_CONFIGS[config], seed=seed), weight_file, options_file)
    return options_file, weight_file


def usable_backends(device: torch.device | str) -> tuple[list[str], dict[str, str]]:
    """Every backend of :data:`elmo_fast._backends.BACKENDS` that resolves on ``device``, and why the others do not."""
    usable, skipped = [], {}
    for backend in _backends.BACKENDS:
        try:
            usable.append(_backends.resolve(backend, device))
        except _backends.BackendUnavailable as exc:
            skipped[backend] = str(exc)
    return usable, skipped


# The compute dtypes a benchmark row can run in (``--dtypes``).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_embedder(
    files: tuple[Path, Path],
    backend: str,
    device: torch.device,
    weight_precision: str = "fp32",
    dtype: torch.dtype = torch.float32,
) -> ElmoEmbedder:
    """The model of ``files`` through the public loading path, ``state="zero"`` so every call does the same work.

    ``dtype`` other than float32 moves the model with ``.to(dtype)``, as the README says for the GPU
    backends (bf16 weights and activations; the kernels accumulate and keep the cell state in fp32).
    The token-embedding cache is off: a case repeats one batch, so the cache would serve every token
    after the warm-up and take the token encoder out of the measured time.
    """
    embedder = ElmoEmbedder(
        *files, state="zero", backend=backend, device=device, weight_precision=weight_precision, token_cache_size=0
    )
    if dtype != torch.float32:
        embedder.elmo_bilm.to(dtype)
    return embedder


def flops_per_position(options: ElmoOptions, lstm_only: bool = False) -> float:
    """Multiply-add FLOPs (2 per MAC) of the model for one position (token), the matrix products only.

    Char CNN (every width over every character window), highway (two F x F products per layer), the
    projection F -> P, and per biLSTM layer and direction the input (P x 4C), recurrent (P x 4C) and
    projection (C x P) products; ``lstm_only`` counts the biLSTM layers alone (the ``lstm`` rows).
    """
    p, c = options.projection_dim, options.cell_dim
    lstm = options.n_layers * 2 * (2 * p * 4 * c + c * p)
    if lstm_only:
        return 2.0 * lstm
    chars, d = options.max_characters_per_token, options.char_embed_dim
    cnn = sum(width * d * n * (chars - width + 1) for width, n in options.filters)
    f = options.n_filters
    highway = options.n_highway * 2 * f * f
    return 2.0 * (cnn + highway + f * p + lstm)


def setup_embed(embedder: ElmoEmbedder, batch: int) -> Case:
    """The whole model as a user runs it: ``ElmoEmbedder.batch_to_embeddings`` on ``batch`` sentences.

    Includes the character ids, the token encoder, every biLSTM layer and boundary removal.
    """
    batch_sentences = sentences(batch)
    return Case(lambda: embedder.batch_to_embeddings(batch_sentences), sum(map(len, batch_sentences)), embedder.device)


def _lstm_input(options: ElmoOptions, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random first-layer input ``(2, B, T + 2, P)`` and per-row lengths with boundaries, as the biLM sees them."""
    lengths = torch.tensor([len(s) + 2 for s in sentences(batch)], dtype=torch.int64)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(2, batch, int(lengths.max()), options.projection_dim, generator=g)
    return x.to(device), lengths.to(device), int(lengths.sum()) - 2 * batch


def setup_lstm(
    weights: ElmoWeights,
    batch: int,
    backend: str,
    device: torch.device,
    weight_precision: str = "fp32",
    dtype: torch.dtype = torch.float32,
) -> Case:
    """The biLSTM part alone: ``elmo_fast.ops.lstmp`` over every layer (clipping and residual as the model).

    ``weights`` must already live on ``device`` in ``dtype`` (e.g. ``embedder.elmo_bilm.weights()``);
    the input is cast to ``dtype``.
    """
    options = weights.options
    x, lengths, tokens = _lstm_input(options, batch, device)
    x = x.to(dtype)
    layers = [(lw.w_ih, lw.w_hh, lw.bias, lw.w_proj) for lw in weights.lstm]

    @torch.no_grad()
    def run() -> torch.Tensor:
        out = x
        for layer, params in enumerate(layers):
            out, _, _ = lstmp(
                out,
                lengths,
                *params,
                cell_clip=options.cell_clip,
                proj_clip=options.proj_clip,
                residual=layer > 0 and options.use_skip_connections,
                backend=backend,
                weight_precision=weight_precision,
            )
        return out

    return Case(run, tokens, device)


def precision_error(embedder: ElmoEmbedder, baseline: ElmoEmbedder, batch: int) -> dict[str, float]:
    """How far ``embedder`` (reduced-precision weights or bf16) lands from ``baseline`` (fp32) on the benchmark batch.

    ``rel_err``: Frobenius norm of the difference over that of the fp32 output, per biLM layer (the
    token layer and each biLSTM layer; real tokens only: padding is 0 in both), the worst layer.
    ``max_abs_err``: largest difference of any output element; ``max_elem_rel_err``: that over the
    largest magnitude of the fp32 output (worst layer). ``has_nan``: whether the output holds NaN.
    """
    return output_error(embed_output(embedder, batch), embed_output(baseline, batch))


def embed_output(embedder: ElmoEmbedder, batch: int) -> torch.Tensor:
    """The embeddings of the benchmark batch ``(B, L + 1, T, 2P)`` in float64 on the CPU."""
    out, _ = embedder.batch_to_embeddings(sentences(batch))
    return out.double().cpu()


def output_error(ours: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """The error columns of :func:`precision_error` for two outputs of :func:`embed_output`."""
    diff = ours - ref
    layers = range(ref.shape[1])
    return {
        "max_abs_err": float(diff.abs().max()),
        "rel_err": max(float(diff[:, k].norm() / ref[:, k].norm()) for k in layers),
        "max_elem_rel_err": max(float(diff[:, k].abs().max() / ref[:, k].abs().max()) for k in layers),
        "has_nan": bool(torch.isnan(ours).any()),
    }


def setup_anchor(options: ElmoOptions, batch: int, device: torch.device, dtype: torch.dtype = torch.float32) -> Case:
    """An approximate anchor for the LSTM part: ``torch.nn.LSTM(proj_size=P)``, once per direction.

    Same shapes (``n_layers`` layers, input and projection P, cell C, T + 2 steps) but not the same
    function: no cell or projection clipping, no residual, every row runs the padded width. The
    modules and the input are moved to ``dtype`` (on CUDA, cuDNN's kernel in that dtype).
    """
    x, _, tokens = _lstm_input(options, batch, device)
    x = x.to(dtype)
    p, c = options.projection_dim, options.cell_dim
    directions = [
        torch.nn.LSTM(input_size=p, hidden_size=c, proj_size=p, num_layers=options.n_layers, bidirectional=False)
        .to(device=device, dtype=dtype)
        .eval()
        for _ in range(2)
    ]
    # [T + 2, B, P] per direction; the backward LM reads the sequence reversed.
    inputs = (x[0].transpose(0, 1).contiguous(), x[1].transpose(0, 1).flip(0).contiguous())

    @torch.no_grad()
    def run() -> list[torch.Tensor]:
        return [lstm(seq)[0] for lstm, seq in zip(directions, inputs)]

    return Case(run, tokens, device)


def setup_token_encoder(weights: ElmoWeights, batch: int, backend: str, device: torch.device) -> Case:
    """The token encoder alone: ``elmo_fast.ops.token_encoder`` on the batch's character ids.

    ``weights`` must already live on ``device`` (e.g. ``embedder.elmo_bilm.weights()``).
    """
    batch_sentences = sentences(batch)
    ids = batch_to_ids(batch_sentences).to(device)

    @torch.no_grad()
    def run() -> torch.Tensor:
        return token_encoder(ids, weights.char_cnn, weights.options.activation, backend=backend)

    return Case(run, sum(map(len, batch_sentences)), device)
