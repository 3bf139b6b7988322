"""Functional ops, one per module, each reachable by its own name (``elmo_fast.ops.lstmp.lstmp``).

Every op is defined in :mod:`elmo_fast.ops.registry` with its reference implementation; the
backends register theirs next to it. This package re-exports the modules, not the functions, so
``elmo_fast.ops.lstmp`` is always the module.
"""
from elmo_fast.ops import char_ids, lstmp, registry, scalar_mix, token_encoder

__all__ = ["char_ids", "lstmp", "registry", "scalar_mix", "token_encoder"]
