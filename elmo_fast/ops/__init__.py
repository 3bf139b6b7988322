"""Functional ops, one per file, each with a backend table (``ref`` always; faster ones as they land)."""
from .lstmp import lstmp
from .token_encoder import token_encoder

__all__ = ["lstmp", "token_encoder"]
