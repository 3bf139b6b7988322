"""Thin ``nn.Module`` wrappers around the ops: the biLM, ScalarMix and Elmo."""
from .bilm import BiLm
from .elmo import Elmo, load_bilm
from .scalar_mix import ScalarMix

__all__ = ["BiLm", "Elmo", "ScalarMix", "load_bilm"]
