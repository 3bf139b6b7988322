"""Run the app under uvicorn with a graceful, zero-status stop on SIGTERM or Ctrl-C.

On SIGTERM uvicorn stops accepting connections, lets every in-flight request finish (up to
``graceful_timeout_s``), then runs the app's lifespan shutdown, which drains the batcher. uvicorn
then re-raises the signal it caught so that the default action (death by signal, status -15) would
follow; :func:`run_server` installs a handler first, so the re-raised signal only records itself and
the process exits 0 after a clean stop.
"""
from __future__ import annotations

import logging
import signal

from elmo_fast.embedder import ElmoEmbedder
from elmo_fast.serve.app import ServeConfig, create_app

logger = logging.getLogger(__name__)


def run_server(
    embedder: ElmoEmbedder,
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str = "",
    graceful_timeout_s: float = 30.0,
    log_level: str = "info",
) -> int:
    """Serve ``embedder`` on ``host:port`` until SIGTERM/SIGINT; returns 0 after a clean stop."""
    import uvicorn

    app = create_app(embedder, config, model_name=model_name)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=graceful_timeout_s,
            access_log=log_level == "debug",
        )
    )
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _frame: received.append(s)) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        logger.info("stopped cleanly after %s", ", ".join(signal.Signals(s).name for s in received))
    return 0 if server.started else 1
