"""Pretraining a biLM (bilm-tf's objective) with elmo_fast's own network, and held-out perplexity.

``elmo-fast train CONFIG`` / :func:`train`; ``elmo-fast perplexity`` / :func:`evaluate`;
``elmo-fast export`` / :func:`export_model`. See :mod:`elmo_fast.train.data` for the windows and
:mod:`elmo_fast.train.softmax` for the sampled softmax.
"""
from .checkpoint import export_model, load_language_model
from .config import ConfigError, TrainConfig, load_config
from .data import Vocabulary, encode_corpus, read_sentences
from .model import BiLanguageModel, initial_weights
from .trainer import Perplexity, TrainResult, evaluate, train

__all__ = [
    "BiLanguageModel",
    "ConfigError",
    "Perplexity",
    "TrainConfig",
    "TrainResult",
    "Vocabulary",
    "encode_corpus",
    "evaluate",
    "export_model",
    "initial_weights",
    "load_config",
    "load_language_model",
    "read_sentences",
    "train",
]
