"""Running the app on uvicorn, with a drain on SIGTERM.

uvicorn's own SIGTERM closes the listening socket at once (new clients get a refused connection, not an
answer) and, once done, raises the signal again so that the process ends *by* SIGTERM. Here the first
SIGTERM or SIGINT starts a drain instead: the socket stays open and new requests get 503 (with
``Connection: close``, so a load balancer moves on), requests in flight and queued inferences finish; when
none is left (or ``drain_timeout`` passed) uvicorn shuts down as usual and the process exits with status 0.
A second signal stops at once.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import time

import uvicorn

from lwop_jax.inference.runs import quiet_opencv
from lwop_jax.serve.app import create_app
from lwop_jax.serve.service import Service

logger = logging.getLogger(__name__)
WS_MAX_QUEUE = 2  # frames a stream may have buffered beyond the one being answered


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame) -> None:
        # Not recorded in self._captured_signals: uvicorn would raise it again after the shutdown, and the
        # process would end by the signal instead of with status 0.
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.service.draining = True
            logger.warning('draining: %d requests in flight finish, new ones get 503', self.service.in_flight)
        else:
            self.should_exit = True
            self.force_exit = sig == signal.SIGINT

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            waited = time.monotonic() - self.drain_started
            if self.service.in_flight == 0 or waited > self.service.settings.drain_timeout:
                self.should_exit = True
        return await super().on_tick(counter)


def is_loopback(host: str) -> bool:
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: only 'localhost' is known to stay on this machine
        return False


def open_service_warning(host: str, api_key: str | None) -> str | None:
    """The one warning line for a service reachable from elsewhere without a key, else None."""
    if api_key or is_loopback(host):
        return None
    return (
        f'warning: serving on {host} without --api-key (or LWOP_API_KEY): anyone who can reach this port can '
        'use the service'
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one); OSError naming the address when it cannot."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise OSError(f'{host}:{port}: cannot listen ({exc.strerror or exc})') from exc
    sock.set_inheritable(True)
    return sock


def serve(service: Service, host: str, port: int, verbose: bool = False, announce=print) -> None:
    """Binds host:port, announces the address (one line), and serves until SIGTERM/SIGINT have drained."""
    quiet_opencv()  # a damaged upload is answered by us, in one line; OpenCV's own warnings are noise
    if not verbose:  # it logs a warning per malformed form: clients could fill the log at will
        logging.getLogger('python_multipart').setLevel(logging.ERROR)
    sock = listen(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(service),
        log_level='info' if verbose else 'warning',
        access_log=verbose,
        ws='websockets-sansio',
        ws_max_size=service.settings.limits.max_body_bytes,
        ws_max_queue=WS_MAX_QUEUE,
        lifespan='on',
        timeout_graceful_shutdown=max(1, int(service.settings.drain_timeout)),
    )
    server = DrainingServer(config, service)
    shown_host = f'[{host}]' if ':' in host else host
    announce(f'lwop serve: http://{shown_host}:{bound_port}/ ({service.pool.workers} workers)', flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
