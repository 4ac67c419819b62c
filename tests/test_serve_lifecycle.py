"""lwop serve with an API key (from LWOP_API_KEY), then SIGTERM during a burst: the key's 401 and 200 over HTTP
and the stream, the open-service warning, and a drain where requests in flight finish, new ones get 503 and
the process exits 0. One real server for the module, ended by the drain test."""

import json
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest

pytest.importorskip('starlette', reason='needs the serve extra')
pytest.importorskip('websockets', reason='needs the serve extra')

from serve_helpers import jpeg, start_server, stop_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from lwop_jax.serve.server import open_service_warning

KEY = 'k3y-for-the-tests'
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def photo(coco_mini_dir):
    return jpeg(cv2.imread(str(coco_mini_dir / 'val2017' / '000000197388.jpg')))


@pytest.fixture(scope='module')
def server(overfit_onnx, tmp_path_factory):
    running = start_server(
        overfit_onnx,
        tmp_path_factory.mktemp('serve_key'),
        '--workers', '1', '--max-queue', '8', '--threads', '1', '--drain-timeout', '120',
        env={'LWOP_API_KEY': KEY},
    )  # fmt: skip
    yield running
    stop_server(running)


def test_key_is_required_where_it_should_be(server, photo):
    for headers in ({}, {'X-API-Key': 'wrong'}, {'X-API-Key': KEY[:-1]}, {'Authorization': f'Basic {KEY}'}):
        status, answer_headers, body = server.post_image(photo, headers=headers)
        assert status == 401 and json.loads(body) == {'error': 'missing or wrong API key'}, headers
        assert answer_headers['www-authenticate'] == 'Bearer'
    for path in ('/v1/model', '/metrics'):
        assert server.request('GET', path)[0] == 401
    for headers in ({'X-API-Key': KEY}, {'Authorization': f'Bearer {KEY}'}):
        status, _, body = server.post_image(photo, headers=headers)
        assert status == 200 and len(json.loads(body)['people']) >= 4
    for path in ('/healthz', '/', '/static/page.js', '/openapi.json'):  # public: probes and the page itself
        assert server.request('GET', path)[0] == 200
    assert server.get_json('/v1/model', {'X-API-Key': KEY})[1]['api_key_required'] is True


def test_stream_key(server, photo):
    url = f'ws://{server.host}:{server.port}/v1/stream'
    with connect(url, additional_headers={'X-API-Key': KEY}) as websocket:  # a program: the header
        websocket.send(photo)
        people = json.loads(websocket.recv(timeout=120))['people']
        assert sorted(person['track_id'] for person in people) == list(range(len(people)))
    with connect(url) as websocket:  # a browser: the first message
        websocket.send(json.dumps({'api_key': KEY}))
        websocket.send(photo)
        assert json.loads(websocket.recv(timeout=120))['index'] == 0
    for first in (json.dumps({'api_key': 'wrong'}), photo):
        with connect(url) as websocket:
            websocket.send(first)
            with pytest.raises(ConnectionClosed) as closed:
                websocket.recv(timeout=60)
            assert closed.value.rcvd.code == 1008


def test_open_service_warning(overfit_onnx, tmp_path):
    assert open_service_warning('127.0.0.1', None) is None and open_service_warning('::1', None) is None
    assert open_service_warning('localhost', None) is None and open_service_warning('0.0.0.0', 'key') is None
    # Printed before the model loads: here the model is missing, so the command stops after the warning.
    result = subprocess.run(
        [sys.executable, '-m', 'lwop_jax', 'serve', '--checkpoint-path', str(tmp_path / 'none.onnx')]
        + ['--host', '0.0.0.0', '--port', '0'],
        capture_output=True,
        text=True,
        timeout=120,
        env={'PATH': '/usr/bin:/bin'},  # no LWOP_API_KEY
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 2, result.stderr
    assert lines[0].startswith('warning: serving on 0.0.0.0 without --api-key')
    assert lines[1].startswith('error: ') and 'none.onnx' in lines[1]


def test_sigterm_drains_a_burst(server, photo):
    """4 requests in the pool (1 running, 3 queued) when SIGTERM comes: all 4 answered 200, a request after
    the signal gets 503, the process exits 0."""
    keyed = {'X-API-Key': KEY}
    results = []

    def client():
        results.append(server.post_image(photo, path='/v1/poses?height_size=512', headers=keyed))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while server.metrics(keyed)['lwop_inferences_admitted'] < 4:
        assert time.monotonic() < deadline, 'the burst never filled the pool'
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # the signal is handled between two ticks of the server loop (0.1 s)
    status, headers, body = server.post_image(photo, headers=keyed)
    assert status == 503 and json.loads(body) == {'error': 'the service is shutting down'}
    assert headers['connection'] == 'close' and headers['retry-after']
    for thread in threads:
        thread.join(120)
    assert [status for status, _, _ in results] == [200] * 4
    assert all(len(json.loads(body)['people']) >= 4 for _, _, body in results)
    assert server.process.wait(120) == 0
    assert 'Traceback' not in server.stderr() and 'draining' in server.stderr()
