"""Downloading and converting published models by name, against a loopback HTTP server (127.0.0.1 only).

The server serves the reference checkpoint (the published file's format) in place of the real
``checkpoint_iter_370000.pth``; the URL is pointed at it with ``LWOP_JAX_URL_COCO_370K``.
"""

import hashlib
import http.server
import pathlib
import socket
import threading

import numpy as np
import pytest

from lwop_jax.checkpoints import hub, orbax_io
from lwop_jax.errors import FetchError, ModelFileError
from lwop_jax.model import variables

FILE_NAME = 'checkpoint_iter_370000.pth'
TIMEOUT_S = 10.0  # every client request is bounded


class _Server:
    """Serves one body at any path; ``truncate_next`` makes the next reply stop halfway and hang up."""

    def __init__(self, body: bytes):
        self.body = body
        self.requests = []  # the headers of every request, in order
        self.truncate_next = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(dict(self.headers))
                truncate, server.truncate_next = server.truncate_next, False
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.send_header('Content-Length', str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body[: len(server.body) // 2] if truncate else server.body)
                self.close_connection = True

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/{FILE_NAME}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope='module')
def checkpoint_bytes(reference_dir):
    return (reference_dir / 'lwop_random_1stage_legacy.pth').read_bytes()


@pytest.fixture
def server(checkpoint_bytes):
    with _Server(checkpoint_bytes) as running:
        yield running


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('LWOP_JAX_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


@pytest.fixture
def served_model(server, cache, monkeypatch):
    """coco-370k pointed at the loopback server through the environment override."""
    monkeypatch.setenv('LWOP_JAX_URL_COCO_370K', server.url)
    return server


def _closed_port_url() -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connecting is refused at once
    return f'http://127.0.0.1:{port}/{FILE_NAME}'


def _cache_files(cache: pathlib.Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob('*') if p.is_file()) if cache.exists() else []


def test_download_lands_in_cache_and_is_reused(served_model, cache, checkpoint_bytes):
    path = hub.resolve_checkpoint('coco-370k', timeout=TIMEOUT_S)
    assert path == cache / 'downloads' / FILE_NAME
    assert path.read_bytes() == checkpoint_bytes
    assert _cache_files(cache) == [f'downloads/{FILE_NAME}']  # no temp file left over
    assert len(served_model.requests) == 1

    again = hub.resolve_checkpoint('coco-370k', timeout=TIMEOUT_S)
    assert again == path and len(served_model.requests) == 1  # served from the cache


def test_download_with_matching_sha256(server, tmp_path, checkpoint_bytes):
    destination = tmp_path / 'd' / FILE_NAME
    result = hub.download(
        server.url,
        destination,
        sha256=hashlib.sha256(checkpoint_bytes).hexdigest().upper(),
        progress=True,
        timeout=TIMEOUT_S,
    )
    assert result == destination and destination.read_bytes() == checkpoint_bytes


def test_wrong_sha256_leaves_nothing(served_model, cache):
    with pytest.raises(FetchError, match='sha256 mismatch'):
        hub.resolve_checkpoint('coco-370k', sha256='0' * 64, progress=False, timeout=TIMEOUT_S)
    assert _cache_files(cache) == []


def test_sha256_from_environment_is_checked(served_model, cache, monkeypatch):
    monkeypatch.setenv('LWOP_JAX_SHA256_COCO_370K', 'f' * 64)
    with pytest.raises(FetchError, match='sha256 mismatch'):
        hub.resolve_checkpoint('coco-370k', progress=False, timeout=TIMEOUT_S)
    assert _cache_files(cache) == []


def test_interrupted_transfer_leaves_nothing_and_retry_restarts(served_model, cache, checkpoint_bytes):
    served_model.truncate_next = True
    with pytest.raises(
        FetchError, match=f'connection closed after {len(checkpoint_bytes) // 2} of {len(checkpoint_bytes)} bytes'
    ) as failure:
        hub.resolve_checkpoint('coco-370k', progress=False, timeout=TIMEOUT_S)
    assert '\n' not in str(failure.value)
    assert _cache_files(cache) == []  # neither a truncated entry nor a temp file

    path = hub.resolve_checkpoint('coco-370k', progress=False, timeout=TIMEOUT_S)
    assert path.read_bytes() == checkpoint_bytes
    assert len(served_model.requests) == 2
    # Restarted, not resumed: the retry asked for the whole file.
    assert 'Range' not in served_model.requests[1]


def test_offline_fails_with_one_line(cache, monkeypatch):
    url = _closed_port_url()
    monkeypatch.setenv('LWOP_JAX_URL_COCO_370K', url)
    with pytest.raises(FetchError) as failure:
        hub.resolve_checkpoint('coco-370k', progress=False, timeout=TIMEOUT_S)
    message = str(failure.value)
    assert '\n' not in message
    assert message.startswith(f'cannot download coco-370k from {url} (')
    assert 'refused' in message.lower()
    assert message.endswith(f'download {FILE_NAME} yourself and pass --checkpoint-path /path/to/{FILE_NAME}')
    assert _cache_files(cache) == []


def test_url_argument_overrides_table(server, cache):
    path = hub.resolve_checkpoint('coco-370k', url=server.url, progress=False, timeout=TIMEOUT_S)
    assert path.is_file() and len(server.requests) == 1


def test_http_error_is_a_fetch_error(server, cache):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server.httpd.RequestHandlerClass = NotFound
    with pytest.raises(FetchError, match='HTTP 404'):
        hub.resolve_checkpoint('coco-370k', url=server.url, progress=False, timeout=TIMEOUT_S)
    assert _cache_files(cache) == []


def test_existing_path_is_returned_as_is(reference_dir, cache):
    path = reference_dir / 'lwop_random_1stage_legacy.pth'
    assert hub.resolve_checkpoint(path) == path
    assert hub.resolve_checkpoint(str(path)) == path
    assert _cache_files(cache) == []


def test_unknown_name_lists_known_ones(cache):
    with pytest.raises(ModelFileError, match='coco-999k: file not found .*published models by name: coco-370k'):
        hub.resolve_checkpoint('coco-999k')
    with pytest.raises(ModelFileError, match='coco-370k'):
        hub.converted_model('coco-999k')


def test_known_model_table():
    model = hub.KNOWN_MODELS['coco-370k']
    assert model.url == (
        'https://download.01.org/opencv/openvino_training_extensions/models/'
        'human_pose_estimation/checkpoint_iter_370000.pth'
    )
    assert model.file_name == FILE_NAME and model.num_refinement_stages == 1
    assert '40%' in model.description


def test_converted_model_converts_once(served_model, cache, monkeypatch, reference_dir):
    conversions = []
    save_model = orbax_io.save_model

    def counting_save_model(*args, **kwargs):
        conversions.append(args[1])
        return save_model(*args, **kwargs)

    monkeypatch.setattr(orbax_io, 'save_model', counting_save_model)

    folder = hub.converted_model('coco-370k', progress=False, timeout=TIMEOUT_S)
    assert folder == cache / 'models' / 'coco-370k' and folder.is_dir()
    mtime = folder.stat().st_mtime_ns
    again = hub.converted_model('coco-370k', progress=False, timeout=TIMEOUT_S)
    assert again == folder and len(conversions) == 1 and folder.stat().st_mtime_ns == mtime
    assert len(served_model.requests) == 1

    converted = orbax_io.load_any(folder)
    original = orbax_io.load_any(reference_dir / 'lwop_random_1stage_legacy.pth')
    assert converted.num_refinement_stages == 1
    converted_vars, original_vars = variables.variables(converted), variables.variables(original)
    assert converted_vars.keys() == original_vars.keys()
    for key, value in original_vars.items():
        np.testing.assert_array_equal(np.asarray(converted_vars[key][...]), np.asarray(value[...]), err_msg=key)


def test_silent_server_times_out(cache, monkeypatch):
    # A socket that listens but never answers: the connection succeeds, the reply never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(('127.0.0.1', 0))
        silent.listen(1)
        url = f'http://127.0.0.1:{silent.getsockname()[1]}/{FILE_NAME}'
        with pytest.raises(FetchError, match=r'\(timed out\); download'):
            hub.resolve_checkpoint('coco-370k', url=url, progress=False, timeout=0.5)
    assert _cache_files(cache) == []
