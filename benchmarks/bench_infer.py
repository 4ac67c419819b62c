"""End-to-end demo-path latency on CPU: PoseEstimator (ONNX Runtime, OpenVINO) vs the original demo.

  python benchmarks/bench_infer.py [--shared ../shared] [--model MODEL.onnx] [--runs 30] [--threads 2]

Per mini image (height 256): the full frame (pre-process + network + x4 upsampling + decode +
mapping to image pixels, what the original's baseline calls a "full demo frame"), then its split.
Estimators are timed alternately, one call each per round, so load changes hit them alike.
Without --model, the trained reference checkpoint is converted to ONNX in a temporary cache.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import cv2

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Original demo, full frame median ms (shared/reference/baselines_original.md), per image.
ORIGINAL_FULL_FRAME_MS = {
    '000000000785.jpg': 78.49,
    '000000040083.jpg': 72.81,
    '000000196141.jpg': 71.48,
    '000000197388.jpg': 81.86,
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--model', type=pathlib.Path, help='.onnx model (default: convert the reference .pth)')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    return parser.parse_args()


def onnx_model(args):
    if args.model:
        return args.model
    os.environ.setdefault('LWOP_JAX_CACHE', tempfile.mkdtemp(prefix='lwop_bench_cache_'))
    from lwop_jax.inference import backends as runtime

    return runtime.converted_onnx(args.shared / 'reference' / 'lwop_overfit_coco4.pth')


def split_steps(estimator, image):
    """The estimator's steps one by one: {step: callable} sharing intermediate results."""
    from lwop_jax.inference import decode, preprocess

    state = {}

    def pre():
        state['batch'], state['geometry'] = estimator.preprocess(image)

    def net():
        state['maps'] = estimator.run(state['batch'])

    def upsample_decode():
        heatmaps, pafs = (preprocess.upsample_demo_maps(m[0], estimator.upsample_ratio) for m in state['maps'])
        state['poses'] = decode.decode(heatmaps, pafs)

    def mapping():
        xy = state['poses'].keypoints[..., :2]
        preprocess.demo_keypoints_to_image(xy, state['geometry'], upsample_ratio=estimator.upsample_ratio)

    return {'pre-process': pre, 'network': net, 'upsample+decode': upsample_decode, 'mapping': mapping}


def time_rounds(calls, runs, warmup):
    """{name: [ms]}: each round calls every callable once, in turn."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main():
    args = parse_args()
    from lwop_jax.inference.estimator import PoseEstimator

    model = onnx_model(args)
    estimators = {name: PoseEstimator(model, name, threads=args.threads) for name in ('onnxruntime', 'openvino')}
    cv2.setNumThreads(args.threads)
    paths = sorted((args.shared / 'data' / 'coco_val_mini' / 'val2017').glob('*.jpg'))
    print(
        f'model {model}, height 256, {args.threads} threads, {args.runs} runs, medians in ms; '
        f'load average at start {load_average()}'
    )
    print(f'{"image":18} {"people":>6} {"original":>9} {"ORT":>7} {"ratio":>6} {"OpenVINO":>9} {"ratio":>6}')
    splits = {}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        people = len(estimators['onnxruntime'](image))
        calls = {n: (lambda e=e, image=image: e(image)) for n, e in estimators.items()}
        full = time_rounds(calls, args.runs, args.warmup)
        ort_ms, ov_ms = (statistics.median(full[n]) for n in ('onnxruntime', 'openvino'))
        original = ORIGINAL_FULL_FRAME_MS.get(path.name, float('nan'))
        print(
            f'{path.name:18} {people:6d} {original:9.1f} {ort_ms:7.1f} {ort_ms / original:6.2f} '
            f'{ov_ms:9.1f} {ov_ms / original:6.2f}'
        )
        for name, estimator in estimators.items():
            steps = time_rounds(split_steps(estimator, image), args.runs, args.warmup)
            splits[(path.name, name)] = {step: statistics.median(t) for step, t in steps.items()}
    print_calibration(args, estimators['onnxruntime'])
    print('\nsplit (median ms): pre-process / network / upsample+decode / mapping')
    for (image_name, name), steps in splits.items():
        print(f'{image_name:18} {name:12} ' + ' / '.join(f'{v:6.2f}' for v in steps.values()))
    print(
        f'load average at end {load_average()} (on a shared machine, 2-thread runtimes slow down '
        'several-fold when other jobs run: compare only quiet runs)'
    )


def print_calibration(args, estimator):
    """Load check: the original's own ONNX export (random weights, same network) and ours on the
    same 1x256x456 input, timed now; the original baseline measured 47.6 ms for it when quiet."""
    import numpy as np

    from lwop_jax.inference import backends as runtime

    original = args.shared / 'reference' / 'original_1stage_256x456.onnx'
    if not original.exists():
        return
    x = np.zeros((1, 256, 456, 3), np.float32)
    backend = runtime.load_backend(original, 'onnxruntime', threads=args.threads)
    times = time_rounds({'original': lambda: backend(x), 'ours': lambda: estimator.run(x)}, args.runs, args.warmup)
    print(
        f'\nload check, ORT network 1x256x456 now: original export {statistics.median(times["original"]):.1f} ms '
        f'(47.6 ms in the quiet baseline), ours {statistics.median(times["ours"]):.1f} ms'
    )


def load_average():
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'n/a'


if __name__ == '__main__':
    main()
