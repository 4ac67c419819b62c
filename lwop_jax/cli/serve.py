"""``lwop serve``: pose estimation over HTTP and WebSocket, with a live browser page."""

from __future__ import annotations

import argparse
import os
import sys

from lwop_jax.cli import common
from lwop_jax.inference.preprocess import DEMO_HEIGHT
from lwop_jax.training import host_heap

DESCRIPTION = """Serves pose estimation over HTTP and WebSocket, with a live browser page at /.

  lwop serve --checkpoint-path model.onnx --workers 2
  curl --data-binary @people.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/v1/poses

POST /v1/poses      an image as the body (image/jpeg, png, bmp, webp) or the multipart field "image";
                    the answer is the image record of `lwop infer --json` plus timing_ms
WebSocket /v1/stream  binary JPEG frames in, one JSON record per frame out, in order, tracked
GET /v1/model, /healthz, /metrics (Prometheus), /openapi.json, / (the page: camera or a file)

Inference runs in --workers workers, each with its own runtime session and --threads threads (default:
the CPU cores shared out among the workers); --max-queue more requests may wait, beyond that the answer
is 503 with Retry-After. Bad requests get {"error": "..."} and their status (400, 401, 408, 413, 415).
SIGTERM drains: requests in flight finish, new ones get 503, then the process exits with status 0.
Needs the serve extra: pip install 'lwop_jax[serve]'.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model_source_arguments(parser, required=True)
    parser.add_argument('--height-size', type=int, default=DEMO_HEIGHT, help='network input height (default 256)')
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on (default 127.0.0.1)')
    parser.add_argument('--port', type=int, default=8000, help='port (default 8000; 0: a free one, announced)')
    parser.add_argument('--workers', type=int, default=1, help='inferences at the same time (default 1)')
    parser.add_argument('--max-queue', type=int, default=8, help='requests waiting beyond the workers (default 8)')
    parser.add_argument('--max-body-mb', type=float, default=10.0, help='largest body in MB (default 10)')
    parser.add_argument('--max-pixels', type=float, default=40e6, help='largest image in pixels (default 40e6)')
    parser.add_argument(
        '--body-timeout', type=float, default=30.0, help='seconds a request body may take to arrive (default 30)'
    )
    parser.add_argument(
        '--max-connections', type=int, default=64, help='requests and streams handled at once (default 64)'
    )
    parser.add_argument(
        '--api-key', default=os.environ.get('LWOP_API_KEY'), help='key clients must send (default: $LWOP_API_KEY)'
    )
    parser.add_argument(
        '--drain-timeout', type=float, default=30.0, help='seconds SIGTERM waits for requests in flight (default 30)'
    )


def check_arguments(args: argparse.Namespace) -> str | None:
    positive = ('workers', 'max_body_mb', 'max_pixels', 'body_timeout', 'max_connections', 'height_size')
    for name in positive:
        if getattr(args, name) <= 0:
            return f'--{name.replace("_", "-")} must be positive, got {getattr(args, name)}'
    if args.max_queue < 0:
        return f'--max-queue must be 0 or more, got {args.max_queue}'
    if not 0 <= args.port <= 65535:
        return f'--port must be 0..65535, got {args.port}'
    return None


def run(args: argparse.Namespace) -> int:
    # starlette, uvicorn, prometheus_client (the serve extra): imported here, so `lwop --help` needs none
    from lwop_jax.serve.limits import Limits
    from lwop_jax.serve.server import open_service_warning, serve
    from lwop_jax.serve.service import Service, Settings

    # Before the workers start: glibc gives each thread its own arena, which returns freed image buffers to the
    # kernel, so every request faulted its buffers in again: decoding, pre- and post-processing an int8 frame took
    # 8.2 ms in a worker thread against 5.9 in the main thread, 5.0 in either with one arena, never trimmed, as
    # training uses (see host_heap; the network alike). LWOP_JAX_KEEP_FREED_MEMORY=0 turns it off.
    host_heap.keep_freed_memory()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    settings = Settings(
        checkpoint_path=args.checkpoint_path,
        workers=args.workers,
        threads=threads,
        max_queue=args.max_queue,
        max_connections=args.max_connections,
        limits=Limits(
            max_body_bytes=int(args.max_body_mb * 2**20),
            max_pixels=int(args.max_pixels),
            body_timeout_s=args.body_timeout,
        ),
        api_key=args.api_key or None,
        net_height=args.height_size,
        backend=args.backend,
        precision=args.precision,
        keypoint_schema=args.keypoint_schema,
        num_refinement_stages=args.num_refinement_stages,
        drain_timeout=args.drain_timeout,
    )
    warning = open_service_warning(args.host, settings.api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    service = Service.load(settings)
    estimator = service.estimator
    print(
        f'model {args.checkpoint_path}: {estimator.backend_name}, {estimator.precision}, {estimator.schema.name}; '
        f'{args.workers} workers x {threads} threads, queue {args.max_queue}',
        flush=True,
    )
    serve(service, args.host, args.port, verbose=args.verbose)
    return 0


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
