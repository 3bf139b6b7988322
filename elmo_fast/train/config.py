"""Training configuration: a JSON (or TOML) file with the model's ``options.json`` fields plus the schedule.

Example (every field but ``train_file``, ``output_dir`` and ``model`` has a default)::

    {
      "train_file": "corpus/train.txt",
      "dev_file": "corpus/dev.txt",
      "output_dir": "runs/small",
      "model": {"lstm": {"dim": 256, "projection_dim": 64, "n_layers": 2, "cell_clip": 3,
                         "proj_clip": 3, "use_skip_connections": true},
                "char_cnn": {"filters": [[1, 32], [2, 32], [3, 64]], "n_highway": 1,
                             "embedding": {"dim": 16}, "activation": "relu",
                             "n_characters": 262, "max_characters_per_token": 50}},
      "vocab_size": 20000, "n_sampled": 2048,
      "batch_size": 64, "n_steps": 20, "dropout": 0.1, "epochs": 3,
      "optimizer": "adagrad", "lr": 0.2, "clip_norm": 10.0, "seed": 0
    }

Relative paths are relative to the config file's folder. ``input_format``: ``"lines"`` (default: one
whitespace-tokenised sentence per line) or ``"raw"`` (running text, cut into sentences and tokens by
:func:`elmo_fast.train.data.split_sentences` and :func:`~elmo_fast.train.data.tokenize_raw`); it
applies to ``train_file`` and ``dev_file``.

A file named ``*.toml`` is read as TOML (Python 3.11's ``tomllib``; on 3.10 the ``tomli`` package)
with the same fields, the model as ``[model.lstm]`` and ``[model.char_cnn]`` tables. TOML has no
null: leave a field out for its default; switching gradient clipping off (``"clip_norm": null``) or
forcing the full softmax (``"n_sampled": null``) needs JSON.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from elmo_fast.train.data import INPUT_FORMATS
from elmo_fast.weights import ElmoOptions, WeightFileError

OPTIMIZERS: tuple[str, ...] = ("adagrad", "adam")
STATES: tuple[str, ...] = ("carry", "sentence")
SORT_CHUNK_BATCHES: int = 32
"""With ``state: "sentence"``, sentences are sorted by length within chunks of this many batches."""
FULL_SOFTMAX_MAX_VOCAB: int = 8192
"""With ``n_sampled: "auto"``, vocabularies up to this size use the full softmax."""
AUTO_SAMPLES: int = 2048

# Fields that shape the training trajectory: a resumed run must agree on all of them.
TRAJECTORY_FIELDS: tuple[str, ...] = (
    "train_file", "input_format", "model", "vocab_size", "min_count", "n_sampled", "batch_size", "n_steps", "state", "dropout",
    "optimizer", "lr", "adagrad_initial_accumulator", "adam_betas", "clip_norm", "loss_scale", "seed",
    "backend",
)


class ConfigError(ValueError):
    """A training config is missing a field or holds an unusable value."""


@dataclass
class TrainConfig:
    """Everything that defines a training run; see the module docstring for the JSON form.

    ``vocab_size``: K, the most frequent training words in the softmax (plus ``<S>``, ``</S>`` and
    ``<UNK>``). ``n_sampled``: negative samples per window for the sampled softmax, ``None`` for the
    full softmax, ``"auto"`` for full up to :data:`FULL_SOFTMAX_MAX_VOCAB` words and else
    :data:`AUTO_SAMPLES`. ``state``: ``"carry"`` (bilm-tf: row streams of sentences, state carried
    across windows of ``n_steps``, truncated back-propagation) or ``"sentence"`` (``batch_size``
    whole sentences per step, each from zero state, as ``ElmoEmbedder(state="zero")`` reads them). ``loss_scale``: the
    loss is multiplied by this before the gradient (bilm-tf multiplies by ``n_steps``; ``None``
    means that). ``max_steps``: stop after this many updates in total (``None``: run ``epochs``).
    ``input_format``: how ``train_file`` and ``dev_file`` are read, one of :data:`INPUT_FORMATS`
    (see :func:`elmo_fast.train.data.read_sentences`).
    """

    train_file: Path
    output_dir: Path
    model: ElmoOptions
    dev_file: Path | None = None
    input_format: str = "lines"
    vocab_size: int = 20000
    min_count: int = 1
    n_sampled: int | str | None = "auto"
    batch_size: int = 64
    n_steps: int = 20
    state: str = "carry"
    dropout: float = 0.1
    epochs: int = 1
    max_steps: int | None = None
    optimizer: str = "adagrad"
    lr: float = 0.2
    adagrad_initial_accumulator: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float | None = 10.0
    loss_scale: float | None = None
    seed: int = 0
    backend: str = "ref"
    checkpoint_every: int = 200
    log_every: int = 50

    @property
    def softmax_samples(self) -> int | None:
        """Negative samples per window, or None for the full softmax (``"auto"`` resolved)."""
        if self.n_sampled == "auto":
            return None if self.vocab_size + 3 <= FULL_SOFTMAX_MAX_VOCAB else AUTO_SAMPLES
        return self.n_sampled  # type: ignore[return-value]

    @property
    def effective_loss_scale(self) -> float:
        """The multiplier applied to the loss before back-propagation."""
        return float(self.n_steps if self.loss_scale is None else self.loss_scale)

    def to_json_dict(self) -> dict:
        """The JSON form (paths as given, model as ``options.json`` content)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "model":
                value = value.to_json_dict()
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def trajectory(self) -> dict:
        """The fields a resumed run must share with the original run."""
        data = self.to_json_dict()
        return {k: data[k] for k in TRAJECTORY_FIELDS}

    @classmethod
    def from_json_dict(cls, data: dict, base_dir: Path = Path("."), source: str = "<config>") -> TrainConfig:
        """Parse and validate a config; relative paths are taken relative to ``base_dir``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object (or TOML table), got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name in ("train_file", "output_dir", "model"):
            if name not in data:
                raise ConfigError(f"{source}: missing field {name!r}")
        try:
            model = ElmoOptions.from_json_dict(data["model"], source=f"{source}: model")
        except WeightFileError as exc:
            raise ConfigError(str(exc)) from None
        kwargs = dict(data)
        kwargs["model"] = model
        for name in ("train_file", "output_dir", "dev_file"):
            if kwargs.get(name) is not None:
                kwargs[name] = (base_dir / Path(kwargs[name])).resolve()
        if "adam_betas" in kwargs:
            kwargs["adam_betas"] = tuple(kwargs["adam_betas"])
        config = cls(**kwargs)
        config.validate(source)
        return config

    def validate(self, source: str = "<config>") -> None:
        """Raise :class:`ConfigError` naming the first bad field."""

        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{source}: {name} must be a positive integer, got {value!r}")

        for name in ("vocab_size", "min_count", "batch_size", "n_steps", "epochs", "checkpoint_every", "log_every"):
            positive_int(name)
        positive_int("max_steps", allow_none=True)
        if self.n_sampled not in (None, "auto"):
            positive_int("n_sampled")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"{source}: dropout must be in [0, 1), got {self.dropout!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"{source}: input_format must be one of {', '.join(INPUT_FORMATS)}, got {self.input_format!r}")
        if self.state not in STATES:
            raise ConfigError(f"{source}: state must be one of {', '.join(STATES)}, got {self.state!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{source}: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not float(self.lr) > 0:
            raise ConfigError(f"{source}: lr must be positive, got {self.lr!r}")
        if self.clip_norm is not None and not float(self.clip_norm) > 0:
            raise ConfigError(f"{source}: clip_norm must be positive or null, got {self.clip_norm!r}")


def _toml_module():
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return None
    return tomllib


def load_config(path: str | Path) -> TrainConfig:
    """Read a training config file: JSON, or TOML when its name ends in ``.toml``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    if path.suffix.lower() == ".toml":
        tomllib = _toml_module()
        if tomllib is None:
            raise ConfigError(
                f"{path}: reading TOML needs Python 3.11+ or the tomli package (pip install tomli); "
                "or write the config as JSON"
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: not a valid JSON file ({exc})") from None
    return TrainConfig.from_json_dict(data, base_dir=path.parent, source=str(path))
