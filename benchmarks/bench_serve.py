"""`lwop serve` over loopback against PoseEstimator in-process: requests/s, p50 and p95 latency.

  python benchmarks/bench_serve.py [--shared ../shared] [--model MODEL.onnx] [--workers 2] [--threads 1]
                                   [--clients 1 2 4] [--requests 48] [--rounds 3] [--precisions fp32 int8]
                                   [--json out.json] [--smoke]

For each precision, a real `lwop serve` runs in a subprocess (``--workers`` workers, ``--threads`` each, a queue
long enough that nothing is refused) on the four COCO mini images as JPEG bytes. Clients are threads of this
process, each with its own keep-alive connection, POSTing the images in turn (the answer parsed as JSON).
The baseline is what a program without the service does with the same bytes: cv2.imdecode and a
PoseEstimator call, in this process, with the same threads per inference as one worker and the same malloc
setting as the service (``host_heap.keep_freed_memory``). In-process and
1-client rounds alternate (``--rounds``), so load changes hit both alike; then 2 and 4 clients. "outside ms":
the median of a request's latency less the inference time the service reports in timing_ms (decode to
postprocess): what HTTP, the queue, JSON and the client add, less noisy than a difference of two medians.

int8: the fp32 model quantized for ONNX Runtime (QDQ, through the accuracy gate) on the mini images.
Without --model, the trained reference checkpoint is converted to ONNX in a temporary cache.
--smoke: 1 round of 4 requests, 1 and 2 clients (the tests run it, so that it cannot rot; its figures mean
nothing).
"""

import argparse
import http.client
import json
import pathlib
import statistics
import sys
import tempfile
import threading
import time

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tests'))
from bench_infer import load_average, onnx_model  # noqa: E402 (a sibling script: the reference model, converted once)
from serve_helpers import start_server, stop_server  # noqa: E402 (the tests' way to run `lwop serve`)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--model', type=pathlib.Path, help='fp32 .onnx model (default: convert the reference .pth)')
    parser.add_argument('--backend', default='onnxruntime', choices=('onnxruntime', 'openvino'))
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=1, help='threads per inference (service worker, in-process)')
    parser.add_argument('--clients', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--requests', type=int, default=48, help='requests per client and round')
    parser.add_argument('--rounds', type=int, default=3, help='alternating in-process / 1-client rounds')
    parser.add_argument('--precisions', nargs='+', default=['fp32', 'int8'], choices=('fp32', 'int8'))
    parser.add_argument('--json', type=pathlib.Path, help='also write the figures here')
    parser.add_argument('--smoke', action='store_true', help='1 round of 4 requests, 1 and 2 clients (tests)')
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.rounds, args.clients = 4, 1, [1, 2]
    return args


def int8_model(fp32_onnx, mini_dir, workdir: pathlib.Path) -> pathlib.Path:
    from lwop_jax.evaluation import gate

    calibration = gate.calibration_set(mini_dir)
    return gate.quantize_with_gate(fp32_onnx, 'onnxruntime', workdir / 'int8.onnx', calibration, report=lambda _: None)


def in_process(estimator, images: list[bytes], count: int) -> list[float]:
    """Seconds per image: decode the JPEG bytes and call the estimator, as a program without the service."""
    times = []
    for n in range(count):
        start = time.perf_counter()
        people = estimator(cv2.imdecode(np.frombuffer(images[n % len(images)], np.uint8), cv2.IMREAD_COLOR))
        times.append(time.perf_counter() - start)
        assert len(people) >= 1
    return times


def served(server, images: list[bytes], clients: int, count: int) -> tuple[list[float], float, list[float]]:
    """(seconds per request of every client, wall seconds, seconds of each request spent outside the inference
    the service timed: HTTP, the body, the queue, JSON, the client): ``clients`` threads, ``count`` requests
    each."""
    latencies, outside, failures = [], [], []

    def client(offset: int):
        connection = http.client.HTTPConnection(server.host, server.port, timeout=120)
        try:
            for n in range(count):
                start = time.perf_counter()
                data = images[(n + offset) % len(images)]
                connection.request('POST', '/v1/poses', data, {'Content-Type': 'image/jpeg'})
                response = connection.getresponse()
                body = json.loads(response.read())
                latencies.append(time.perf_counter() - start)
                if response.status != 200 or not body['people']:
                    failures.append((response.status, body))
                else:
                    outside.append(latencies[-1] - sum(body['timing_ms'].values()) / 1000)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    assert not failures, failures[:2]
    return latencies, wall, outside


def summary(latencies: list[float], wall: float, outside: list[float] | None = None) -> dict:
    row = {
        'requests_per_s': round(len(latencies) / wall, 2),
        'p50_ms': round(1000 * statistics.median(latencies), 1),
        'p95_ms': round(1000 * float(np.percentile(latencies, 95)), 1),
        'requests': len(latencies),
    }
    if outside:
        row['outside_inference_p50_ms'] = round(1000 * statistics.median(outside), 2)
    return row


def bench_precision(args, model, precision, images, logs) -> dict:
    from lwop_jax.inference.estimator import PoseEstimator

    estimator = PoseEstimator(model, args.backend, threads=args.threads, precision=precision)
    flags = ['--backend', args.backend, '--precision', precision, '--workers', args.workers]
    flags += ['--threads', args.threads, '--max-queue', 4 * max(args.clients)]
    server = start_server(model, logs / precision, *flags)
    try:
        in_process(estimator, images, 2 * len(images))  # warm-up: first calls of each shape allocate
        served(server, images, 1, 2 * len(images))
        local, one, outside = [], [], []
        for _ in range(args.rounds):  # alternating, so that load changes hit both
            local += in_process(estimator, images, args.requests)
            latencies, _, spent = served(server, images, 1, args.requests)
            one, outside = one + latencies, outside + spent
        rows = {'in-process': summary(local, sum(local)), 'clients 1': summary(one, sum(one), outside)}
        for clients in args.clients:
            if clients != 1:
                latencies, wall, spent = served(server, images, clients, args.requests * args.rounds)
                rows[f'clients {clients}'] = summary(latencies, wall, spent)
    finally:
        stop_server(server)
    assert server.process.returncode == 0, server.stderr()
    return rows


def report(precision: str, rows: dict) -> None:
    print(f'\n{precision}: {"":14} {"req/s":>8} {"p50 ms":>8} {"p95 ms":>8} {"outside ms":>10}')
    for name, row in rows.items():
        outside = row.get('outside_inference_p50_ms')
        print(
            f'  {name:18} {row["requests_per_s"]:8.2f} {row["p50_ms"]:8.1f} {row["p95_ms"]:8.1f} '
            + (f'{outside:10.2f}' if outside is not None else f'{"":10}')
        )
    local, one = rows['in-process'], rows['clients 1']
    print(
        f'  overhead at 1 client: p50 {one["p50_ms"] / local["p50_ms"] - 1:+.1%}, '
        f'requests/s {local["requests_per_s"] / one["requests_per_s"] - 1:+.1%}, '
        f'outside the inference {one["outside_inference_p50_ms"] / local["p50_ms"]:.1%} of the in-process p50'
    )
    most = max((name for name in rows if name.startswith('clients')), key=lambda name: int(name.split()[1]))
    print(f'  throughput {most} / clients 1: {rows[most]["requests_per_s"] / one["requests_per_s"]:.2f}x')


def main():
    args = parse_args()
    from lwop_jax.training import host_heap

    # The allocator setting `lwop serve` makes (one glibc arena, never trimmed): the in-process baseline gets it
    # too, so that the comparison is of the service alone (it also speeds up post-processing in-process).
    host_heap.keep_freed_memory()
    mini_dir = args.shared / 'data' / 'coco_val_mini' / 'val2017'
    images = [path.read_bytes() for path in sorted(mini_dir.glob('*.jpg'))]
    print(f'load average at start: {load_average()}')
    print(f'{args.workers} workers x {args.threads} threads, backend {args.backend}, {len(images)} mini images')
    results = {}
    with tempfile.TemporaryDirectory(prefix='lwop_bench_serve_') as work:
        workdir = pathlib.Path(work)
        fp32 = onnx_model(args)
        models = {'fp32': fp32}
        if 'int8' in args.precisions:
            models['int8'] = int8_model(fp32, mini_dir, workdir)
        for precision in args.precisions:
            results[precision] = bench_precision(args, models[precision], precision, images, workdir / 'logs')
            report(precision, results[precision])
    print(f'\nload average at end: {load_average()}')
    if args.json:
        args.json.write_text(json.dumps({'settings': vars(args), **results}, default=str))


if __name__ == '__main__':
    main()
