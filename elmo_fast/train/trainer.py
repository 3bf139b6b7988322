"""The training loop (seeded, checkpointed, exactly resumable) and held-out perplexity."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elmo_fast.train.checkpoint import CHECKPOINT_NAME, export_model, load_checkpoint, save_checkpoint
from elmo_fast.train.config import SORT_CHUNK_BATCHES, TrainConfig
from elmo_fast.train.data import (
    EncodedCorpus,
    SentenceBatches,
    Vocabulary,
    WindowStream,
    encode_corpus,
    epoch_order,
    read_sentences,
)
from elmo_fast.train.model import BiLanguageModel, LstmState, initial_weights
from elmo_fast.train.softmax import sample_log_uniform

logger = logging.getLogger(__name__)


@dataclass
class Perplexity:
    """Held-out perplexity: per direction, and ``mean`` = their average (as the ELMo paper reports);
    ``nll`` the mean negative log-likelihood per direction; ``n_predictions`` per direction (words
    plus one sentence end each); ``oov_rate`` the fraction of targets outside the vocabulary."""

    forward: float
    backward: float
    mean: float
    nll_forward: float
    nll_backward: float
    n_predictions: int
    oov_rate: float

    def __str__(self) -> str:
        return (
            f"perplexity forward {self.forward:.2f}, backward {self.backward:.2f}, mean {self.mean:.2f} "
            f"({self.n_predictions} predictions per direction, {100 * self.oov_rate:.2f}% <UNK> targets)"
        )


@dataclass
class TrainResult:
    """How a :func:`train` call ended (``last_loss``: the last step's mean of both directions;
    ``start_step``: the step this call started at, 0 or the checkpoint's when resumed;
    ``steps_run``: the updates this call made)."""

    step: int
    epoch: int
    finished: bool
    last_loss: float
    tokens_per_second: float
    elapsed: float
    checkpoint: Path
    export_dir: Path | None
    dev: Perplexity | None
    start_step: int = 0
    steps_run: int = 0


EVAL_STATES: tuple[str, ...] = ("zero", "carry")


@torch.no_grad()
def evaluate(
    model: BiLanguageModel,
    corpus: EncodedCorpus,
    batch_size: int = 64,
    n_steps: int = 20,
    *,
    state: str = "zero",
    progress: bool = False,
) -> Perplexity:
    """Perplexity of ``model`` on ``corpus``: full softmax, no dropout, every prediction counted.

    ``state="zero"``: every sentence is read on its own from zero state (the result does not depend
    on ``batch_size`` or on the order of sentences; this is how ``ElmoEmbedder(state="zero")`` runs).
    ``state="carry"``: the corpus is read in order as ``batch_size`` row streams in windows of
    ``n_steps`` with the state carried across windows and sentences, as in training (the result
    depends on ``batch_size`` and ``n_steps``).
    """
    from tqdm import tqdm

    if state not in EVAL_STATES:
        raise ValueError(f"state must be one of {EVAL_STATES}, not {state!r}")
    was_training = model.training
    model.eval()
    if state == "zero":
        batches = SentenceBatches(corpus, np.arange(corpus.n_sentences), batch_size)
        windows, total = (batches.window(k) for k in range(len(batches))), len(batches)
    else:
        stream = WindowStream(corpus, np.arange(corpus.n_sentences), batch_size, n_steps, drop_remainder=False)
        windows, total = (stream.window(k) for k in range(len(stream))), len(stream)
    carried = model.zero_state(batch_size)
    sums = torch.zeros(2, dtype=torch.float64)
    count = 0
    for window in tqdm(windows, total=total, desc="perplexity", disable=not progress, dynamic_ncols=True):
        start = carried if state == "carry" else model.zero_state(window.lengths.shape[0])
        nll, n, carried = model.window_nll(window, corpus.char_ids, start)
        sums += nll.double().cpu()
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("the held-out corpus has no sentences")
    nll_f, nll_b = (float(x) for x in sums / count)
    ppl_f, ppl_b = math.exp(nll_f), math.exp(nll_b)
    return Perplexity(ppl_f, ppl_b, (ppl_f + ppl_b) / 2, nll_f, nll_b, count, corpus.oov_rate())


def corpus_fingerprint(corpus: EncodedCorpus) -> str:
    """A hash of the encoded corpus: a resumed run must read the same data."""
    h = hashlib.sha256()
    for array in (corpus.tokens, corpus.offsets, corpus.target_ids, corpus.char_ids.numpy()):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def _optimizer(config: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=config.lr, initial_accumulator_value=config.adagrad_initial_accumulator)
    return torch.optim.Adam(params, lr=config.lr, betas=config.adam_betas)


class _StopFlag:
    """Set by SIGINT/SIGTERM: the loop checkpoints at the next step boundary and returns."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """One training run: data, model, optimizer, random generators and position.

    Everything that shapes the trajectory is saved by :meth:`checkpoint` and restored by
    ``resume=True``, so a resumed run continues bit-identically.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = logger.info) -> None:
        self.config, self.log = config, log
        self.out_dir = Path(config.output_dir)
        self.ckpt_path = self.out_dir / CHECKPOINT_NAME
        if not resume and self.ckpt_path.exists():
            raise FileExistsError(f"{self.ckpt_path} exists: pass --resume to continue it, or choose another output_dir")
        sentences = list(read_sentences(config.train_file, config.input_format))
        if not sentences:
            raise ValueError(f"{config.train_file}: no sentences")
        self.vocab = Vocabulary.build(sentences, config.vocab_size, config.min_count)
        self.corpus = encode_corpus(sentences, self.vocab)
        del sentences
        self.fingerprint = corpus_fingerprint(self.corpus)
        self.dev = encode_corpus(read_sentences(config.dev_file, config.input_format), self.vocab) if config.dev_file else None
        self.carry = config.state == "carry"
        self.n_samples = config.softmax_samples

        torch.manual_seed(config.seed)
        self.model = BiLanguageModel(initial_weights(config.model, config.seed), len(self.vocab), backend=config.backend, seed=config.seed)
        self.params = list(self.model.parameters())
        self.optimizer = _optimizer(config, self.params)
        self.sampler = torch.Generator().manual_seed(config.seed + 2)
        self.epoch = self.window = self.step = self.tokens = 0
        self.elapsed = 0.0
        self.state: LstmState = self.model.zero_state(config.batch_size)
        if resume:
            self._restore(load_checkpoint(self.ckpt_path))
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(config.to_json_dict(), indent=2) + "\n", encoding="utf-8")
            self.vocab.save(self.out_dir / "vocab.txt")
        self.data = self._epoch_data(self.epoch)
        if len(self.data) == 0:
            raise ValueError(f"{config.train_file}: too little text for one step of batch_size={config.batch_size}")
        per_epoch = config.epochs * len(self.data)
        self.total_steps = per_epoch if config.max_steps is None else min(config.max_steps, per_epoch)

    def _restore(self, ckpt: dict) -> None:
        saved, wanted = TrainConfig.from_json_dict(ckpt["config"]).trajectory(), self.config.trajectory()
        if saved != wanted:
            diff = sorted(k for k in saved if saved[k] != wanted[k])
            raise ValueError(f"{self.ckpt_path}: config differs from the checkpoint's in {', '.join(diff)}; an exact resume needs them equal")
        if ckpt["fingerprint"] != self.fingerprint:
            raise ValueError(f"{self.ckpt_path}: {self.config.train_file} changed since the checkpoint was written")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.sampler.set_state(ckpt["sampler_rng"])
        self.epoch, self.window, self.step, self.tokens, self.elapsed = (
            ckpt[k] for k in ("epoch", "window", "step", "tokens", "elapsed")
        )
        self.state = (ckpt["state_h"], ckpt["state_c"])

    def checkpoint(self) -> None:
        """Write ``output_dir/checkpoint.pt`` (atomically)."""
        save_checkpoint(
            self.ckpt_path,
            {
                "config": self.config.to_json_dict(), "vocab": self.vocab.words, "fingerprint": self.fingerprint,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "sampler_rng": self.sampler.get_state(),
                "epoch": self.epoch, "window": self.window, "step": self.step, "tokens": self.tokens,
                "elapsed": self.elapsed, "state_h": self.state[0], "state_c": self.state[1],
            },
        )

    def _epoch_data(self, epoch: int) -> WindowStream | SentenceBatches:
        c = self.config
        order = epoch_order(self.corpus.n_sentences, c.seed, epoch)
        if self.carry:
            return WindowStream(self.corpus, order, c.batch_size, c.n_steps, drop_remainder=True)
        return SentenceBatches(self.corpus, order, c.batch_size, SORT_CHUNK_BATCHES * c.batch_size)

    def _next_epoch(self) -> None:
        if self.dev is not None:
            self.log(f"epoch {self.epoch} done, dev {self.evaluate_dev()}")
        self.epoch, self.window = self.epoch + 1, 0
        self.state = self.model.zero_state(self.config.batch_size)
        self.data = self._epoch_data(self.epoch)

    def evaluate_dev(self) -> Perplexity | None:
        """Zero-state perplexity on ``dev_file`` (None without one)."""
        return None if self.dev is None else evaluate(self.model, self.dev, self.config.batch_size)

    def train_step(self) -> tuple[float, float]:
        """One update on the next window; returns the forward and backward mean losses."""
        c = self.config
        t0 = time.monotonic()
        samples = None if self.n_samples is None else sample_log_uniform(len(self.vocab), self.n_samples, self.sampler)
        batch = self.data.window(self.window)
        start = self.state if self.carry else self.model.zero_state(batch.lengths.shape[0])
        nll, n, new_state = self.model.window_nll(batch, self.corpus.char_ids, start, dropout=c.dropout, samples=samples)
        losses = nll / n
        self.optimizer.zero_grad(set_to_none=True)
        (losses.mean() * c.effective_loss_scale).backward()
        if c.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, c.clip_norm)
        self.optimizer.step()
        if self.carry:
            self.state = (new_state[0].detach(), new_state[1].detach())
        self.window, self.step, self.tokens = self.window + 1, self.step + 1, self.tokens + n
        self.elapsed += time.monotonic() - t0
        loss_f, loss_b = (float(x) for x in losses.detach())
        return loss_f, loss_b

    @property
    def tokens_per_second(self) -> float:
        """Predictions per direction per second of update time (data, forward, backward, step)."""
        return self.tokens / max(self.elapsed, 1e-9)

    def run(self, *, progress: bool = True, stop_after_seconds: float | None = None) -> TrainResult:
        """Train until ``total_steps``, a stop signal (SIGINT/SIGTERM) or ``stop_after_seconds``."""
        from tqdm import tqdm

        c = self.config
        self.log(
            f"training: {self.corpus.n_sentences} sentences, {self.corpus.n_predictions} predictions per direction "
            f"per epoch, vocabulary {len(self.vocab)} "
            f"({'full softmax' if self.n_samples is None else f'sampled softmax, {self.n_samples} samples'}), "
            f"{sum(p.numel() for p in self.model.bilm.parameters())} biLM parameters, {len(self.data)} steps per epoch "
            f"({'state carried' if self.carry else 'whole sentences from zero state'}), {self.total_steps} steps"
            + (f", resuming at step {self.step}" if self.step else "")
        )
        self.model.train()
        started = time.monotonic()
        recent: list[tuple[float, float]] = []
        last = float("nan")
        start_step, steps_run = self.step, 0
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not progress, dynamic_ncols=True, desc="train", mininterval=2.0)
        with _StopFlag() as stop:
            while self.step < self.total_steps and self.epoch < c.epochs:
                if self.window >= len(self.data):
                    self._next_epoch()
                    continue
                recent.append(self.train_step())
                steps_run += 1
                last = sum(recent[-1]) / 2
                bar.update(1)
                bar.set_postfix(loss=f"{last:.3f}", tok_s=f"{self.tokens_per_second:.0f}", refresh=False)
                if self.step % c.log_every == 0 or self.step == self.total_steps:
                    f_avg, b_avg = (sum(x) / len(recent) for x in zip(*recent))
                    recent.clear()
                    self.log(
                        f"step {self.step}/{self.total_steps} epoch {self.epoch} loss {(f_avg + b_avg) / 2:.4f} "
                        f"(forward {f_avg:.4f}, backward {b_avg:.4f}) {self.tokens_per_second:.0f} tokens/s, "
                        f"{self.elapsed:.0f}s training"
                    )
                out_of_time = stop_after_seconds is not None and time.monotonic() - started >= stop_after_seconds
                if self.step % c.checkpoint_every == 0 or stop.requested or out_of_time:
                    self.checkpoint()
                if stop.requested or out_of_time:
                    self.log(f"stopped at step {self.step}; checkpoint written to {self.ckpt_path} (continue with --resume)")
                    break
        bar.close()
        finished = self.step >= self.total_steps or self.epoch >= c.epochs
        self.checkpoint()
        export_dir = dev = None
        if finished:
            dev = self.evaluate_dev()
            if dev is not None:
                self.log(f"final dev {dev}")
            export_dir = export_model(self.model, self.vocab, self.out_dir / "model")
            self.log(f"exported {export_dir}/options.json, weights.hdf5, vocab.txt")
        return TrainResult(self.step, self.epoch, finished, last, self.tokens_per_second, self.elapsed, self.ckpt_path, export_dir, dev, start_step, steps_run)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_seconds: float | None = None,
    log: Callable[[str], None] = logger.info,
) -> TrainResult:
    """Pretrain a biLM as ``config`` says; checkpoints go to ``config.output_dir``.

    ``resume`` continues from ``output_dir/checkpoint.pt`` exactly where it stopped (same data
    position, carried state, optimizer and RNG states: the continuation is bit-identical to an
    uninterrupted run). ``stop_after_seconds`` checkpoints and returns once this much time has
    passed. When the run completes, the model is exported to ``output_dir/model``. Progress lines
    go to ``log`` (default: the ``elmo_fast.train.trainer`` logger at INFO).
    """
    return Trainer(config, resume=resume, log=log).run(progress=progress, stop_after_seconds=stop_after_seconds)
