"""``BiLm``: the ELMo biLM as an ``nn.Module`` — parameters, backend choice and carried state."""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from elmo_fast import _backends
from elmo_fast.modules.runtime import DEFAULT_MAX_SENTENCE_LENGTH, STATES, RuntimeOptions, check_state
from elmo_fast.modules.token_cache import TokenCache
from elmo_fast.ops.char_ids import char_ids
from elmo_fast.ops.lstmp import lstmp
from elmo_fast.ops.registry import weight_stamp
from elmo_fast.ops.token_encoder import ROW_EXACT, token_encoder
from elmo_fast.reference.bilm import BiLmOutput, bilm_ref
from elmo_fast.reference.char_ids import BOS_TOKEN, EOS_TOKEN, add_sentence_boundaries, length_mask
from elmo_fast.reference.lowp import products_precision, projection_precision
from elmo_fast.weights import ElmoWeights

__all__ = ["DEFAULT_MAX_SENTENCE_LENGTH", "NUM_CHAR_IDS", "STATES", "WARMUP_TEXT", "BiLm", "check_state"]

# The built-in text that warms the LSTM state for state="warm": plain, neutral English prose read
# sentence by sentence from zero state, as a stateful AllenNLP model would have read it.
WARMUP_TEXT: tuple[str, ...] = (
    "The history of the town goes back more than three hundred years .",
    "It was founded by farmers who settled near the river , where the soil was good .",
    "Over time a market grew up around the old bridge , and the town became a small trading centre .",
    "Today about twenty thousand people live there , and many of them work in the nearby city .",
    "The town has two schools , a library , a hospital and a park beside the water .",
    "In summer , visitors come to walk along the river and to see the old buildings .",
    "Local people say that the best time to visit is early in the autumn , when the weather is mild .",
    "The museum tells the story of the first families and of the trade that made the town rich .",
)
# Character ids are bytes + 1 plus the begin/end-of-word and padding symbols: 0 <= id < 262.
NUM_CHAR_IDS: int = 262


def _check_ids(ids: torch.Tensor, what: str, size: int, hint: str) -> None:
    """Reject ``ids`` unless an integer tensor with every value in ``[0, size)`` (one min/max).

    Under a tracer (``torch.compile``, ``torch.export``) the values are not known while the graph is
    built, so only type and dtype are checked there; the compiled graph does not check the range.
    """
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor {hint}, got {type(ids).__name__}")
    if ids.dtype == torch.bool or ids.dtype.is_floating_point or ids.dtype.is_complex:
        raise TypeError(f"{what} must be an integer tensor {hint}, got dtype {ids.dtype}")
    if ids.numel() and not torch.compiler.is_compiling():
        low, high = (int(v) for v in torch.aminmax(ids))
        if low < 0 or high >= size:
            raise ValueError(f"{what} must lie in [0, {size}) {hint}, got values from {low} to {high}")


class BiLm(nn.Module):
    """The pretrained biLM (char-CNN token encoder + biLSTM), AllenNLP's ``_ElmoBiLm``.

    Args:
        weights: the model, e.g. from :func:`elmo_fast.weights.load_weights`.
        requires_grad: whether the biLM's parameters are trainable.
        vocab_to_cache: words whose token embeddings are computed once; ``forward`` then accepts
            ``word_inputs`` (ids into this list; id 0 is padding).
        runtime: the runtime options (:class:`~elmo_fast.modules.runtime.RuntimeOptions`); ``state``,
            ``backend``, ``max_sentence_length``, ``token_cache_size`` and ``weight_precision`` given
            as keywords override it (None: from ``runtime``, else its default). With ``state="warm"``
            every sentence starts from the state reached by reading :data:`WARMUP_TEXT` (computed
            once per set of weights). The token cache serves repeated words without running the
            char-CNN again, only on a backend whose encoder is row-exact (``cpp``) and without
            gradients. ``weight_precision`` other than ``"fp32"`` is not for ``requires_grad``.
    """

    def __init__(
        self,
        weights: ElmoWeights,
        requires_grad: bool = False,
        *,
        state: str | None = None,
        backend: str | None = None,
        vocab_to_cache: Sequence[str] | None = None,
        max_sentence_length: int | None = None,
        token_cache_size: int | None = None,
        weight_precision: str | None = None,
        runtime: RuntimeOptions | None = None,
    ) -> None:
        super().__init__()
        runtime = RuntimeOptions.merge(
            runtime, state=state, backend=backend, max_sentence_length=max_sentence_length,
            token_cache_size=token_cache_size, weight_precision=weight_precision,
        )
        if requires_grad and runtime.weight_precision != "fp32":
            raise ValueError(f"weight_precision={runtime.weight_precision!r} is for inference; use 'fp32' with requires_grad=True")
        self.runtime = runtime
        self.weight_precision = runtime.weight_precision
        self.max_sentence_length = runtime.max_sentence_length
        self.options = weights.options
        self.state = runtime.state
        self.backend = runtime.backend
        for name, tensor in weights.tensors().items():
            self.register_parameter(name, nn.Parameter(tensor.detach().clone(), requires_grad=requires_grad))
        self._states: tuple[torch.Tensor, torch.Tensor] | None = None
        self._warm: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None
        self._word_embedding: torch.Tensor | None = None
        self._boundary_embedding: torch.Tensor | None = None
        self.token_cache = TokenCache(runtime.token_cache_size) if runtime.token_cache_size else None
        if vocab_to_cache is not None:
            self.cache_vocab(vocab_to_cache)

    @property
    def num_layers(self) -> int:
        """L + 1: the number of layers returned (token layer plus each biLSTM layer)."""
        return self.options.n_layers + 1

    def get_output_dim(self) -> int:
        """2P, the width of every returned layer."""
        return self.options.output_dim

    def batch_to_ids(self, batch: Sequence[Sequence[str]]) -> torch.Tensor:
        """This model's ids for a batch of tokenised sentences: bilm-tf's byte ids
        (:func:`elmo_fast.batch_to_ids`), or for a model with a character lexicon (converted from
        ELMoForManyLangs) its lexicon's ids, ``(B, T, options.id_width)``."""
        if self.options.lexicon_file is None:
            return char_ids(batch)
        from elmo_fast.reference.lexicon_ids import load_lexicon

        return load_lexicon(self.options.lexicon_file, self.options.bos_ids, self.options.eos_ids).batch_to_ids(batch)

    def weights(self) -> ElmoWeights:
        """The current parameters as an :class:`ElmoWeights` (shares storage; export with
        :func:`elmo_fast.weights.save_weights`)."""
        return ElmoWeights.from_tensors(self.options, dict(self.named_parameters()))

    def reset_states(self) -> None:
        """Forget the carried state: the next call starts every row from zero."""
        self._states = None

    @property
    def carried_state(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The state ``state="carry"`` hands to the next call: ``(h (L, rows, 2P), c (L, rows, 2C))`` or None."""
        return self._states

    @carried_state.setter
    def carried_state(self, value: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self._states = value

    def resolved_backend(self, device: torch.device) -> str:
        """The backend that runs on ``device`` for this module."""
        return _backends.resolve(self.backend, device)

    @torch.no_grad()
    def cache_vocab(self, vocab: Sequence[str], batch_size: int = 512) -> None:
        """Precompute token embeddings for ``vocab`` (AllenNLP's ``vocab_to_cache``)."""
        if self.options.lexicon_file is not None:
            raise ValueError("vocab_to_cache is for bilm-tf character ids; this model reads a character lexicon")
        device = self.char_embed.device
        backend = self.resolved_backend(device)
        words = [BOS_TOKEN, EOS_TOKEN, *vocab]
        pieces = []
        for start in range(0, len(words), batch_size):
            ids = char_ids([[w] for w in words[start : start + batch_size]]).to(device)[:, 0]
            pieces.append(
                token_encoder(ids, self.weights().char_cnn, self.options.activation, backend=backend, weight_precision=self.weight_precision)
            )
        table = torch.cat(pieces)
        self._boundary_embedding = table[:2]
        self._word_embedding = table[2:]

    def _embed_words(self, word_inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._word_embedding is not None and self._boundary_embedding is not None
        token_mask = word_inputs > 0
        emb = self._word_embedding[word_inputs] * token_mask.unsqueeze(-1)
        batch, width = token_mask.shape
        lengths = token_mask.sum(dim=1)
        out = emb.new_zeros(batch, width + 2, emb.shape[-1])
        out[:, 1 : width + 1] = emb
        out[:, 0] = self._boundary_embedding[0]
        out[torch.arange(batch, device=out.device), lengths + 1] = self._boundary_embedding[1]
        return out, length_mask(lengths + 2, width + 2)

    @torch.no_grad()
    def warm_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``state="warm"`` starting state, ``(L, 1, 2P)`` and ``(L, 1, 2C)``.

        Computed by reading :data:`WARMUP_TEXT` one sentence at a time with carried state from zero;
        cached, and recomputed when any parameter changes (e.g. during fine-tuning).
        """
        versions = tuple(p._version for p in self.parameters())
        stale = self._warm is None or self._warm[0] != versions
        if stale or self._warm[1].device != self.char_embed.device or self._warm[1].dtype != self.char_embed.dtype:
            h = c = None
            for sentence in WARMUP_TEXT:
                out = self._run(self.batch_to_ids([sentence.split()]), None, h, c)
                h, c = out.final_h, out.final_c
            self._warm = (versions, h, c)
        return self._warm[1], self._warm[2]

    def _use_token_cache(self, backend: str) -> bool:
        # Not under a tracer: the cache is Python state that changes with every batch.
        if self.token_cache is None or backend not in ROW_EXACT or self.options.n_words or torch.compiler.is_compiling():
            return False
        return not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))

    def _embed_tokens_cached(self, char_ids: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings with boundaries ``(B, T + 2, P)`` and their mask, through the token cache."""
        assert self.token_cache is not None
        ids, mask = add_sentence_boundaries(char_ids, (char_ids > 0).any(dim=-1), self.options.bos_ids, self.options.eos_ids)
        unique, inverse = torch.unique(ids.reshape(-1, ids.shape[-1]), dim=0, return_inverse=True)
        cnn = self.weights().char_cnn
        # the products' precisions too (ELMO_FAST_PRODUCTS may change between calls)
        stamp = (
            *((id(p), *weight_stamp(p)) for n, p in self.named_parameters() if not n.startswith("lstm_")),
            products_precision(self.weight_precision),
            projection_precision(self.weight_precision),
        )
        encode = partial(token_encoder, weights=cnn, activation=self.options.activation, backend=backend, weight_precision=self.weight_precision)
        table = self.token_cache.embed(unique, encode, stamp)
        return table[inverse].reshape(*ids.shape[:-1], table.shape[-1]), mask

    def _initial_state(self, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self._states is None:
            return None, None
        # The carried state follows the model: after model.to(device or dtype), or a state
        # restored from a file, it is moved to the parameters' device and dtype once.
        like = self.char_embed
        h, c = (s.to(device=like.device, dtype=like.dtype) for s in self._states)
        self._states = (h, c)
        stored = h.shape[1]
        if batch > stored:
            h = torch.cat((h, h.new_zeros(h.shape[0], batch - stored, h.shape[2])), dim=1)
            c = torch.cat((c, c.new_zeros(c.shape[0], batch - stored, c.shape[2])), dim=1)
            self._states = (h, c)
        return h[:, :batch], c[:, :batch]

    def _store_state(self, final_h: torch.Tensor, final_c: torch.Tensor) -> None:
        final_h, final_c = final_h.detach(), final_c.detach()
        if self._states is None:
            self._states = (final_h, final_c)
            return
        batch = final_h.shape[1]
        merged = []
        for old, new in zip(self._states, (final_h, final_c)):
            # AllenNLP keeps a row's old state when its new layer-0 state sums to exactly 0.
            unused = (new[0].sum(-1) == 0).view(1, batch, 1).to(new.dtype)
            rows = new + old[:, :batch] * unused
            merged.append(torch.cat((rows, old[:, batch:]), dim=1) if old.shape[1] > batch else rows)
        self._states = (merged[0], merged[1])

    def forward(
        self,
        char_ids: torch.Tensor,
        word_inputs: torch.Tensor | None = None,
        *,
        state: str | None = None,
    ) -> BiLmOutput:
        """Run on integer ``(B, T, 50)`` character ids; see :class:`BiLmOutput`.

        ``word_inputs`` (with ``vocab_to_cache``): integer ``(B, T')`` ids into the cached
        vocabulary, used instead of the character ids. ``state`` overrides the module's mode for
        this call only. Ids of the wrong type, shape or range raise ``TypeError``/``ValueError``.
        """
        mode = check_state(state or self.state)
        width = self.options.id_width
        if not isinstance(char_ids, torch.Tensor) or char_ids.dim() != 3 or char_ids.shape[-1] != width:
            _check_ids(char_ids, "character ids", NUM_CHAR_IDS, "(see batch_to_ids)")
            raise ValueError(f"character ids must have shape (B, T, {width}), got {tuple(char_ids.shape)}")
        n_chars = self.options.n_characters if self.options.lexicon_file else NUM_CHAR_IDS
        _check_ids(char_ids[..., :50], "character ids", n_chars, "(see BiLm.batch_to_ids)")
        if self.options.n_words:
            _check_ids(char_ids[..., 50], "word ids", self.options.n_words, "(see BiLm.batch_to_ids)")
        if word_inputs is not None and self._word_embedding is not None:
            _check_ids(word_inputs, "word_inputs", self._word_embedding.shape[0], "(ids into vocab_to_cache)")
            if word_inputs.dim() != 2 or word_inputs.shape[0] != char_ids.shape[0]:
                raise ValueError(
                    f"word_inputs must have shape (B, T) with B = {char_ids.shape[0]} as the character ids, "
                    f"got {tuple(word_inputs.shape)}"
                )
        if char_ids.shape[1] > self.max_sentence_length:
            raise ValueError(
                f"a sentence of {char_ids.shape[1]} tokens exceeds max_sentence_length={self.max_sentence_length}; "
                "split it or raise the limit (output memory grows by "
                f"{4 * self.num_layers * self.get_output_dim()} bytes per token)"
            )
        batch = char_ids.shape[0]
        h0 = c0 = None
        if mode == "carry":
            h0, c0 = self._initial_state(batch)
        elif mode == "warm":
            h0, c0 = (s.expand(-1, batch, -1) for s in self.warm_state())
        out = self._run(char_ids, word_inputs, h0, c0)
        if mode == "carry":
            self._store_state(out.final_h, out.final_c)
        return out

    def _run(
        self,
        char_ids: torch.Tensor,
        word_inputs: torch.Tensor | None,
        h0: torch.Tensor | None,
        c0: torch.Tensor | None,
    ) -> BiLmOutput:
        device = self.char_embed.device
        char_ids = char_ids.to(device)
        backend = self.resolved_backend(device)
        token_embedding = mask = None
        if word_inputs is not None and self._word_embedding is not None:
            token_embedding, mask = self._embed_words(word_inputs.to(device))
        elif self._use_token_cache(backend):
            token_embedding, mask = self._embed_tokens_cached(char_ids, backend)
        return bilm_ref(
            char_ids,
            self.weights(),
            h0,
            c0,
            token_embedding=token_embedding,
            mask=mask,
            encoder=partial(token_encoder, backend=backend, weight_precision=self.weight_precision),
            lstmp=partial(lstmp, backend=backend, weight_precision=self.weight_precision),
        )
