"""Read and write ELMo ``options.json`` + ``weights.hdf5`` files (bilm-tf layout, as AllenNLP reads them).

:func:`load_options` gives a typed :class:`ElmoOptions`; :func:`load_weights` gives
:class:`ElmoWeights` in elmo_fast's tensor layout; :func:`save_weights` writes the original layout
back, so a model trained or modified here loads in bilm-tf and AllenNLP. Every problem raises
:class:`WeightFileError` naming the file and the dataset.

What can and cannot be detected in ``weights.hdf5``:

- missing or truncated files, files that are not HDF5, a group or nothing where a dataset should
  be, wrong shapes (both shapes shown; a transposed layout is pointed out), and read errors inside a
  dataset (a damaged chunk or a cut-off file) are all reported;
- NaN, +Inf and -Inf values are reported at load;
- files written by :func:`save_weights` carry HDF5's Fletcher32 checksum on every dataset, so a
  flipped byte in their stored data fails the load with a checksum error;
- the published bilm-tf / AllenNLP files have **no checksums**: a byte corrupted inside the raw
  data of such a file changes a weight silently unless it happens to produce NaN or Inf. Check those
  files against the published sizes/hashes, or re-save them once with :func:`save_weights` (which
  adds checksums) and keep that copy.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PathLike = str | os.PathLike

N_CHAR_ROWS: int = 262
LSTM_PREFIX = "RNN_{r}/RNN/MultiRNNCell/Cell{layer}/LSTMCell/"
CHECKSUM: dict[str, bool] = {"fletcher32": True}
"""``create_dataset`` keywords for every weight dataset elmo_fast writes: a standard HDF5 filter
(chunked storage + a Fletcher32 checksum per chunk) that every HDF5 reader decodes."""


class WeightFileError(ValueError):
    """An options or weight file is missing, unreadable, or disagrees with what ELMo needs."""


@dataclass(frozen=True)
class ElmoOptions:
    """The fields of ``options.json`` that define an ELMo model."""

    projection_dim: int
    cell_dim: int
    n_layers: int = 2
    cell_clip: float | None = 3.0
    proj_clip: float | None = 3.0
    use_skip_connections: bool = True
    filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))
    n_highway: int = 2
    char_embed_dim: int = 16
    activation: str = "relu"
    n_characters: int = 262
    max_characters_per_token: int = 50
    lexicon_file: str | None = None
    """A character lexicon (:mod:`elmo_fast.reference.lexicon_ids`) in place of bilm-tf's byte ids:
    set for converted ELMoForManyLangs models (``options.json`` section ``vocabulary``)."""
    n_words: int = 0
    """Rows of the word table ``word_proj`` ``(n_words, P)`` added to the token embedding (0: none);
    its ids then travel as a 51st slot after the 50 character ids."""
    bos_ids: tuple[int, ...] | None = None
    eos_ids: tuple[int, ...] | None = None
    """The ids of the sentence-boundary tokens (None: bilm-tf's ``<S>`` / ``</S>``)."""

    @property
    def id_width(self) -> int:
        """Ids per token: 50 character slots, plus the word id when the model has a word table."""
        return self.max_characters_per_token + (1 if self.n_words else 0)

    @property
    def char_rows(self) -> int:
        """Rows of ``char_embed`` in the weight file (id 0, padding, is not stored)."""
        return self.n_characters - 1 if self.lexicon_file else N_CHAR_ROWS - 1

    @property
    def n_filters(self) -> int:
        """F: the char-CNN output width, the sum of all filter counts."""
        return sum(n for _, n in self.filters)

    @property
    def output_dim(self) -> int:
        """2P: the width of every biLM layer (forward and backward halves)."""
        return 2 * self.projection_dim

    def to_json_dict(self) -> dict:
        """The ``options.json`` content for these options."""
        out = {
            "lstm": {
                "use_skip_connections": self.use_skip_connections,
                "projection_dim": self.projection_dim,
                "cell_clip": self.cell_clip,
                "proj_clip": self.proj_clip,
                "dim": self.cell_dim,
                "n_layers": self.n_layers,
            },
            "char_cnn": {
                "activation": self.activation,
                "filters": [list(f) for f in self.filters],
                "n_highway": self.n_highway,
                "embedding": {"dim": self.char_embed_dim},
                "n_characters": self.n_characters,
                "max_characters_per_token": self.max_characters_per_token,
            },
        }
        if self.lexicon_file:
            out["vocabulary"] = {
                "type": "lexicon",
                "file": Path(self.lexicon_file).name,
                "n_words": self.n_words,
                "bos_ids": list(self.bos_ids or ()),
                "eos_ids": list(self.eos_ids or ()),
            }
        return out

    @classmethod
    def from_json_dict(cls, data: dict, source: str = "<options>") -> ElmoOptions:
        """Parse and validate ``options.json`` content; errors name ``source`` and the field."""

        def get(section: str, key: str, default=None, required: bool = True):
            block = data.get(section)
            if not isinstance(block, dict):
                raise WeightFileError(f"{source}: missing section {section!r}")
            if key not in block:
                if required:
                    raise WeightFileError(f"{source}: missing field {section}.{key}")
                return default
            return block[key]

        def positive_int(value, name: str) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise WeightFileError(f"{source}: {name} must be a positive integer, got {value!r}")
            return value

        def clip(value, name: str) -> float | None:
            if value is None or value is False or value == 0:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise WeightFileError(f"{source}: {name} must be a positive number or null, got {value!r}")
            return float(value)

        if not isinstance(data, dict):
            raise WeightFileError(f"{source}: expected a JSON object, got {type(data).__name__}")
        embedding = get("char_cnn", "embedding")
        if not isinstance(embedding, dict) or "dim" not in embedding:
            raise WeightFileError(f"{source}: missing field char_cnn.embedding.dim")
        raw_filters = get("char_cnn", "filters")
        try:
            filters = tuple((int(w), int(n)) for w, n in raw_filters)
        except (TypeError, ValueError):
            raise WeightFileError(f"{source}: char_cnn.filters must be a list of [width, count] pairs, got {raw_filters!r}") from None
        if not filters or any(w <= 0 or n <= 0 for w, n in filters):
            raise WeightFileError(f"{source}: char_cnn.filters must be non-empty positive [width, count] pairs, got {raw_filters!r}")
        max_chars = positive_int(get("char_cnn", "max_characters_per_token", 50, required=False), "char_cnn.max_characters_per_token")
        if max_chars != 50:
            raise WeightFileError(f"{source}: char_cnn.max_characters_per_token={max_chars} is unsupported (ELMo's character ids have 50 slots)")
        if any(w > max_chars for w, _ in filters):
            raise WeightFileError(f"{source}: a filter is wider than max_characters_per_token={max_chars}: {raw_filters!r}")
        n_characters = positive_int(get("char_cnn", "n_characters", 262, required=False), "char_cnn.n_characters")
        vocabulary = _vocabulary(data.get("vocabulary"), source, n_characters)
        if n_characters not in (261, 262) and not vocabulary:
            raise WeightFileError(f"{source}: char_cnn.n_characters={n_characters} is unsupported (must be 261 or 262)")
        activation = get("char_cnn", "activation", "relu", required=False)
        if activation not in ("relu", "tanh"):
            raise WeightFileError(f"{source}: char_cnn.activation={activation!r} is unsupported (relu or tanh)")
        skip = get("lstm", "use_skip_connections", True, required=False)
        if not isinstance(skip, bool):
            raise WeightFileError(f"{source}: lstm.use_skip_connections must be true or false, got {skip!r}")
        n_highway = get("char_cnn", "n_highway", 0, required=False)
        if isinstance(n_highway, bool) or not isinstance(n_highway, int) or n_highway < 0:
            raise WeightFileError(f"{source}: char_cnn.n_highway must be a non-negative integer, got {n_highway!r}")
        return cls(
            projection_dim=positive_int(get("lstm", "projection_dim"), "lstm.projection_dim"),
            cell_dim=positive_int(get("lstm", "dim"), "lstm.dim"),
            n_layers=positive_int(get("lstm", "n_layers", 2, required=False), "lstm.n_layers"),
            cell_clip=clip(get("lstm", "cell_clip", None, required=False), "lstm.cell_clip"),
            proj_clip=clip(get("lstm", "proj_clip", None, required=False), "lstm.proj_clip"),
            use_skip_connections=skip,
            filters=filters,
            n_highway=n_highway,
            char_embed_dim=positive_int(embedding["dim"], "char_cnn.embedding.dim"),
            activation=activation,
            n_characters=n_characters,
            max_characters_per_token=max_chars,
            **vocabulary,
        )


def _vocabulary(block, source: str, n_characters: int) -> dict:
    """The ``vocabulary`` section of ``options.json`` as :class:`ElmoOptions` fields ({} when absent)."""
    if block is None:
        return {}
    if not isinstance(block, dict) or block.get("type") != "lexicon" or not isinstance(block.get("file"), str):
        raise WeightFileError(f"{source}: vocabulary must be {{\"type\": \"lexicon\", \"file\": ...}}, got {block!r}")
    n_words = block.get("n_words", 0)
    if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 0:
        raise WeightFileError(f"{source}: vocabulary.n_words must be a non-negative integer, got {n_words!r}")
    width = 50 + (1 if n_words else 0)
    ids = {}
    for key in ("bos_ids", "eos_ids"):
        value = block.get(key)
        if not isinstance(value, list) or len(value) != width or not all(isinstance(v, int) and v >= 0 for v in value):
            raise WeightFileError(f"{source}: vocabulary.{key} must be {width} non-negative integers, got {value!r}")
        if max(value[:50]) >= n_characters or (n_words and value[50] >= n_words):
            raise WeightFileError(f"{source}: vocabulary.{key} has an id outside the tables: {value!r}")
        ids[key] = tuple(value)
    base = Path(source).parent if source != "<options>" else Path(".")
    lexicon = base / block["file"]
    if not lexicon.is_file():
        raise WeightFileError(f"{source}: the character lexicon {lexicon} named by vocabulary.file is missing")
    return {"lexicon_file": str(lexicon), "n_words": n_words, **ids}


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


def load_options(path: PathLike) -> ElmoOptions:
    """Read and validate an ``options.json`` file."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: options file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightFileError(f"{path}: not a valid JSON options file ({exc})") from None
    return ElmoOptions.from_json_dict(data, source=str(path))


def save_options(options: ElmoOptions, path: PathLike) -> None:
    """Write ``options.json``."""
    Path(path).write_text(json.dumps(options.to_json_dict(), indent=2) + "\n", encoding="utf-8")


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


def _other_places(handle, name: str) -> list[str]:
    """Paths in ``handle`` of datasets whose last component is ``name``'s (a file from another layout)."""
    import h5py

    leaf = name.rsplit("/", 1)[-1]
    found: list[str] = []

    def visit(path: str, obj) -> None:
        if isinstance(obj, h5py.Dataset) and path.rsplit("/", 1)[-1] == leaf and path != name:
            found.append(path)

    try:
        handle.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError):
        pass
    return found


def _missing_message(path: Path, handle, name: str) -> str:
    """The error for a dataset that is not where the bilm-tf layout puts it, with a hint at what is."""
    elsewhere = _other_places(handle, name)
    if elsewhere:
        shown = ", ".join(repr(x) for x in elsewhere[:3])
        return (
            f"{path}: dataset {name!r} is missing; a dataset of that name is at {shown} "
            "(a file from another tool? elmo_fast reads the bilm-tf layout AllenNLP reads)"
        )
    try:
        top = sorted(handle.keys())
    except (OSError, RuntimeError, KeyError, ValueError):
        top = []
    shown = ", ".join(repr(x) for x in top[:8]) + (", ..." if len(top) > 8 else "")
    return f"{path}: dataset {name!r} is missing (top-level names in the file: {shown or 'none'})"


def _read_datasets(path: Path, options: ElmoOptions) -> dict[str, np.ndarray]:
    import h5py

    if not path.is_file():
        raise WeightFileError(f"{path}: weight file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    arrays: dict[str, np.ndarray] = {}
    with handle:
        for name, shape in expected_shapes(options).items():
            # A damaged file can fail while its objects are looked up, not only while data is read.
            try:
                obj = handle.get(name)
                stored = tuple(obj.shape) if isinstance(obj, h5py.Dataset) else None
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                raise WeightFileError(
                    f"{path}: dataset {name!r} could not be opened; the file is truncated or damaged ({exc})"
                ) from None
            if isinstance(obj, h5py.Group):
                raise WeightFileError(f"{path}: {name!r} is a group, not a dataset (expected a dataset of shape {shape})")
            if stored is None:
                raise WeightFileError(_missing_message(path, handle, name))
            if stored != shape:
                hint = " (transposed: this file has another layout)" if len(shape) > 1 and stored == shape[::-1] else ""
                raise WeightFileError(
                    f"{path}: dataset {name!r} has shape {stored} but the options ask for {shape}{hint}"
                )
            arrays[name] = read_dataset(path, obj, name)
            values = arrays[name]
            if not np.isfinite(values).all():
                nan = int(np.isnan(values).sum())
                pos = int(np.isposinf(values).sum())
                neg = int(np.isneginf(values).sum())
                raise WeightFileError(
                    f"{path}: dataset {name!r} holds {nan + pos + neg} NaN or Inf values "
                    f"({nan} NaN, {pos} +Inf, {neg} -Inf)"
                )
    return arrays


def _has_fletcher32(dataset) -> bool:
    try:
        return bool(dataset.fletcher32)
    except (OSError, RuntimeError, ValueError):
        return False


def _has_other_filters(dataset) -> bool:
    try:
        return bool(dataset.compression or dataset.shuffle or dataset.scaleoffset is not None)
    except (OSError, RuntimeError, ValueError):
        return True


def read_dataset(path: PathLike, dataset, name: str) -> np.ndarray:
    """Read an open h5py ``dataset`` as float32; a checksum or read failure raises :class:`WeightFileError`.

    h5py raises ``OSError`` when a chunk fails its Fletcher32 checksum (files elmo_fast writes) or
    when the data cannot be read (truncated file, damaged chunk index); both name ``path`` and ``name``.
    """
    try:
        return np.asarray(dataset[...], dtype=np.float32)
    except OSError as exc:
        text = str(exc)
        lowered = text.lower()
        # HDF5 reports a checksum mismatch as "filter returned failure during read" (or names Fletcher32).
        if "fletcher32" in lowered or "checksum" in lowered or (_has_fletcher32(dataset) and "filter" in lowered):
            others = _has_other_filters(dataset)
            what = "failed its Fletcher32 checksum" if not others else "failed its Fletcher32 checksum or another filter"
            raise WeightFileError(f"{path}: dataset {name!r} {what}: the stored data is corrupted ({text})") from None
        raise WeightFileError(f"{path}: dataset {name!r} could not be read; the file is truncated or damaged ({text})") from None
    except (ValueError, TypeError, RuntimeError) as exc:
        raise WeightFileError(f"{path}: dataset {name!r} could not be read as float32 ({exc})") from None


def load_weights(options_file: PathLike, weight_file: PathLike) -> ElmoWeights:
    """Load a model from ``options.json`` + ``weights.hdf5`` into fp32 CPU tensors."""
    options = load_options(options_file) if not isinstance(options_file, ElmoOptions) else options_file
    a = _read_datasets(Path(weight_file), options)

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    char_embed = np.concatenate([np.zeros((1, options.char_embed_dim), np.float32), a["char_embed"]])
    cnn = CharCNNWeights(
        char_embed=t(char_embed),
        conv_weights=[t(a[f"CNN/W_cnn_{i}"][0].transpose(2, 1, 0)) for i in range(len(options.filters))],
        conv_biases=[t(a[f"CNN/b_cnn_{i}"]) for i in range(len(options.filters))],
        highway=[
            HighwayWeights(*(t(a[f"CNN_high_{k}/{n}"]) for n in ("W_transform", "b_transform", "W_carry", "b_carry")))
            for k in range(options.n_highway)
        ],
        proj_weight=t(a["CNN_proj/W_proj"]),
        proj_bias=t(a["CNN_proj/b_proj"]),
        word_proj=t(a["word_proj"]) if options.n_words else None,
    )
    p, c = options.projection_dim, options.cell_dim
    layers = []
    for layer in range(options.n_layers):
        w_ih, w_hh, bias, w_proj = [], [], [], []
        for r in range(2):
            prefix = LSTM_PREFIX.format(r=r, layer=layer)
            w0 = a[prefix + "W_0"]
            b = a[prefix + "B"].copy()
            b[2 * c : 3 * c] += 1.0
            w_ih.append(w0[:p])
            w_hh.append(w0[p:])
            bias.append(b)
            w_proj.append(a[prefix + "W_P_0"])
        layers.append(LstmLayerWeights(*(t(np.stack(x)) for x in (w_ih, w_hh, bias, w_proj))))
    return ElmoWeights(options, cnn, layers)


def save_weights(weights: ElmoWeights, weight_file: PathLike, options_file: PathLike | None = None) -> None:
    """Write ``weights`` in bilm-tf's layout (and ``options.json`` when ``options_file`` is given).

    Every dataset round-trips exactly except ``B``: the forget block's +1 at load and -1 here round
    in float32, so those values may move by one ulp of 1.0 (6e-8). Every dataset is written chunked
    with HDF5's Fletcher32 checksum filter (:data:`CHECKSUM`), so corruption of the stored data is
    detected when the file is read (by :func:`load_weights`, or by any HDF5 reader: h5py, AllenNLP
    and bilm-tf decode the filter transparently).
    """
    import h5py

    options = weights.options
    c = options.cell_dim

    def n(x: torch.Tensor) -> np.ndarray:
        return x.detach().to("cpu", torch.float32).numpy()

    cnn = weights.char_cnn
    data: dict[str, np.ndarray] = {"char_embed": n(cnn.char_embed)[1:]}
    for i, (w, b) in enumerate(zip(cnn.conv_weights, cnn.conv_biases)):
        data[f"CNN/W_cnn_{i}"] = n(w).transpose(2, 1, 0)[None]
        data[f"CNN/b_cnn_{i}"] = n(b)
    for k, hw in enumerate(cnn.highway):
        data[f"CNN_high_{k}/W_transform"] = n(hw.w_transform)
        data[f"CNN_high_{k}/b_transform"] = n(hw.b_transform)
        data[f"CNN_high_{k}/W_carry"] = n(hw.w_carry)
        data[f"CNN_high_{k}/b_carry"] = n(hw.b_carry)
    data["CNN_proj/W_proj"] = n(cnn.proj_weight)
    data["CNN_proj/b_proj"] = n(cnn.proj_bias)
    if cnn.word_proj is not None:
        data["word_proj"] = n(cnn.word_proj)
    for layer, lw in enumerate(weights.lstm):
        for r in range(2):
            prefix = LSTM_PREFIX.format(r=r, layer=layer)
            b = n(lw.bias[r]).copy()
            b[2 * c : 3 * c] -= 1.0
            data[prefix + "W_0"] = np.concatenate([n(lw.w_ih[r]), n(lw.w_hh[r])])
            data[prefix + "B"] = b
            data[prefix + "W_P_0"] = n(lw.w_proj[r])
    shapes = expected_shapes(options)
    for name, array in data.items():
        if tuple(array.shape) != shapes[name]:
            raise WeightFileError(f"{weight_file}: tensor for {name!r} has shape {array.shape}, options ask for {shapes[name]}")
    with h5py.File(weight_file, "w") as out:
        for name, array in data.items():
            out.create_dataset(name, data=np.ascontiguousarray(array, dtype=np.float32), **CHECKSUM)
    if options_file is not None:
        save_options(options, options_file)


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
