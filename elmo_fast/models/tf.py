"""TensorFlow ELMo checkpoints -> ``options.json`` + ``weights.hdf5`` (what bilm-tf's ``dump_weights`` writes).

Two sources, read with TensorFlow 2's checkpoint reader (``tf.train.load_checkpoint``, which opens
TF1 checkpoints; no TF1 graph is built): ``pip install 'elmo_fast[tf]'``.

- a bilm-tf training checkpoint: variables under ``lm/`` — ``lm/char_embed``, ``lm/CNN/W_cnn_i``,
  ``lm/CNN_high_k/{W,b}_{carry,transform}``, ``lm/CNN_proj/{W,b}_proj`` and
  ``lm/RNN_r/rnn/multi_rnn_cell/cell_k/lstm_cell/{kernel,bias,projection/kernel}``;
- a TF-Hub ``elmo`` module folder: its ``variables/variables`` checkpoint names the same tensors
  under ``bilm/``, with the LSTM at ``bilm/RNN_r/RNN/MultiRNNCell/Cellk/rnn/lstm_cell/...``.

Both map to the hdf5 names bilm-tf's ``dump_weights`` writes (``RNN_r/RNN/MultiRNNCell/Cellk/
LSTMCell/{W_0,B,W_P_0}``); values are copied unchanged. Optimizer slots, the softmax, the
``aggregation/`` scalar mix of the Hub module and counters are left out. Dimensions are read from the
tensor shapes; the clip values and skip connections are not stored in a checkpoint: they come from
``options_file`` (bilm-tf writes ``options.json`` next to its checkpoints), else the published
models' values (clip 3, skip connections on) with a warning.

NOTE: TensorFlow and Triton each load LLVM; importing TensorFlow *before* Triton in one process
aborts it ("Option ... registered more than once", seen with tensorflow-cpu 2.21.0 and the Triton
this project pins). ``elmo-fast convert tf`` runs in a process of its own; in a Python session that
also uses the Triton backend, import Triton (or run elmo_fast on it) first, or convert in a subprocess.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from elmo_fast.weights import CHECKSUM, LSTM_PREFIX, ElmoOptions, PathLike, WeightFileError, load_weights

logger = logging.getLogger(__name__)

_LSTM = re.compile(
    r"^RNN_(?P<r>[01])/(?:rnn/multi_rnn_cell/cell_(?P<a>\d+)|RNN/MultiRNNCell/Cell(?P<b>\d+)/rnn)"
    r"/lstm_cell/(?P<what>kernel|bias|projection/kernel)$"
)
_PLAIN = re.compile(r"^(char_embed|CNN/[Wb]_cnn_\d+|CNN_high_\d+/[Wb]_(carry|transform)|CNN_proj/[Wb]_proj)$")
_LSTM_OUT = {"kernel": "W_0", "bias": "B", "projection/kernel": "W_P_0"}
_SKIP = re.compile(r"(Adagrad|Adam|Momentum|ExponentialMovingAverage|softmax|global_step|aggregation/|perplexity)")


def hdf5_name(tf_name: str) -> str | None:
    """The ``dump_weights`` dataset name of a checkpoint variable, or None for one ELMo does not use."""
    name = re.sub(r":0$", "", tf_name)
    if _SKIP.search(name):
        return None
    for prefix in ("module/", "lm/", "bilm/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if _PLAIN.match(name):
        return name
    m = _LSTM.match(name)
    if m:
        layer = int(m.group("a") if m.group("a") is not None else m.group("b"))
        return LSTM_PREFIX.format(r=m.group("r"), layer=layer) + _LSTM_OUT[m.group("what")]
    return None


def checkpoint_prefix(path: PathLike) -> str:
    """The checkpoint prefix behind ``path``: itself, a TF-Hub module's ``variables/variables``, or a
    training folder's latest checkpoint."""
    import tensorflow as tf

    p = Path(path)
    if p.is_dir():
        if (p / "variables" / "variables.index").is_file():
            return str(p / "variables" / "variables")
        latest = tf.train.latest_checkpoint(str(p))
        if latest is None:
            raise WeightFileError(f"{p}: no TensorFlow checkpoint here (no 'checkpoint' file, no variables/)")
        return latest
    return str(p)


def read_checkpoint(path: PathLike) -> dict[str, np.ndarray]:
    """Every ELMo tensor of a checkpoint under its ``dump_weights`` name."""
    prefix = Path(path)
    if not prefix.exists() and not Path(str(prefix) + ".index").is_file():
        raise WeightFileError(f"{prefix}: no TensorFlow checkpoint here (neither a folder nor PREFIX.index)")
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError("converting TensorFlow checkpoints needs TensorFlow: pip install 'elmo_fast[tf]'") from None
    prefix = checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError) as exc:
        raise WeightFileError(f"{prefix}: not a readable TensorFlow checkpoint ({exc})") from None
    out: dict[str, np.ndarray] = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        target = hdf5_name(name)
        if target is None:
            continue
        if target in out:
            raise WeightFileError(f"{prefix}: two variables map to {target!r} (a checkpoint holding two models?)")
        out[target] = np.asarray(reader.get_tensor(name), dtype=np.float32)
    if "char_embed" not in out:
        raise WeightFileError(
            f"{prefix}: no char_embed variable; a word-input bilm-tf model (lm/embedding) is not supported, "
            f"found: {', '.join(sorted(reader.get_variable_to_shape_map())[:8])}"
        )
    return out


def infer_options(arrays: dict[str, np.ndarray], options_file: PathLike | None = None) -> ElmoOptions:
    """Options from the tensor shapes, plus clip values and skip connections from ``options_file``."""
    n_filters = len([k for k in arrays if k.startswith("CNN/W_cnn_")])
    filters = tuple((int(arrays[f"CNN/W_cnn_{i}"].shape[1]), int(arrays[f"CNN/W_cnn_{i}"].shape[3])) for i in range(n_filters))
    n_highway = len([k for k in arrays if k.endswith("/W_carry")])
    n_layers = len([k for k in arrays if k.startswith("RNN_0/") and k.endswith("/W_P_0")])
    c, p = arrays[LSTM_PREFIX.format(r=0, layer=0) + "W_P_0"].shape
    given: dict = {}
    if options_file is not None:
        given = json.loads(Path(options_file).read_text(encoding="utf-8"))
    else:
        logger.warning("no options.json given: using clip 3.0 and skip connections (the published models' values)")
    lstm = given.get("lstm", {})
    cnn = given.get("char_cnn", {})
    return ElmoOptions(
        projection_dim=int(p),
        cell_dim=int(c),
        n_layers=n_layers,
        cell_clip=lstm.get("cell_clip", 3.0) or None,
        proj_clip=lstm.get("proj_clip", 3.0) or None,
        use_skip_connections=bool(lstm.get("use_skip_connections", True)),
        filters=filters,
        n_highway=n_highway,
        char_embed_dim=int(arrays["char_embed"].shape[1]),
        activation=cnn.get("activation", "relu"),
        n_characters=262,
        max_characters_per_token=int(cnn.get("max_characters_per_token", 50)),
    )


def convert_tf(checkpoint: PathLike, dest: PathLike, *, options_file: PathLike | None = None) -> tuple[Path, Path]:
    """Write ``dest/options.json`` + ``dest/weights.hdf5`` from a bilm-tf or TF-Hub checkpoint.

    The result is loaded once with :func:`elmo_fast.weights.load_weights` before returning, so a
    shape that does not fit is reported here. Returns the two paths.
    """
    import h5py

    arrays = read_checkpoint(checkpoint)
    options = infer_options(arrays, options_file)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    options_path, weights_path = dest / "options.json", dest / "weights.hdf5"
    options_path.write_text(json.dumps(options.to_json_dict(), indent=2) + "\n", encoding="utf-8")
    with h5py.File(weights_path, "w") as out:
        for name, array in arrays.items():
            out.create_dataset(name, data=np.ascontiguousarray(array), **CHECKSUM)
    load_weights(options_path, weights_path)
    logger.info("wrote %s and %s (%d tensors)", options_path, weights_path, len(arrays))
    return options_path, weights_path
