"""The middleware every request passes: the drain, the connection limit, the API key, and the metrics.

A pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and re-wrap every body). In order:

* draining (SIGTERM received): 503 with ``Retry-After`` and ``Connection: close``; streams are refused;
* more than ``max_connections`` requests and streams at once: 503 with ``Retry-After``; the limit bounds
  the memory bodies can hold (each at most ``--max-body-mb``);
* a key is set and the path is not public: 401 unless ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``
  matches, compared in constant time (a stream may send the key as its first message instead, since
  browsers cannot set headers on a WebSocket);
* every HTTP answer is counted by endpoint and status, with its latency.
"""

from __future__ import annotations

import time

from starlette.responses import JSONResponse

from lwop_jax.serve.limits import RequestError
from lwop_jax.serve.service import RETRY_AFTER_SECONDS, Service
from lwop_jax.serve.stream import CLOSE_TRY_AGAIN_LATER, offered_key

PUBLIC_PATHS = frozenset({'/', '/static/page.js', '/static/page.css', '/healthz', '/openapi.json'})
ENDPOINTS = PUBLIC_PATHS | {'/metrics', '/v1/poses', '/v1/model', '/v1/stream'}


def endpoint_label(path: str) -> str:
    """The metrics label of a path: one of ours, or 'other' (clients must not create label values)."""
    return path if path in ENDPOINTS else 'other'


def error_response(error: RequestError) -> JSONResponse:
    """``{"error": "<one line>"}`` with the error's status and headers (compact JSON: one line)."""
    return JSONResponse({'error': error.message}, error.status, headers=error.headers)


class Gate:
    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope['type'] == 'http':
            await self._http(scope, receive, send)
        elif scope['type'] == 'websocket':
            await self._websocket(scope, receive, send)
        else:  # lifespan
            await self.app(scope, receive, send)

    def _refusal(self, scope) -> RequestError | None:
        service = self.service
        if service.draining:
            return RequestError(
                503, 'the service is shutting down', {'Retry-After': RETRY_AFTER_SECONDS, 'Connection': 'close'}
            )
        if service.active >= service.settings.max_connections:
            return RequestError(
                503,
                f'busy: {service.settings.max_connections} requests and streams at once; retry later',
                {'Retry-After': RETRY_AFTER_SECONDS},
            )
        if scope['type'] == 'http' and service.needs_key and scope['path'] not in PUBLIC_PATHS:
            headers = {key.decode('latin-1').lower(): value.decode('latin-1') for key, value in scope['headers']}
            if not service.key_matches(offered_key(headers)):
                return RequestError(401, 'missing or wrong API key', {'WWW-Authenticate': 'Bearer'})
        return None

    async def _http(self, scope, receive, send):
        service, start, status = self.service, time.perf_counter(), [500]

        async def send_counted(message):
            if message['type'] == 'http.response.start':
                status[0] = message['status']
            await send(message)

        refusal = self._refusal(scope)
        try:
            if refusal is not None:
                await error_response(refusal)(scope, receive, send_counted)
                return
            service.active += 1
            service.in_flight += 1
            try:
                await self.app(scope, receive, send_counted)
            finally:
                service.active -= 1
                service.in_flight -= 1
        finally:
            service.metrics.observe(endpoint_label(scope['path']), status[0], time.perf_counter() - start)

    async def _websocket(self, scope, receive, send):
        refusal = self._refusal(scope)
        if refusal is not None:  # closing before the handshake is accepted answers it with HTTP 403
            await send({'type': 'websocket.close', 'code': CLOSE_TRY_AGAIN_LATER, 'reason': refusal.message[:120]})
            return
        self.service.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.service.active -= 1
