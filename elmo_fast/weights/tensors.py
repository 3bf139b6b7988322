"""elmo_fast's tensor layout of a model (:class:`ElmoWeights`) and the bilm-tf file layout it maps to."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from elmo_fast.weights.options import ElmoOptions

LSTM_PREFIX = "RNN_{r}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"


@dataclass
class HighwayWeights:
    """One highway layer, bilm-tf naming and ``x @ W`` layout, each matrix ``(F, F)``."""

    w_transform: torch.Tensor
    b_transform: torch.Tensor
    w_carry: torch.Tensor
    b_carry: torch.Tensor


@dataclass
class CharCNNWeights:
    """Token encoder weights: ``char_embed`` ``(262, d)`` with row 0 zero, Conv1d kernels
    ``(n_i, d, w_i)``, highway layers, projection ``(F, P)`` + ``(P,)``."""

    char_embed: torch.Tensor
    conv_weights: list[torch.Tensor]
    conv_biases: list[torch.Tensor]
    highway: list[HighwayWeights]
    proj_weight: torch.Tensor
    proj_bias: torch.Tensor
    word_proj: torch.Tensor | None = None
    """``(n_words, P)``: a word-embedding table already multiplied by its share of the projection
    (ELMoForManyLangs' word embeddings), added to the projected char-CNN output."""


@dataclass
class LstmLayerWeights:
    """One biLSTM layer, both directions stacked (0 = forward LM, 1 = backward LM).

    ``w_ih`` ``(2, P, 4C)``, ``w_hh`` ``(2, P, 4C)``, ``bias`` ``(2, 4C)`` (+1 on the f block),
    ``w_proj`` ``(2, C, P)``; gate order i, j, f, o.
    """

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    bias: torch.Tensor
    w_proj: torch.Tensor


@dataclass
class ElmoWeights:
    """A whole ELMo model: options plus every tensor, in elmo_fast's layout."""

    options: ElmoOptions
    char_cnn: CharCNNWeights
    lstm: list[LstmLayerWeights] = field(default_factory=list)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat ``name -> tensor`` view (the parameter names of :class:`elmo_fast.modules.BiLm`)."""
        out = {"char_embed": self.char_cnn.char_embed}
        for i, (w, b) in enumerate(zip(self.char_cnn.conv_weights, self.char_cnn.conv_biases)):
            out[f"conv_weight_{i}"] = w
            out[f"conv_bias_{i}"] = b
        for k, hw in enumerate(self.char_cnn.highway):
            for name, t in dataclasses.asdict(hw).items():
                out[f"highway_{k}_{name}"] = t
        out["proj_weight"] = self.char_cnn.proj_weight
        out["proj_bias"] = self.char_cnn.proj_bias
        if self.char_cnn.word_proj is not None:
            out["word_proj"] = self.char_cnn.word_proj
        for layer, lw in enumerate(self.lstm):
            for name in ("w_ih", "w_hh", "bias", "w_proj"):
                out[f"lstm_{layer}_{name}"] = getattr(lw, name)
        return out

    @classmethod
    def from_tensors(cls, options: ElmoOptions, t: dict[str, torch.Tensor]) -> ElmoWeights:
        """Inverse of :meth:`tensors`."""
        cnn = CharCNNWeights(
            char_embed=t["char_embed"],
            conv_weights=[t[f"conv_weight_{i}"] for i in range(len(options.filters))],
            conv_biases=[t[f"conv_bias_{i}"] for i in range(len(options.filters))],
            highway=[
                HighwayWeights(*(t[f"highway_{k}_{n}"] for n in ("w_transform", "b_transform", "w_carry", "b_carry")))
                for k in range(options.n_highway)
            ],
            proj_weight=t["proj_weight"],
            proj_bias=t["proj_bias"],
            word_proj=t.get("word_proj"),
        )
        lstm = [
            LstmLayerWeights(*(t[f"lstm_{layer}_{n}"] for n in ("w_ih", "w_hh", "bias", "w_proj")))
            for layer in range(options.n_layers)
        ]
        return cls(options, cnn, lstm)


def expected_shapes(options: ElmoOptions) -> dict[str, tuple[int, ...]]:
    """Every dataset of the bilm-tf weight file and its shape under ``options``."""
    d, f, p, c = options.char_embed_dim, options.n_filters, options.projection_dim, options.cell_dim
    shapes: dict[str, tuple[int, ...]] = {"char_embed": (options.char_rows, d)}
    if options.n_words:
        shapes["word_proj"] = (options.n_words, p)
    for i, (width, num) in enumerate(options.filters):
        shapes[f"CNN/W_cnn_{i}"] = (1, width, d, num)
        shapes[f"CNN/b_cnn_{i}"] = (num,)
    for k in range(options.n_highway):
        for name in ("W_transform", "W_carry"):
            shapes[f"CNN_high_{k}/{name}"] = (f, f)
        for name in ("b_transform", "b_carry"):
            shapes[f"CNN_high_{k}/{name}"] = (f,)
    shapes["CNN_proj/W_proj"] = (f, p)
    shapes["CNN_proj/b_proj"] = (p,)
    for r in range(2):
        for layer in range(options.n_layers):
            prefix = LSTM_PREFIX.format(r=r, layer=layer)
            shapes[prefix + "W_0"] = (2 * p, 4 * c)
            shapes[prefix + "B"] = (4 * c,)
            shapes[prefix + "W_P_0"] = (c, p)
    return shapes
