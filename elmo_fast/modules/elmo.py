"""``Elmo``: AllenNLP's ``allennlp.modules.elmo.Elmo``, same arguments, same outputs, same numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from elmo_fast import _backends
from elmo_fast.modules.bilm import BiLm
from elmo_fast.modules.runtime import DEFAULT_MAX_SENTENCE_LENGTH, RuntimeOptions
from elmo_fast.modules.scalar_mix import ScalarMix
from elmo_fast.modules.token_cache import DEFAULT_TOKEN_CACHE_SIZE
from elmo_fast.reference.char_ids import remove_sentence_boundaries
from elmo_fast.weights import PathLike, load_weights


def load_bilm(
    options_file: PathLike | None,
    weight_file: PathLike | None,
    *,
    requires_grad: bool = False,
    vocab_to_cache: Sequence[str] | None = None,
    runtime: RuntimeOptions | None = None,
    **runtime_options: Any,
) -> BiLm:
    """Build a :class:`BiLm` from files on ``runtime.device``: both None is the bundled default
    model; a model name (or a folder) with ``weight_file=None`` is fetched by
    :func:`elmo_fast.models.resolve`.

    ``runtime`` (:class:`~elmo_fast.modules.runtime.RuntimeOptions`) says how it runs; its fields
    given as keywords (``state="zero"``, ``backend="cpp"``, ...) override it.
    """
    runtime = RuntimeOptions.merge(runtime, **runtime_options)
    if options_file is None and weight_file is not None:
        raise ValueError("give both options_file and weight_file, a model name alone, or neither (bundled default model)")
    if options_file is None:
        from elmo_fast.default_model import default_model_files

        options_file, weight_file = default_model_files()
    elif weight_file is None:
        from elmo_fast.models import resolve

        options_file, weight_file = resolve(options_file)
    weights = load_weights(options_file, weight_file)
    bilm = BiLm(weights, requires_grad=requires_grad, runtime=runtime)
    target = runtime.target_device
    _backends.resolve(runtime.backend, target)
    bilm.to(target)
    if vocab_to_cache is not None:
        bilm.cache_vocab(vocab_to_cache)
    return bilm


class Elmo(nn.Module):
    """ELMo representations for a downstream model: ``N`` learned scalar mixes of the biLM layers.

    Positional arguments and defaults are AllenNLP 2.10's. ``forward(inputs, word_inputs=None)``
    takes int64 character ids ``(B, T, 50)`` (or ``(..., T, 50)``; leading dims are restored) from
    :func:`elmo_fast.batch_to_ids` and returns ``{"elmo_representations": [N tensors (B, T, 2P)],
    "mask": (B, T) bool}``. Dropout applies in training mode, as in AllenNLP (call ``.eval()``).

    Args:
        options_file, weight_file: the model files; both None uses the bundled default model; a model
            name (`elmo-fast models list`) or folder as options_file with weight_file None fetches it.
        num_output_representations: N, one ScalarMix each (``scalar_mix_{k}`` in the state dict).
        requires_grad: train the biLM's weights too.
        do_layer_norm: AllenNLP's batch-wide layer norm before mixing (``"token"``: per position,
            batch-independent).
        dropout: dropout probability on each output representation.
        vocab_to_cache: words whose embeddings are precomputed; pass ``word_inputs`` ids then.
        keep_sentence_boundaries: keep the begin/end positions (shapes T + 2). With
            ``do_layer_norm=True`` the padding then holds the normalised zero, as in AllenNLP.
        scalar_mix_parameters: fixed, frozen mixing logits s (L + 1 floats).
        module: an existing :class:`BiLm` to use instead of loading files.
        state, backend, device, max_sentence_length, weight_precision, token_cache_size: how the
            biLM runs (keyword-only; defaults ``"carry"``, ``"auto"``, CPU, 100 000 tokens,
            ``"fp32"``, 10 000 tokens); see :class:`~elmo_fast.modules.runtime.RuntimeOptions`.
    """

    def __init__(
        self,
        options_file: PathLike | None,
        weight_file: PathLike | None,
        num_output_representations: int,
        requires_grad: bool = False,
        do_layer_norm: bool | str = False,
        dropout: float = 0.5,
        vocab_to_cache: Sequence[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: Sequence[float] | None = None,
        module: BiLm | None = None,
        *,
        state: str = "carry",
        backend: str = "auto",
        device: torch.device | str | None = None,
        max_sentence_length: int = DEFAULT_MAX_SENTENCE_LENGTH,
        weight_precision: str = "fp32",
        token_cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    ) -> None:
        super().__init__()
        if isinstance(num_output_representations, bool) or not isinstance(num_output_representations, int) or num_output_representations < 1:
            raise ValueError(f"num_output_representations must be a positive integer, got {num_output_representations!r}")
        if module is not None:
            if options_file is not None or weight_file is not None:
                raise ValueError("pass either module or options_file/weight_file, not both")
            if not isinstance(module, BiLm):
                raise TypeError(f"module must be an elmo_fast BiLm, got {type(module).__name__}")
            self._elmo_lstm = module
        else:
            runtime = RuntimeOptions(
                state=state, backend=backend, device=device, weight_precision=weight_precision,
                token_cache_size=token_cache_size, max_sentence_length=max_sentence_length,
            )
            self._elmo_lstm = load_bilm(
                options_file, weight_file, requires_grad=requires_grad, vocab_to_cache=vocab_to_cache, runtime=runtime
            )
        self._has_cached_vocab = vocab_to_cache is not None
        self._keep_sentence_boundaries = keep_sentence_boundaries
        self._dropout = nn.Dropout(p=dropout)
        self._scalar_mixes: list[ScalarMix] = []
        for k in range(num_output_representations):
            mix = ScalarMix(
                self._elmo_lstm.num_layers,
                do_layer_norm=do_layer_norm,
                initial_scalar_parameters=scalar_mix_parameters,
                trainable=scalar_mix_parameters is None,
            )
            self.add_module(f"scalar_mix_{k}", mix)
            self._scalar_mixes.append(mix)
        if device is not None:
            self.to(device)

    def get_output_dim(self) -> int:
        """2P, the width of each representation."""
        return self._elmo_lstm.get_output_dim()

    def reset_states(self) -> None:
        """Forget the carried biLM state (``state="carry"``)."""
        self._elmo_lstm.reset_states()

    def batch_to_ids(self, batch: Sequence[Sequence[str]]) -> torch.Tensor:
        """This model's input ids for a batch of tokenised sentences (:meth:`BiLm.batch_to_ids`:
        :func:`elmo_fast.batch_to_ids` for bilm-tf models, the lexicon's ids for converted ones)."""
        return self._elmo_lstm.batch_to_ids(batch)

    def forward(self, inputs: torch.Tensor, word_inputs: torch.Tensor | None = None) -> dict[str, Any]:
        """Embed character ids; see the class docstring for shapes."""
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a torch.Tensor of character ids (see batch_to_ids), got {type(inputs).__name__}")
        width = self._elmo_lstm.options.id_width
        if inputs.dim() < 3 or inputs.shape[-1] != width:
            raise ValueError(f"inputs must have shape (..., T, {width}), got {tuple(inputs.shape)}")
        if inputs.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"inputs must hold integer character ids, got dtype {inputs.dtype}")
        original_shape = inputs.shape
        rows = math.prod(original_shape[:-2])
        reshaped = inputs.reshape(rows, original_shape[-2], original_shape[-1]).long()
        reshaped_words = None
        if word_inputs is not None and self._has_cached_vocab:
            reshaped_words = word_inputs.reshape(rows, word_inputs.shape[-1])
        bilm = self._elmo_lstm(reshaped, reshaped_words)
        representations = []
        mask = bilm.mask
        for mix in self._scalar_mixes:
            mixed = mix(bilm.activations, bilm.mask)
            if not self._keep_sentence_boundaries:
                mixed, mask = remove_sentence_boundaries(mixed, bilm.mask)
            representations.append(self._dropout(mixed))
        lead = original_shape[:-2]
        mask = mask.reshape(*lead, mask.shape[-1])
        representations = [r.reshape(*lead, *r.shape[-2:]) for r in representations]
        return {"elmo_representations": representations, "mask": mask}
