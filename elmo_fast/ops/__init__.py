"""Functional ops, one per file, each with a backend table (``ref`` always; faster ones as they land)."""
from .char_ids import char_ids
from .lstmp import lstmp
from .token_encoder import token_encoder

__all__ = ["char_ids", "lstmp", "token_encoder"]
