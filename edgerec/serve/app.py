"""The starlette application: routes, the JSON error shape, limits, auth and the thread pool.

The library is synchronous and CPU-bound, so each call runs in a worker thread while the event loop
keeps accepting; a CapacityLimiter of ``threads`` bounds how many run at once (more than the cores
only adds GIL hand-offs). All threads share one Recommender: ONNX Runtime sessions and hnswlib
indexes are safe to read from many threads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Mapping

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import EdgerecError, UnknownItemError, one_line
from ..recommender import Recommendation, Recommender
from . import bodies
from .auth import ApiKey
from .metrics import Metrics
from .problems import ApiError, api_error, error_body
from .reloader import Loaded, LiveBundle, Reloader

log = logging.getLogger("edgerec.serve")

# Each /v1 POST endpoint: the Recommender method it calls and its body's fields, which are named as the
# method's keyword arguments: a new library argument is one line in edgerec.serve.bodies.
ENDPOINTS: dict[str, tuple[str, Mapping[str, bodies.Field]]] = {
    "/v1/query": ("query", bodies.QUERY),
    "/v1/similar": ("similar", bodies.SIMILAR),
    "/v1/recommend": ("recommend", bodies.RECOMMEND),
}


def create_app(live: LiveBundle, *, api_key: ApiKey | None = None, threads: int = 2, poll_seconds: float = 2.0,
               max_body: int = bodies.MAX_BODY_BYTES, on_load_error: Callable[[EdgerecError], None] | None = None,
               metrics: Metrics | None = None) -> Starlette:
    """An app serving ``live``; it loads the bundle in the background on startup (/readyz is 503 until
    then) and reloads it every ``poll_seconds`` (0: only on ``app.state.reloader.request()``)."""
    metrics = metrics or Metrics()
    live.on_swap = lambda loaded: metrics.serving(loaded.name, loaded.version)
    if live.current is not None:
        live.on_swap(live.current)
    reloader = Reloader(live, poll_seconds, on_outcome=lambda outcome: metrics.reloads.labels(outcome).inc())
    limiter: list[anyio.CapacityLimiter] = []  # made inside the event loop, at startup

    def load_in_background() -> None:
        try:
            loaded = live.load()
        except Exception as raised:  # noqa: BLE001 - a server that can never be ready must say why and stop
            exc = raised if isinstance(raised, EdgerecError) else EdgerecError(
                f"unexpected {type(raised).__name__} while loading: {raised}")
            live.error = exc
            log.error("edgerec: cannot serve: %s", one_line(exc))
            if on_load_error is not None:
                on_load_error(exc)
            return
        log.info("edgerec: ready, serving %s %s (%d items)", loaded.name, loaded.version, len(loaded.rec))
        reloader.start()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limiter.append(anyio.CapacityLimiter(threads))
        if live.current is None:
            threading.Thread(target=load_in_background, name="edgerec-loader", daemon=True).start()
        else:
            reloader.start()
        try:
            yield
        finally:
            reloader.stop()

    def authorize(request: Request) -> None:
        if api_key is not None and not api_key.allows(request.headers.get("authorization")):
            raise ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer KEY'")

    def serving() -> Loaded:
        loaded = live.current
        if loaded is None:
            raise ApiError(503, "not_ready", "the bundle is still loading" if live.error is None
                           else "the bundle could not be loaded (see the server's log)")
        return loaded

    async def run(fn: Callable[[], Any]) -> Any:
        """``fn`` on a worker thread; any library error becomes its ApiError there (a tokenizers panic is a
        BaseException, so the net is that wide, minus the exits)."""
        def guarded() -> Any:
            try:
                return fn()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # noqa: BLE001
                error = api_error(exc)
                if error.status >= 500:
                    log.error("edgerec: %s while answering: %s", type(exc).__name__, one_line(exc), exc_info=exc)
                return error

        result = await anyio.to_thread.run_sync(guarded, limiter=limiter[0])
        if isinstance(result, ApiError):
            raise result
        return result

    def answer(path: str) -> Callable[[Request], Any]:
        method, fields = ENDPOINTS[path]

        async def endpoint(request: Request) -> Response:
            authorize(request)
            loaded = serving()
            args = bodies.parse(bodies.decode(await read_body(request, max_body)), fields)

            def answer_and_render() -> Response:
                results = getattr(loaded.rec, method)(**args)
                return json_response({"items": [_item(r) for r in results], "bundle": _bundle(loaded)})

            # Rendered on the worker thread too: a k=10,000 answer must not hold up the event loop.
            return await run(answer_and_render)

        return endpoint

    async def item(request: Request) -> Response:
        authorize(request)
        loaded = serving()
        item_id = request.path_params["item_id"]
        record = await run(lambda: _record(loaded.rec, item_id))
        return json_response({"item": record, "bundle": _bundle(loaded)})

    async def healthz(request: Request) -> Response:
        return json_response({"status": "alive"})

    async def readyz(request: Request) -> Response:
        loaded = serving()
        return json_response({"status": "ready", "bundle": _bundle(loaded)})

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
        *(Route(path, answer(path), methods=["POST"]) for path in ENDPOINTS),
        Route("/v1/items/{item_id:path}", item, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Measured, metrics=metrics, routes=routes)],
        exception_handlers={ApiError: _api_error_response, HTTPException: _http_error_response},
        lifespan=lifespan,
    )
    app.state.live = live
    app.state.reloader = reloader
    app.state.metrics = metrics
    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (by its Content-Length, or while read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=True, separators=(",", ":")), status_code=status,
                    media_type="application/json")


def _item(result: Recommendation) -> dict[str, Any]:
    return {"item_id": result.item_id, "score": round(result.score, 6), "metadata": dict(result.metadata)}


def _bundle(loaded: Loaded) -> dict[str, str]:
    return {"name": loaded.name, "version": loaded.version}


def _record(rec: Recommender, item_id: str) -> dict[str, Any]:
    label = rec.items.labels.get(item_id)
    if label is None:
        raise UnknownItemError(item_id)
    record = rec.items.records[label]
    id_field = rec.items.id_field
    return {"item_id": item_id, "metadata": {k: v for k, v in record.items() if k != id_field}}


async def _api_error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error_response(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in the same JSON shape as ours."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = f"no route {request.method} {request.url.path}" if exc.status_code in _HTTP_CODES else exc.detail
    return Response(error_body(code, one_line(message, 300)), status_code=exc.status_code,
                    media_type="application/json", headers=exc.headers)


class Measured:
    """ASGI middleware: counts and times every HTTP request by route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[Route]) -> None:
        self.app = app
        self.metrics = metrics
        # The router names the matched endpoint in the scope; its template is the label.
        self.labels = {route.endpoint: route.path for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            endpoint = self.labels.get(scope.get("endpoint"), "other")  # type: ignore[arg-type]
            self.metrics.observe(endpoint, status, time.perf_counter() - began)
