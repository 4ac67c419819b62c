"""Evaluation throughput on COCO mini (4 images) for each backend: images/s of the val.py loop.

  python benchmarks/bench_evaluate.py [--shared ../shared] [--repeats 3] [--threads 2] [--multiscale] [--flip]
                                      [--backends jax onnxruntime openvino]

Model: the trained overfit checkpoint (reference/lwop_overfit_coco4.pth), converted to ONNX on the fly for
ONNX Runtime and OpenVINO (cached under $LWOP_JAX_CACHE, default ~/.cache/lwop_jax). Each backend first
runs one untimed pass (JAX compiles once per input shape), then the repeats alternate between backends,
so a change of machine load hits them alike. The time is the detection loop (read, pre-process, network,
upsample, decode, COCO conversion), without COCOeval; the network's share is measured by timing the
backend calls. Medians over the repeats are printed.
"""

import argparse
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from lwop_jax.evaluation import coco_eval  # noqa: E402
from lwop_jax.inference import backends as runtime  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2, help='threads for onnxruntime and openvino')
    parser.add_argument('--multiscale', action='store_true')
    parser.add_argument('--flip', action='store_true')
    parser.add_argument(
        '--backends', nargs='+', default=['jax', 'onnxruntime', 'openvino'], choices=sorted(runtime.BACKENDS)
    )
    return parser.parse_args()


class TimedBackend:
    """Wraps a backend and adds up the seconds spent in its calls."""

    def __init__(self, backend):
        self.backend, self.seconds = backend, 0.0

    def __call__(self, images):
        start = time.perf_counter()
        try:
            return self.backend(images)
        finally:
            self.seconds += time.perf_counter() - start


def run_once(backend, labels, images, options):
    """One evaluation pass: (images/s of the detection loop, network seconds per image, AP)."""
    backend.seconds = 0.0
    result = coco_eval.evaluate_backend(backend, labels, images, progress=False, **options)
    count = len(result.image_ids)
    return count / result.seconds, backend.seconds / count, result.stats['AP']


def main():
    args = parse_args()
    checkpoint = args.shared / 'reference' / 'lwop_overfit_coco4.pth'
    labels = args.shared / 'data' / 'coco_val_mini' / 'person_keypoints_val2017_mini.json'
    images = args.shared / 'data' / 'coco_val_mini' / 'val2017'
    options = {'scales': coco_eval.MULTISCALE if args.multiscale else (1,), 'flip': args.flip}
    backends = {
        name: TimedBackend(runtime.load_backend(checkpoint, name, threads=args.threads)) for name in args.backends
    }
    for backend in backends.values():
        run_once(backend, labels, images, options)  # warm-up: jit compiles, allocator, caches
    runs = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, backend in backends.items():
            runs[name].append(run_once(backend, labels, images, options))
    print(
        f'COCO mini, 4 images, scales {list(options["scales"])}, flip {args.flip}, '
        f'threads {args.threads} (onnxruntime/openvino), median of {args.repeats}'
    )
    print(f'{"backend":<12} {"images/s":>9} {"network ms/img":>15} {"rest ms/img":>12} {"AP":>7}')
    for name, results in runs.items():
        rate = statistics.median(r[0] for r in results)
        network_ms = 1000 * statistics.median(r[1] for r in results)
        print(f'{name:<12} {rate:9.2f} {network_ms:15.0f} {1000 / rate - network_ms:12.0f} {results[0][2]:7.4f}')


if __name__ == '__main__':
    main()
