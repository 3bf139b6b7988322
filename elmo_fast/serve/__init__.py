"""``elmo-fast serve``: an HTTP embedding service with dynamic batching (``pip install 'elmo_fast[serve]'``).

Public pieces: :func:`create_app` (the FastAPI app around an :class:`~elmo_fast.ElmoEmbedder`),
:class:`ServeConfig` (limits and batching knobs), :func:`run_server` (uvicorn with a clean SIGTERM
stop) and :class:`DynamicBatcher`. Importing this package needs FastAPI; ``elmo_fast`` does not.
"""
from __future__ import annotations

from elmo_fast.serve.app import NPY_TYPE, NPZ_TYPE, ServeConfig, create_app, select_layers
from elmo_fast.serve.batcher import DynamicBatcher, QueueFull, check_state
from elmo_fast.serve.server import run_server

__all__ = ["NPY_TYPE", "NPZ_TYPE", "DynamicBatcher", "QueueFull", "ServeConfig", "check_state", "create_app", "run_server", "select_layers"]
