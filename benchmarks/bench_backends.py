"""Why OpenVINO fp32 beat ONNX Runtime fp32 end to end, and whether it still does: subnormal weights.

  python benchmarks/bench_backends.py [--shared ../shared] [--runs 8] [--threads 2] [--smoke]

The trained reference checkpoint (lwop_overfit_coco4.pth) is exported to ONNX twice: as lwop_jax writes
it (subnormal weights stored as zero) and with its 64,707 subnormal weights kept, as another exporter
writes a trained model (the original's torch.onnx export of its checkpoints has them too). Each file then
runs on plain ONNX Runtime (the file as it is), on lwop_jax's ONNX Runtime backend (which sets subnormal
weights to zero when it loads a file) and on OpenVINO, on the network inputs of the four COCO mini images at
height 256 (widths 384-424: a new shape on every call), alternating; then the full frame (PoseEstimator)
on both runtimes. Ratios are to lwop_jax's ONNX Runtime backend on lwop_jax's file, in the same run.
--smoke: one round, no warm-up (the tests run it, so that it cannot rot; its figures mean nothing).

Finding (README, "Which runtime for .onnx files"): ONNX Runtime runs subnormal weights at microcode speed
(2.7-2.9x slower in two runs); OpenVINO flushes them itself. The two tied on a fixed
1x3x256x456 input because that comparison used the original's export of random weights, which has none.
Without subnormals the runtimes tie at every width, so ONNX Runtime stays the default for .onnx files.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))

from bench_infer import load_average, time_rounds  # noqa: E402  (after the path set-up)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--runs', type=int, default=8, help='rounds over the four images')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--smoke', action='store_true', help='one round, no warm-up (the tests run it)')
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.warmup = 1, 0
    return args


def export_both(checkpoint: pathlib.Path, folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """{'lwop_jax file': flushed export, 'with subnormals': the same export keeping them}."""
    from lwop_jax.checkpoints import export, orbax_io

    model = orbax_io.load_any(checkpoint)
    return {
        'lwop_jax file': export.export_onnx(model, folder / 'flushed.onnx'),
        'with subnormals': export.export_onnx(model, folder / 'subnormal.onnx', flush_subnormals=False),
    }


def plain_onnxruntime(path, threads):
    """ONNX Runtime on the file as it is (no flushing): the settings of lwop_jax's backend otherwise."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})


def network_calls(files, threads) -> dict:
    """{label: f(images)} for every file on plain ONNX Runtime, lwop_jax's ONNX Runtime backend, OpenVINO."""
    from lwop_jax.inference import backends

    calls = {}
    for file_label, path in files.items():
        calls[f'{file_label}, plain ONNX Runtime'] = plain_onnxruntime(path, threads)
        calls[f'{file_label}, lwop_jax ONNX Runtime'] = backends.load_backend(path, 'onnxruntime', threads=threads)
        calls[f'{file_label}, OpenVINO'] = backends.load_backend(path, 'openvino', threads=threads)
    return calls


def over_images(calls, inputs) -> dict:
    """One call per callable and input, inputs in turn: every call sees a new shape."""
    return {label: (lambda f=f: [f(x) for x in inputs]) for label, f in calls.items()}


def print_ratios(title, times, baseline, per_call=1):
    base = statistics.median(times[baseline])
    print(title)
    for label, values in times.items():
        median = statistics.median(values)
        print(f'  {label:45} {median / per_call:7.1f} ms  {median / base:5.2f}x')


def main():
    args = parse_args()
    os.environ.setdefault('LWOP_JAX_CACHE', tempfile.mkdtemp(prefix='lwop_bench_cache_'))
    from lwop_jax.inference.estimator import PoseEstimator

    cv2.setNumThreads(args.threads)
    folder = pathlib.Path(tempfile.mkdtemp(prefix='lwop_bench_backends_'))
    files = export_both(args.shared / 'reference' / 'lwop_overfit_coco4.pth', folder)
    images = [cv2.imread(str(p)) for p in sorted((args.shared / 'data' / 'coco_val_mini' / 'val2017').glob('*.jpg'))]
    estimators = {
        name: PoseEstimator(files['lwop_jax file'], name, threads=args.threads) for name in ('onnxruntime', 'openvino')
    }
    inputs = [estimators['onnxruntime'].preprocess(image)[0] for image in images]
    print(
        f'{args.threads} threads, {args.runs} rounds over the 4 mini images (inputs {[x.shape[1:3] for x in inputs]}), '
        f'medians per call; load average at start {load_average()}'
    )
    baseline = 'lwop_jax file, lwop_jax ONNX Runtime'
    times = time_rounds(over_images(network_calls(files, args.threads), inputs), args.runs, args.warmup)
    print_ratios('network:', times, baseline, per_call=len(inputs))
    frames = {name: (lambda e=e: [e(image) for image in images]) for name, e in estimators.items()}
    times = time_rounds(frames, args.runs, args.warmup)
    print_ratios('full frame (pre-process + network + decode), lwop_jax file:', times, 'onnxruntime', len(images))
    print(f'load average at end {load_average()}')


if __name__ == '__main__':
    main()
