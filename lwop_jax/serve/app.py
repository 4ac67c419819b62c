"""The Starlette app: routes, JSON errors, and the middleware of :mod:`lwop_jax.serve.gate`.

Why Starlette rather than FastAPI: the service has nine routes whose inputs are raw bytes, a multipart
field and one integer query parameter; FastAPI's value is deriving validation and an OpenAPI description
from typed signatures, which here would bring pydantic and a second validation path next to the checks
that must run before decoding anyway (:mod:`lwop_jax.serve.limits`). Starlette is the ASGI core FastAPI is
built on (routing, WebSocket, responses), maintained, with two small dependencies; the OpenAPI description
is written out in :mod:`lwop_jax.serve.openapi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from lwop_jax.serve.gate import Gate, error_response
from lwop_jax.serve.limits import (
    Limits,
    RequestError,
    body_kind,
    multipart_image,
    network_height,
)
from lwop_jax.serve.openapi import OPENAPI
from lwop_jax.serve.service import Service
from lwop_jax.serve.stream import stream

logger = logging.getLogger(__name__)

PAGE_FILES = {'index.html': 'text/html', 'page.js': 'text/javascript', 'page.css': 'text/css'}
# The page loads only its own files and talks only to this service ('self' covers ws: in CSP 3).
PAGE_HEADERS = {
    'Content-Security-Policy': "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:",
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
}


# -- routes ---------------------------------------------------------------------------------------


async def poses(request: Request) -> Response:
    """POST /v1/poses: one image (raw body or multipart field ``image``) -> its record."""
    service: Service = request.app.state.service
    limits = service.settings.limits
    content_type = request.headers.get('content-type', '')
    kind = body_kind(content_type)
    height = network_height(request.query_params.get('height_size'), service.settings.net_height)
    body = await read_body(request, limits)
    data = multipart_image(body, content_type) if kind == 'multipart' else body
    detection = await service.detect(data, height)
    return JSONResponse(service.record(detection, height))


async def read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused (413) as soon as it is declared or grows past the limit: never more in memory; 408
    when it takes longer than ``limits.body_timeout_s`` (a slow sender would hold one of --max-connections)."""
    declared = request.headers.get('content-length', '')
    if declared.isdigit():
        limits.check_body_size(int(declared))
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_s):
            async for chunk in request.stream():
                body += chunk
                limits.check_body_size(len(body))
    except ClientDisconnect as exc:  # nobody is left to read the answer; it is counted all the same
        raise RequestError(400, 'the client disconnected before sending the whole body') from exc
    except TimeoutError as exc:
        raise RequestError(408, f'the body did not arrive within {limits.body_timeout_s:g} s') from exc
    return bytes(body)


async def model(request: Request) -> Response:
    return JSONResponse(request.app.state.service.model_info())


async def healthz(request: Request) -> Response:
    return JSONResponse({'status': 'ok'})


async def metrics(request: Request) -> Response:
    service: Service = request.app.state.service
    return Response(service.metrics.exposition(), media_type=service.metrics.content_type)


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def page_route(path: str, name: str) -> Route:
    """A fixed file of the page, read once from the package data (no client-chosen path reaches the disk)."""
    content = (resources.files('lwop_jax.serve') / 'static' / name).read_bytes()

    async def page(request: Request) -> Response:
        return Response(content, media_type=PAGE_FILES[name], headers=PAGE_HEADERS)

    return Route(path, page, name=name)


# -- errors: one-line JSON bodies -----------------------------------------------------------------


async def request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and the other errors Starlette raises itself, as JSON."""
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.status_code != 405 else f'method {request.method} is not allowed here'
    return error_response(RequestError(exc.status_code, detail, dict(exc.headers or {})))


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug of ours: logged with its traceback, answered with one line and no trace."""
    logger.error('%s %s failed', request.method, request.url.path, exc_info=exc)
    return error_response(RequestError(500, 'internal error'))


# -- the app --------------------------------------------------------------------------------------


def create_app(service: Service) -> Starlette:
    routes = [
        page_route('/', 'index.html'),
        page_route('/static/page.js', 'page.js'),
        page_route('/static/page.css', 'page.css'),
        Route('/healthz', healthz),
        Route('/metrics', metrics),
        Route('/openapi.json', openapi),
        Route('/v1/model', model),
        Route('/v1/poses', poses, methods=['POST']),
        WebSocketRoute('/v1/stream', stream),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()  # after uvicorn drained the connections: the workers finish and stop

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Gate, service=service)],
        exception_handlers={RequestError: request_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.service = service
    return app
