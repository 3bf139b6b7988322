"""The training loop (seeded, checkpointed, exactly resumable) and held-out perplexity."""
from __future__ import annotations

import hashlib
import json
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
    """How a :func:`train` call ended."""

    step: int
    epoch: int
    finished: bool
    last_loss: float
    tokens_per_second: float
    elapsed: float
    checkpoint: Path
    export_dir: Path | None
    dev: Perplexity | None


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


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_seconds: float | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Pretrain a biLM as ``config`` says; checkpoints go to ``config.output_dir``.

    ``resume`` continues from ``output_dir/checkpoint.pt`` exactly where it stopped (same data
    position, carried state, optimizer and RNG states: the continuation is bit-identical to an
    uninterrupted run). ``stop_after_seconds`` checkpoints and returns once this much time has
    passed. When the run completes, the model is exported to ``output_dir/model``.
    """
    from tqdm import tqdm

    out_dir = Path(config.output_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another output_dir")
    sentences = list(read_sentences(config.train_file))
    if not sentences:
        raise ValueError(f"{config.train_file}: no sentences")
    vocab = Vocabulary.build(sentences, config.vocab_size, config.min_count)
    corpus = encode_corpus(sentences, vocab)
    fingerprint = corpus_fingerprint(corpus)
    del sentences
    dev = encode_corpus(read_sentences(config.dev_file), vocab) if config.dev_file else None

    torch.manual_seed(config.seed)
    model = BiLanguageModel(initial_weights(config.model, config.seed), len(vocab), backend=config.backend, seed=config.seed)
    optimizer = _optimizer(config, list(model.parameters()))
    sampler = torch.Generator().manual_seed(config.seed + 2)
    n_samples = config.softmax_samples
    epoch = window = step = tokens = 0
    elapsed = 0.0
    state: LstmState = model.zero_state(config.batch_size)
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_json_dict(ckpt["config"]).trajectory()
        if saved != config.trajectory():
            diff = sorted(k for k in saved if saved[k] != config.trajectory()[k])
            raise ValueError(f"{ckpt_path}: config differs from the checkpoint's in {', '.join(diff)}; an exact resume needs them equal")
        if ckpt["fingerprint"] != fingerprint:
            raise ValueError(f"{ckpt_path}: {config.train_file} changed since the checkpoint was written")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        sampler.set_state(ckpt["sampler_rng"])
        epoch, window, step, tokens, elapsed = (ckpt[k] for k in ("epoch", "window", "step", "tokens", "elapsed"))
        state = (ckpt["state_h"], ckpt["state_c"])
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(config.to_json_dict(), indent=2) + "\n", encoding="utf-8")
        vocab.save(out_dir / "vocab.txt")

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "config": config.to_json_dict(), "vocab": vocab.words, "fingerprint": fingerprint,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "sampler_rng": sampler.get_state(),
                "epoch": epoch, "window": window, "step": step, "tokens": tokens, "elapsed": elapsed,
                "state_h": state[0], "state_c": state[1],
            },
        )

    carry = config.state == "carry"

    def epoch_data(e: int) -> WindowStream | SentenceBatches:
        order = epoch_order(corpus.n_sentences, config.seed, e)
        if carry:
            return WindowStream(corpus, order, config.batch_size, config.n_steps, drop_remainder=True)
        return SentenceBatches(corpus, order, config.batch_size, SORT_CHUNK_BATCHES * config.batch_size)

    stream = epoch_data(epoch)
    total_steps = config.epochs * len(stream) if config.max_steps is None else min(config.max_steps, config.epochs * len(stream))
    if len(stream) == 0:
        raise ValueError(f"{config.train_file}: too little text for one window of batch_size={config.batch_size}")
    log(
        f"training: {corpus.n_sentences} sentences, {corpus.n_predictions} predictions per direction per epoch, "
        f"vocabulary {len(vocab)} ({'full softmax' if n_samples is None else f'sampled softmax, {n_samples} samples'}), "
        f"{sum(p.numel() for p in model.bilm.parameters())} biLM parameters, {len(stream)} steps per epoch "
        f"({'state carried' if carry else 'whole sentences from zero state'}), "
        f"{total_steps} steps" + (f", resuming at step {step}" if resume else "")
    )
    params = list(model.parameters())
    model.train()
    started = time.monotonic()
    recent: list[tuple[float, float]] = []
    last_loss = float("nan")
    dev_ppl = None
    bar = tqdm(total=total_steps, initial=step, disable=not progress, dynamic_ncols=True, desc="train", mininterval=2.0)
    with _StopFlag() as stop:
        while step < total_steps and epoch < config.epochs:
            if window >= len(stream):
                if dev is not None:
                    dev_ppl = evaluate(model, dev, config.batch_size, config.n_steps)
                    log(f"epoch {epoch} done, dev {dev_ppl}")
                epoch, window = epoch + 1, 0
                state = model.zero_state(config.batch_size)
                stream = epoch_data(epoch)
                continue
            t0 = time.monotonic()
            samples = None if n_samples is None else sample_log_uniform(len(vocab), n_samples, sampler)
            batch = stream.window(window)
            start = state if carry else model.zero_state(batch.lengths.shape[0])
            nll, n, new_state = model.window_nll(batch, corpus.char_ids, start, dropout=config.dropout, samples=samples)
            losses = nll / n
            optimizer.zero_grad(set_to_none=True)
            (losses.mean() * config.effective_loss_scale).backward()
            if config.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
            optimizer.step()
            if carry:
                state = (new_state[0].detach(), new_state[1].detach())
            window, step, tokens = window + 1, step + 1, tokens + n
            elapsed += time.monotonic() - t0
            loss_f, loss_b = (float(x) for x in losses.detach())
            recent.append((loss_f, loss_b))
            last_loss = (loss_f + loss_b) / 2
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}", refresh=False)
            if step % config.log_every == 0 or step == total_steps:
                f_avg, b_avg = (sum(x) / len(recent) for x in zip(*recent))
                recent.clear()
                log(
                    f"step {step}/{total_steps} epoch {epoch} loss {(f_avg + b_avg) / 2:.4f} (forward {f_avg:.4f}, "
                    f"backward {b_avg:.4f}) {tokens / max(elapsed, 1e-9):.0f} tokens/s, {elapsed:.0f}s training"
                )
            out_of_time = stop_after_seconds is not None and time.monotonic() - started >= stop_after_seconds
            if step % config.checkpoint_every == 0 or stop.requested or out_of_time:
                checkpoint()
            if stop.requested or out_of_time:
                log(f"stopped at step {step}; checkpoint written to {ckpt_path} (continue with --resume)")
                break
    bar.close()
    finished = step >= total_steps or epoch >= config.epochs
    checkpoint()
    export_dir = None
    if finished:
        if dev is not None:
            dev_ppl = evaluate(model, dev, config.batch_size, config.n_steps)
            log(f"final dev {dev_ppl}")
        export_dir = export_model(model, vocab, out_dir / "model")
        log(f"exported {export_dir}/options.json, weights.hdf5, vocab.txt")
    return TrainResult(step, epoch, finished, last_loss, tokens / max(elapsed, 1e-9), elapsed, ckpt_path, export_dir, dev_ppl)
