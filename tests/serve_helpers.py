"""For the test_serve*.py modules: a real ``lwop serve`` in a subprocess on a free loopback port, spoken to
with the standard library's http.client (a new connection per request, as independent clients)."""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.parse

import cv2
import numpy as np

START_TIMEOUT = 180  # seconds: importing, loading one session per worker, on a busy 2-core machine


class Server:
    def __init__(self, process: subprocess.Popen, url: str, logs: pathlib.Path):
        self.process, self.url, self.logs = process, url, logs
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port

    def request(self, method: str, path: str, body: bytes | None = None, headers=None, timeout: float = 120):
        """(status, headers as a dict with lower-case names, body bytes)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def post_image(self, data: bytes, content_type: str = 'image/jpeg', path: str = '/v1/poses', headers=None):
        return self.request('POST', path, data, {'Content-Type': content_type, **(headers or {})})

    def get_json(self, path: str, headers=None):
        status, _, body = self.request('GET', path, headers=headers)
        return status, json.loads(body)

    def alive(self) -> bool:
        status, _, body = self.request('GET', '/healthz', timeout=30)
        return status == 200 and json.loads(body) == {'status': 'ok'}

    def metrics(self, headers=None) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value}."""
        status, _, body = self.request('GET', '/metrics', headers=headers)
        assert status == 200
        samples = {}
        for line in body.decode().splitlines():
            if line and not line.startswith('#'):
                name, _, value = line.rpartition(' ')
                samples[name] = float(value)
        return samples

    def stderr(self) -> str:
        return (self.logs / 'stderr.log').read_text()

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(model, logs: pathlib.Path, *flags, env: dict | None = None) -> Server:
    """``lwop serve --checkpoint-path model --port 0 *flags``; returns once it announced its address."""
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / 'stdout.log', logs / 'stderr.log'
    command = [sys.executable, '-m', 'lwop_jax', 'serve', '--checkpoint-path', str(model), '--port', '0']
    with stdout.open('w') as out, stderr.open('w') as err:
        process = subprocess.Popen(
            [*command, *map(str, flags)], stdout=out, stderr=err, env={**os.environ, **(env or {})}
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in stdout.read_text().splitlines():
            if line.startswith('lwop serve: http://'):
                return Server(process, line.split()[2], logs)
        if process.poll() is not None:
            raise AssertionError(f'lwop serve exited with {process.returncode}:\n{stderr.read_text()}')
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f'lwop serve did not start in {START_TIMEOUT} s:\n{stderr.read_text()}')


def stop_server(server: Server) -> None:
    """End of a module: SIGTERM, or a kill if it does not go."""
    try:
        server.terminate(timeout=60)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def shifted_frames(image: np.ndarray, frames: int, step: int) -> list[np.ndarray]:
    """The image shifted right by ``step`` px per frame (edge pixels repeated): people walking."""
    height, width = image.shape[:2]
    return [
        cv2.warpAffine(
            image, np.float32([[1, 0, step * t], [0, 1, 0]]), (width, height), borderMode=cv2.BORDER_REPLICATE
        )
        for t in range(frames)
    ]


def jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()
