"""The FastAPI application of ``elmo-fast serve``: ``POST /embed``, ``/health``, ``/metrics``, ``/``.

``create_app(embedder, config)`` builds it around one :class:`~elmo_fast.ElmoEmbedder` whose state
is ``"zero"`` or ``"warm"``; the lifespan starts and drains the :class:`DynamicBatcher`.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from elmo_fast.embedder import ElmoEmbedder
from elmo_fast.reference.lowp import projection_precision
from elmo_fast.serve.batcher import BatcherStopped, DynamicBatcher, QueueFull, check_state
from elmo_fast.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)

NPY_TYPE = "application/x-npy"
NPZ_TYPE = "application/x-npz"
PAGE = Path(__file__).parent / "static" / "index.html"
ROUTES = ("/", "/embed", "/health", "/metrics", "/docs", "/openapi.json")
# Answers up to this many floats are encoded in the event loop; larger ones in a thread, so a big
# JSON answer does not stall other requests. NOTE: a design number, not measured.
INLINE_ENCODE_FLOATS = 100_000


@dataclass(frozen=True)
class ServeConfig:
    """Limits and batching knobs of the server (the ``elmo-fast serve`` options of the same names)."""

    max_batch_tokens: int = 2048
    max_wait_ms: float = 5.0
    max_queue_sentences: int = 1024
    max_request_sentences: int = 64
    max_sentence_length: int = 256

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < (0 if name == "max_wait_ms" else 1):
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_request_sentences > self.max_queue_sentences:
            raise ValueError(
                f"max_request_sentences ({self.max_request_sentences}) must not exceed max_queue_sentences "
                f"({self.max_queue_sentences}): such a request could never be admitted"
            )


class EmbedRequest(BaseModel):
    """Body of ``POST /embed``."""

    model_config = ConfigDict(extra="forbid")
    sentences: list[list[StrictStr]] = Field(
        min_length=1, description="tokenised sentences, e.g. [[\"The\", \"bank\", \".\"]]; a sentence may be empty"
    )
    layers: Literal["all", "top", "average"] = Field(
        "all", description="all: (L+1, T, 2P) per sentence, as ElmoEmbedder.embed_sentence; top: (T, 2P); average: (T, 2P)"
    )


class EmbedResponse(BaseModel):
    """JSON answer of ``POST /embed``: one nested float list per sentence, in the request's order."""

    embeddings: list[list] = Field(description="per sentence: (L+1, T, 2P) for layers=all, else (T, 2P)")


def select_layers(array: np.ndarray, layers: str) -> np.ndarray:
    """``(L + 1, T, 2P)`` -> what ``layers`` asks for (the ``elmo-fast embed --top/--average`` arrays)."""
    if layers == "top":
        return array[-1]
    if layers == "average":
        return np.average(array, axis=0)
    return array


def encode_embeddings(arrays: list[np.ndarray], accept: str) -> Response:
    """Answer in the form ``accept`` asks for: JSON (default), one ``.npy`` or one ``.npz``.

    ``.npy``: the sentences concatenated along the token axis (axis -2), their token counts in the
    ``X-Sentence-Lengths`` header (comma-separated); ``.npz``: arrays ``0``, ``1``, ... in order.
    """
    lengths = ",".join(str(a.shape[-2]) for a in arrays)
    if NPZ_TYPE in accept:
        buffer = io.BytesIO()
        np.savez(buffer, **{str(i): a for i, a in enumerate(arrays)})
        return Response(buffer.getvalue(), media_type=NPZ_TYPE, headers={"X-Sentence-Lengths": lengths})
    if NPY_TYPE in accept:
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate(arrays, axis=-2))
        return Response(buffer.getvalue(), media_type=NPY_TYPE, headers={"X-Sentence-Lengths": lengths})
    body = json.dumps({"embeddings": [a.tolist() for a in arrays]}, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def _check_limits(body: EmbedRequest, config: ServeConfig) -> JSONResponse | None:
    if len(body.sentences) > config.max_request_sentences:
        return _error(
            413,
            f"the request has {len(body.sentences)} sentences; this server takes at most "
            f"{config.max_request_sentences} per request (--max-request-sentences): split it",
        )
    for i, sentence in enumerate(body.sentences):
        if len(sentence) > config.max_sentence_length:
            return _error(
                413,
                f"sentence {i} has {len(sentence)} tokens; this server takes at most {config.max_sentence_length} "
                "per sentence (--max-sentence-length): split it",
            )
    return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        status = 400 if any(p["type"] == "json_invalid" for p in problems) else 422
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return _error(status, f"invalid request: {summary}", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


class CountRequests:
    """ASGI middleware: every HTTP request's route, status and wall time into :class:`ServeMetrics`.

    A plain ASGI wrapper rather than ``@app.middleware("http")``, which runs each request through an
    extra task and stream.
    """

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_and_note(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.count_request(route, status, time.perf_counter() - start)


def create_app(embedder: ElmoEmbedder, config: ServeConfig | None = None, model_name: str = "") -> FastAPI:
    """The server around ``embedder`` (state ``"zero"`` or ``"warm"``, else ``ValueError``)."""
    config = config or ServeConfig()
    state = embedder.elmo_bilm.state
    check_state(state)
    info = {
        "model": model_name,
        "state": state,
        "weight_precision": embedder.elmo_bilm.weight_precision,
        "projection_precision": projection_precision(embedder.elmo_bilm.weight_precision),
        "layers": embedder.num_layers,
        "dim": embedder.elmo_bilm.get_output_dim(),
        "limits": asdict(config),
    }
    holder: dict[str, object] = {}

    def queue_depth() -> int:
        batcher = holder.get("batcher")
        return batcher.pending_sentences if isinstance(batcher, DynamicBatcher) else 0

    metrics = ServeMetrics(queue_depth)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(embedder.embed_sentence, ["warm", "up"])
        batcher = DynamicBatcher(
            embedder.embed_planned,
            max_batch_tokens=config.max_batch_tokens,
            max_wait_ms=config.max_wait_ms,
            max_queue_sentences=config.max_queue_sentences,
            on_batch=metrics.count_batch,
        )
        batcher.start()
        holder["batcher"] = batcher
        logger.info("elmo-fast serve ready: %s", info)
        yield
        logger.info("draining the batcher")
        await batcher.stop()

    app = FastAPI(
        title="elmo_fast embedding server",
        description="ELMo vectors over HTTP. Concurrent requests share model forwards; with state zero/warm a "
        "sentence's vectors do not depend on its batch.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    app.add_middleware(CountRequests, metrics=metrics)

    @app.post(
        "/embed",
        response_model=EmbedResponse,
        responses={200: {"content": {NPY_TYPE: {}, NPZ_TYPE: {}}}, 413: {}, 422: {}, 503: {}},
    )
    async def embed(body: EmbedRequest, request: Request) -> Response:
        """Embed tokenised sentences. ``Accept: application/x-npy`` or ``application/x-npz`` for binary."""
        refused = _check_limits(body, config)
        if refused is not None:
            return refused
        try:
            arrays = await holder["batcher"].embed(body.sentences)
        except QueueFull as exc:
            metrics.rejected_full += 1
            return _error(503, str(exc), headers={"Retry-After": str(exc.retry_after)})
        except BatcherStopped as exc:
            return _error(503, str(exc), headers={"Retry-After": "5"})
        selected = [select_layers(a, body.layers) for a in arrays]
        accept = request.headers.get("accept", "")
        if sum(a.size for a in selected) < INLINE_ENCODE_FLOATS:
            return encode_embeddings(selected, accept)
        return await asyncio.to_thread(encode_embeddings, selected, accept)

    @app.get("/health")
    async def health() -> dict:
        """Liveness and what is served: model, state, layers, dim, limits, queue depth."""
        return {"status": "ok", **info, "queue_sentences": queue_depth()}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format: requests, sentences, queue depth, latency and batch-size histograms."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app
