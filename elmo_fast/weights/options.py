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
        return {
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
        if n_characters not in (261, 262):
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
        )


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
