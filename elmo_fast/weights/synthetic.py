"""Random-weight models and the standard model sizes, for tests and benchmarks."""
from __future__ import annotations

import torch

from elmo_fast.weights.options import N_CHAR_ROWS, ElmoOptions
from elmo_fast.weights.tensors import CharCNNWeights, ElmoWeights, HighwayWeights, LstmLayerWeights


def random_weights(options: ElmoOptions, seed: int = 0, scale: float = 0.5) -> ElmoWeights:
    """A random-weight model with the shapes of ``options`` (for tests and benchmarks).

    Matrices are scaled by ``scale / sqrt(fan_in)`` so activations stay in a realistic range.
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, fan_in: int | None = None) -> torch.Tensor:
        std = scale / (fan_in ** 0.5) if fan_in else scale
        return torch.randn(*shape, generator=g) * std

    d, f, p, c = options.char_embed_dim, options.n_filters, options.projection_dim, options.cell_dim
    char_embed = rnd(N_CHAR_ROWS, d)
    char_embed[0] = 0.0
    cnn = CharCNNWeights(
        char_embed=char_embed,
        conv_weights=[rnd(num, d, width, fan_in=d * width) for width, num in options.filters],
        conv_biases=[rnd(num) * 0.1 for _, num in options.filters],
        highway=[HighwayWeights(rnd(f, f, fan_in=f), rnd(f) * 0.1, rnd(f, f, fan_in=f), rnd(f) * 0.1) for _ in range(options.n_highway)],
        proj_weight=rnd(f, p, fan_in=f),
        proj_bias=rnd(p) * 0.1,
    )
    layers = []
    for _ in range(options.n_layers):
        bias = rnd(2, 4 * c) * 0.1
        bias[:, 2 * c : 3 * c] += 1.0
        layers.append(LstmLayerWeights(rnd(2, p, 4 * c, fan_in=2 * p), rnd(2, p, 4 * c, fan_in=2 * p), bias, rnd(2, c, p, fan_in=c)))
    return ElmoWeights(options, cnn, layers)


SMALL = ElmoOptions(projection_dim=128, cell_dim=1024, n_highway=1)
MEDIUM = ElmoOptions(projection_dim=256, cell_dim=2048, n_highway=1)
ORIGINAL = ElmoOptions(projection_dim=512, cell_dim=4096, n_highway=2)
CONFIGS: dict[str, ElmoOptions] = {"small": SMALL, "medium": MEDIUM, "original": ORIGINAL}
