"""Frame time and AP per precision: fp32 (ONNX Runtime, OpenVINO), bf16 (OpenVINO), int8 (ORT QDQ, NNCF).

  python benchmarks/bench_precision.py [--shared ../shared] [--runs 20] [--threads 2]
      [--calibration-images 32] [--keep-fp32 last-heads] [--smoke]

The trained reference checkpoint (lwop_overfit_coco4.pth) is exported to ONNX and IR; int8 models are
calibrated on synthetic people (``lwop synthetic``, seed 1: none of the four COCO mini images) through
``lwop convert``'s path, accuracy gate included (its figures are printed). Then, per mini image at height
256 with 2 threads: the full frame (PoseEstimator: pre-process + network + decoding), estimators timed
alternately, one call each per round, as a ratio to the fp32 ONNX Runtime frame of the same round set; and
per precision the AP on the four mini images (val.py path, base height 368) with its keypoint agreement
against fp32 ONNX Runtime. --smoke: one round, no warm-up, 4 calibration images, 2 mini images (the tests run
it, so that it cannot rot; its figures mean nothing).

Findings (reference checkpoint, Xeon with AVX512-BF16/AMX, 2 threads, a shared machine; see the report of
issue 16 for the figures of a run):

* The trained checkpoint had 64,707 subnormal weights; ONNX Runtime's fp32 frame was 2.6x slower than the
  same network with random weights (353 vs 137 ms in one interleaved run). Exports now store them as zero
  (:func:`lwop_jax.checkpoints.export.flush_subnormal_weights`), outputs unchanged.
* Layers kept in float (``--keep-fp32``), 32 synthetic calibration images, AP on the mini set (fp32 0.761):
  every layer int8: ORT 0.737, NNCF 0.738 (agreement 0.90); the last stage's two heads (4 of 57
  convolutions) in float: ORT 0.759, NNCF 0.743 (agreement 0.99), at no measurable cost in frame time
  (ORT 0.28x vs 0.30x, NNCF 0.14x vs 0.13x of fp32 ORT). Default for both: last-heads. NNCF's PERFORMANCE
  preset (symmetric activations) lost 0.007 AP more than MIXED in an earlier 16-image trial.
* NNCF with global MinMax activation ranges and no overflow fix (lwop_jax's settings since; they were NNCF's
  defaults in the figures above): AP 0.775 with last-heads, agreement 0.989, frame 0.30-0.35x.
* NNCF must quantize convert_model's graph: from read_model's, the CPU plugin ran every convolution in f32.
* A single blank calibration image gives AP 0.07 (ORT) / 0.00 (NNCF): what the gate is for.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import cv2

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'benchmarks'))

from bench_infer import load_average, time_rounds  # noqa: E402  (after the path set-up)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--calibration-images', type=int, default=32, help='synthetic images to calibrate on')
    parser.add_argument('--keep-fp32', default='last-heads', help='layers kept in float (lwop convert --keep-fp32)')
    parser.add_argument('--workdir', type=pathlib.Path, help='keep the models here (default: a temporary folder)')
    parser.add_argument('--mini-images', type=int, default=4, help='time and score the first N mini images')
    parser.add_argument('--smoke', action='store_true', help='1 round, no warm-up, 4 calibration and 2 mini images')
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.warmup, args.calibration_images, args.mini_images = 1, 0, 4, 2
    return args


def make_models(args, workdir: pathlib.Path) -> dict:
    """{name: (model file, backend, precision)}; the int8 ones through the accuracy gate."""
    os.environ.setdefault('LWOP_JAX_CACHE', str(workdir / 'cache'))
    from lwop_jax.checkpoints import openvino_ir
    from lwop_jax.evaluation import gate
    from lwop_jax.inference import backends

    fp32_onnx = backends.converted_onnx(args.shared / 'reference' / 'lwop_overfit_coco4.pth')
    fp32_ir = openvino_ir.export_openvino(fp32_onnx, workdir / 'fp32_ir')
    synthetic = workdir / 'synthetic'
    if not synthetic.exists():
        command = [sys.executable, '-m', 'lwop_jax', 'synthetic', '--out', str(synthetic), '--seed', '1']
        command += ['--num-images', str(args.calibration_images), '--workers', '1']
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    calibration = gate.calibration_set(synthetic / 'images', max_images=args.calibration_images)
    int8 = {}
    for runtime, output in (('onnxruntime', workdir / 'int8.onnx'), ('openvino', workdir / 'int8_ir')):
        int8[runtime] = gate.quantize_with_gate(
            fp32_onnx, runtime, output, calibration, keep_fp32=args.keep_fp32, threads=args.threads
        )
    return {
        'fp32 ORT': (fp32_onnx, 'onnxruntime', 'fp32'),
        'fp32 OpenVINO': (fp32_ir, 'openvino', 'fp32'),
        'bf16 OpenVINO': (fp32_ir, 'openvino', 'bf16'),
        'int8 ORT QDQ': (int8['onnxruntime'], 'onnxruntime', 'int8'),
        'int8 OpenVINO NNCF': (int8['openvino'], 'openvino', 'int8'),
        'int8 QDQ on OpenVINO': (int8['onnxruntime'], 'openvino', 'int8'),
    }


def frame_times(args, estimators, paths) -> dict:
    """{image name: {estimator: median ms}}, estimators alternating within each round."""
    table = {}
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        calls = {name: (lambda e=e, image=image: e(image)) for name, e in estimators.items()}
        times = time_rounds(calls, args.runs, args.warmup)
        table[path.name] = {name: statistics.median(t) for name, t in times.items()}
    return table


def main():
    args = parse_args()
    workdir = args.workdir or pathlib.Path(tempfile.mkdtemp(prefix='lwop_bench_precision_'))
    workdir.mkdir(parents=True, exist_ok=True)
    from lwop_jax.evaluation.compare import compare_backends, labelled_images
    from lwop_jax.inference.estimator import PoseEstimator

    cv2.setNumThreads(args.threads)
    models = make_models(args, workdir)
    estimators = {
        name: PoseEstimator(path, backend, threads=args.threads, precision=precision)
        for name, (path, backend, precision) in models.items()
    }
    mini = args.shared / 'data' / 'coco_val_mini'
    paths = sorted((mini / 'val2017').glob('*.jpg'))[: args.mini_images]
    print(
        f'\nheight 256, {args.threads} threads, {args.runs} alternating rounds, full-frame medians in ms '
        f'(ratio to fp32 ORT); load average at start {load_average()}'
    )
    for name, estimator in estimators.items():
        print(f'  {name:22} runs {estimator.precision} on {estimator.backend_name}')
    table = frame_times(args, estimators, paths)
    names = list(estimators)
    print(f'{"image":18} ' + ' '.join(f'{n:>22}' for n in names))
    for image_name, row in table.items():
        base = row['fp32 ORT']
        print(f'{image_name:18} ' + ' '.join(f'{row[n]:9.1f} ms ({row[n] / base:5.2f}x)' for n in names))
    totals = {n: sum(row[n] for row in table.values()) for n in names}
    base = totals['fp32 ORT']
    print(f'{f"all {len(paths)}":18} ' + ' '.join(f'{totals[n]:9.1f} ms ({totals[n] / base:5.2f}x)' for n in names))

    dataset = json.loads((mini / 'person_keypoints_val2017_mini.json').read_text())
    images = labelled_images(dataset, mini / 'val2017')[: args.mini_images]
    reference = estimators['fp32 ORT'].backend
    print(f'\nAP on {len(images)} mini images (val.py path, base height 368), agreement with fp32 ORT:')
    for name, estimator in estimators.items():
        comparison = compare_backends(reference, estimator.backend, images, dataset)
        print(
            f'  {name:22} AP {comparison.stats_b["AP"]:.3f}  AP50 {comparison.stats_b["AP50"]:.3f}  '
            f'agreement {comparison.agreement.value:.3f}  people {comparison.agreement.people_b}'
        )
    print(f'load average at end {load_average()}; models in {workdir}')


if __name__ == '__main__':
    main()
