"""``options.json``: the typed :class:`ElmoOptions`, read and written, and the errors every file check raises."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PathLike = str | os.PathLike

N_CHAR_ROWS: int = 262


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
