"""ELMoForManyLangs model folders -> ``options.json`` + ``weights.hdf5`` + ``lexicon.json``.

What the converted model computes is what ELMoForManyLangs' ``Embedder(folder).sents2elmo(sents,
output_layer=-2)`` returns for a fresh embedder (zero initial state); their code, read for this:

- tokens: ``<bos>`` and ``<eos>`` around each sentence; a token longer than
  ``max_characters_per_token - 2`` characters keeps its first ones (for its characters and its word);
- characters through ``char.dic`` (one ``char<TAB>id`` a line; a line with one field is the
  ideographic space U+3000), unknown ones to ``<oov>``, the rest of the 50 slots ``<pad>``. Their
  batcher fetches the ``<eow>`` id into the variable it writes first and the ``<bow>`` id into the
  one it writes after the characters, so a token reads ``[<eow>, chars..., <bow>, <pad>...]``:
  ``lexicon.json`` records the ids in the order they are used. A boundary token is ``[<eow>,
  <bos>|<eos>, <bow>, ...]``, and so is an input token spelled ``<bos>`` / ``<eos>``;
- the char CNN (Conv1d over all 50 slots, max over positions, then the activation), highway layers
  ``g * x + (1 - g) * relu(A x)`` with ``g = sigmoid(B x)``; with ``word_dim > 0`` a word embedding
  (``word.dic``, unknown words ``<oov>``) concatenated *before* the CNN output, then one projection;
- the biLSTM with projection, cell and projection clipping and a skip connection above layer 0
  (their ``ElmobiLm``), gate order i, f, g, o in torch layout;
- layer 0 is the token embedding repeated for both directions.

Mapped onto elmo_fast's model: character ids shift by one (0 stays the padding token); the highway
gate becomes bilm-tf's carry gate (``W_carry = -B``); the LSTM blocks are reordered to i, j, f, o;
the word embedding times its share of the projection becomes a table ``word_proj`` ``(words, P)``
added to the projected CNN output (the same sum, reassociated).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from elmo_fast.weights import (
    CharCNNWeights,
    ElmoOptions,
    ElmoWeights,
    HighwayWeights,
    LstmLayerWeights,
    PathLike,
    WeightFileError,
    load_weights,
    save_weights,
)

logger = logging.getLogger(__name__)

LEXICON = "lexicon.json"
MAX_CHARS = 50
# The network config their package ships (elmoformanylangs/configs/*.json, both files identical); the
# published models' config.json names one of them, often by a path that only existed on their machine.
_PACKAGED_CONFIG = {
    "encoder": {"name": "elmo", "projection_dim": 512, "cell_clip": 3, "proj_clip": 3, "dim": 4096, "n_layers": 2},
    "token_embedder": {
        "name": "cnn", "activation": "relu", "n_highway": 2, "word_dim": 100, "char_dim": 50,
        "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]], "max_characters_per_token": 50,
    },
}
_PACKAGED_NAMES = ("cnn_50_100_512_4096_sample.json", "cnn_0_100_512_4096_sample.json")


def read_dic(path: Path) -> dict[str, int]:
    """``char.dic`` / ``word.dic`` as their reader builds it (later lines win)."""
    table: dict[str, int] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, "\u3000")
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            raise WeightFileError(f"{path}:{n}: expected 'token<TAB>id', got {line!r}")
        table[fields[0]] = int(fields[1])
    return table


def read_network_config(src: Path) -> dict:
    """The network config ``config.json`` points at, found as their loader finds it."""
    meta = json.loads((src / "config.json").read_text(encoding="utf-8"))
    named = meta.get("config_path")
    if not isinstance(named, str):
        raise WeightFileError(f"{src / 'config.json'}: no config_path field")
    for candidate in (src / named, src / Path(named).name):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    if Path(named).name in _PACKAGED_NAMES:
        return json.loads(json.dumps(_PACKAGED_CONFIG))
    raise WeightFileError(f"{src / 'config.json'}: config_path {named!r} not found in {src} (nor a config their package ships)")


def _check_config(config: dict, src: Path) -> tuple[dict, dict]:
    enc, tok = config.get("encoder", {}), config.get("token_embedder", {})
    if str(enc.get("name", "")).lower() != "elmo":
        raise WeightFileError(f"{src}: encoder {enc.get('name')!r} is not supported (only their 'elmo' biLM)")
    if str(tok.get("name", "")).lower() != "cnn":
        raise WeightFileError(f"{src}: token_embedder {tok.get('name')!r} is not supported (only the char CNN)")
    if not tok.get("char_dim"):
        raise WeightFileError(f"{src}: a model without characters (char_dim 0) is not supported")
    if tok.get("max_characters_per_token", MAX_CHARS) != MAX_CHARS:
        raise WeightFileError(f"{src}: max_characters_per_token must be {MAX_CHARS}, got {tok['max_characters_per_token']}")
    return enc, tok


def _lexicon(chars: dict[str, int], words: dict[str, int] | None) -> tuple[dict, list[int], list[int]]:
    """``lexicon.json`` content (ids shifted into elmo_fast's tables) and the boundary tokens' ids."""
    for key in ("<bow>", "<eow>", "<oov>", "<pad>", "<bos>", "<eos>"):
        if key not in chars:
            raise WeightFileError(f"char.dic has no {key} entry")
    shifted = {c: i + 1 for c, i in chars.items()}
    begin, end, pad = shifted["<eow>"], shifted["<bow>"], shifted["<pad>"]
    lexicon = {
        "format": "elmo_fast lexicon 1",
        "source": "ELMoForManyLangs",
        "chars": shifted,
        "begin_of_word": begin,
        "end_of_word": end,
        "unknown_char": shifted["<oov>"],
        "pad_char": pad,
        "max_token_chars": MAX_CHARS - 2,
        "words": words,
        "unknown_word": words["<oov>"] if words is not None else 0,
        "boundary_tokens": {"<bos>": "bos", "<eos>": "eos"},
    }
    boundaries = []
    for token in ("<bos>", "<eos>"):
        ids = [pad] * MAX_CHARS
        ids[:3] = [begin, shifted[token], end]
        if words is not None:
            ids.append(words.get(token, words["<oov>"]))
        boundaries.append(ids)
    return lexicon, boundaries[0], boundaries[1]


def _lstm_layers(encoder: dict[str, torch.Tensor], n_layers: int, cell: int) -> list[LstmLayerWeights]:
    # Their blocks are i, f, g, o; elmo_fast's (bilm-tf's) i, j(= g), f, o.
    order = torch.cat([torch.arange(b * cell, (b + 1) * cell) for b in (0, 2, 1, 3)])
    layers = []
    for layer in range(n_layers):
        parts = {k: [] for k in ("w_ih", "w_hh", "bias", "w_proj")}
        for direction in ("forward", "backward"):
            pre = f"{direction}_layer_{layer}."
            parts["w_ih"].append(encoder[pre + "input_linearity.weight"][order].T)
            parts["w_hh"].append(encoder[pre + "state_linearity.weight"][order].T)
            parts["bias"].append(encoder[pre + "state_linearity.bias"][order])
            parts["w_proj"].append(encoder[pre + "state_projection.weight"].T)
        layers.append(LstmLayerWeights(*(torch.stack(parts[k]).contiguous() for k in ("w_ih", "w_hh", "bias", "w_proj"))))
    return layers


def _char_cnn(tok: dict[str, torch.Tensor], n_filters: int, n_highway: int, word_dim: int) -> CharCNNWeights:
    char_embed = tok["char_emb_layer.embedding.weight"]
    highway = []
    for k in range(n_highway):
        w, b = tok[f"highways._layers.{k}.weight"], tok[f"highways._layers.{k}.bias"]
        f = w.shape[1]
        highway.append(HighwayWeights(w[:f].T.contiguous(), b[:f].clone(), (-w[f:].T).contiguous(), -b[f:]))
    proj = tok["projection.weight"]
    word_proj = None
    if word_dim:
        words = tok["word_emb_layer.embedding.weight"].double()
        word_proj = (words @ proj[:, :word_dim].double().T).float()
    return CharCNNWeights(
        char_embed=torch.cat([char_embed.new_zeros(1, char_embed.shape[1]), char_embed]),
        conv_weights=[tok[f"convolutions.{i}.weight"].contiguous() for i in range(n_filters)],
        conv_biases=[tok[f"convolutions.{i}.bias"] for i in range(n_filters)],
        highway=highway,
        proj_weight=proj[:, word_dim:].T.contiguous(),
        proj_bias=tok["projection.bias"],
        word_proj=word_proj,
    )


def convert_manylangs(src: PathLike, dest: PathLike) -> tuple[Path, Path]:
    """Convert the ELMoForManyLangs model folder ``src`` into ``dest``; returns (options, weights).

    ``dest`` gets ``options.json`` (with a ``vocabulary`` section), ``weights.hdf5`` (bilm-tf layout
    plus ``word_proj`` when the model has word embeddings) and ``lexicon.json``; load them with
    ``ElmoEmbedder(dest / "options.json", dest / "weights.hdf5")``.
    """
    src, dest = Path(src), Path(dest)
    for name in ("config.json", "char.dic", "token_embedder.pkl", "encoder.pkl"):
        if not (src / name).is_file():
            raise WeightFileError(f"{src}: {name} is missing; not an ELMoForManyLangs model folder")
    enc, tok_cfg = _check_config(read_network_config(src), src)
    word_dim = int(tok_cfg.get("word_dim") or 0)
    chars = read_dic(src / "char.dic")
    words = read_dic(src / "word.dic") if word_dim else None
    tok = torch.load(src / "token_embedder.pkl", map_location="cpu", weights_only=True)
    encoder = torch.load(src / "encoder.pkl", map_location="cpu", weights_only=True)
    filters = tuple((int(w), int(n)) for w, n in tok_cfg["filters"])
    lexicon, bos_ids, eos_ids = _lexicon(chars, words)
    dest.mkdir(parents=True, exist_ok=True)
    options = ElmoOptions(
        projection_dim=int(enc["projection_dim"]),
        cell_dim=int(enc["dim"]),
        n_layers=int(enc["n_layers"]),
        cell_clip=float(enc["cell_clip"]) if enc.get("cell_clip") else None,
        proj_clip=float(enc["proj_clip"]) if enc.get("proj_clip") else None,
        use_skip_connections=True,
        filters=filters,
        n_highway=int(tok_cfg["n_highway"]),
        char_embed_dim=int(tok_cfg["char_dim"]),
        activation=tok_cfg.get("activation", "relu"),
        n_characters=tok["char_emb_layer.embedding.weight"].shape[0] + 1,
        max_characters_per_token=MAX_CHARS,
        lexicon_file=str(dest / LEXICON),
        n_words=tok["word_emb_layer.embedding.weight"].shape[0] if word_dim else 0,
        bos_ids=tuple(bos_ids),
        eos_ids=tuple(eos_ids),
    )
    weights = ElmoWeights(
        options,
        _char_cnn(tok, len(filters), options.n_highway, word_dim),
        _lstm_layers(encoder, options.n_layers, options.cell_dim),
    )
    (dest / LEXICON).write_text(json.dumps(lexicon, ensure_ascii=False) + "\n", encoding="utf-8")
    options_path, weights_path = dest / "options.json", dest / "weights.hdf5"
    save_weights(weights, weights_path, options_path)
    load_weights(options_path, weights_path)
    logger.info("converted %s into %s (%d characters, %d words)", src, dest, len(chars), len(words or ()))
    return options_path, weights_path

