"""WebSocket /v1/stream: binary image frames (JPEG) in, one JSON record per frame out, in order.

A connection handles one frame at a time (the next is read once the last was answered), so its answers
come in frame order and TCP holds back a client that sends faster than the service answers. Tracking and
One-Euro smoothing run per connection, in frame order, as ``lwop infer --video`` does for one video
(:class:`lwop_jax.inference.tracking.PoseTracker`): track ids persist across that connection's frames.

Answers: ``{"index": i, "people": [...with track_id], "height", "width", "timing_ms", ...}``, or for a
frame that cannot be handled ``{"index": i, "status": 400|413|503, "error": "<one line>"}``; the
connection goes on either way. A text message ``{"reset": true}`` forgets the tracked people (a new
video). With an API key set, a client that cannot send headers (a browser) sends ``{"api_key": "..."}`` as
its first message.
"""

from __future__ import annotations

import json
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from lwop_jax.inference.tracking import PoseTracker
from lwop_jax.serve.limits import RequestError, network_height
from lwop_jax.serve.service import Service

ENDPOINT = '/v1/stream'
CLOSE_POLICY = 1008  # policy violation: no or wrong key
CLOSE_GOING_AWAY = 1001  # the service is shutting down
CLOSE_TRY_AGAIN_LATER = 1013

logger = logging.getLogger(__name__)


def _flag(websocket: WebSocket, name: str) -> bool:
    return websocket.query_params.get(name, '1') not in ('0', 'false', 'no')


async def stream(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    try:
        height = network_height(websocket.query_params.get('height_size'), service.settings.net_height)
    except RequestError as exc:
        await websocket.close(CLOSE_POLICY, exc.message[:120])
        return
    await websocket.accept()
    keyed = not service.needs_key or service.key_matches(offered_key(websocket.headers))
    if not keyed and not await _key_message(websocket, service):
        await websocket.close(CLOSE_POLICY, 'missing or wrong API key')
        return
    tracker = PoseTracker(smooth=_flag(websocket, 'smooth')) if _flag(websocket, 'track') else None
    index = 0
    try:
        while True:
            message = await websocket.receive()
            if message['type'] == 'websocket.disconnect':
                return
            if message.get('bytes') is None:
                if _control(message.get('text'), tracker):
                    continue
                await websocket.send_text(_error_text(index, RequestError(400, 'frames are binary messages')))
            else:
                await websocket.send_text(await _answer(service, message['bytes'], height, index, tracker))
            index += 1
            if service.draining:
                await websocket.close(CLOSE_GOING_AWAY, 'the service is shutting down')
                return
    except WebSocketDisconnect:
        return


def offered_key(headers) -> str | None:
    """The key in ``X-API-Key`` or ``Authorization: Bearer KEY`` (None when neither is there)."""
    if 'x-api-key' in headers:
        return headers['x-api-key']
    scheme, _, token = headers.get('authorization', '').partition(' ')
    return token.strip() if scheme.lower() == 'bearer' else None


async def _key_message(websocket: WebSocket, service: Service) -> bool:
    """Whether the first message is ``{"api_key": KEY}`` with the service's key."""
    message = await websocket.receive()
    try:
        key = json.loads(message.get('text') or '{}').get('api_key')
    except (ValueError, AttributeError):
        return False
    return isinstance(key, str) and service.key_matches(key)


def _control(text: str | None, tracker: PoseTracker | None) -> bool:
    """Handles a text control message; False when the text is not one."""
    try:
        command = json.loads(text or '')
    except ValueError:
        return False
    if isinstance(command, dict) and command.get('reset') is True:
        if tracker is not None:
            tracker.reset()
        return True
    return False


async def _answer(service: Service, data: bytes, height: int, index: int, tracker: PoseTracker | None) -> str:
    """One frame's answer as JSON text (the record, or its error); counted in the metrics."""
    start = time.perf_counter()
    service.in_flight += 1
    try:
        detection = await service.detect(data, height)
        result = tracker(detection.result) if tracker is not None else detection.result
        record = {'index': index, **service.record(detection, height, result)}
        status, text = 200, json.dumps(record, separators=(',', ':'))
    except RequestError as exc:
        status, text = exc.status, _error_text(index, exc)
    except Exception:  # a bug of ours, not the client's: logged, answered, and the stream goes on
        logger.exception('stream frame %d failed', index)
        status, text = 500, _error_text(index, RequestError(500, 'internal error'))
    finally:
        service.in_flight -= 1
    service.metrics.observe(ENDPOINT, status, time.perf_counter() - start)
    return text


def _error_text(index: int, error: RequestError) -> str:
    return json.dumps({'index': index, 'status': error.status, 'error': error.message})
