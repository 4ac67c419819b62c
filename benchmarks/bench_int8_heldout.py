"""fp32 against int8 AP of a demo-trained model on the demo's held-out synthetic set (base height 192, as the
demo scores it), on ONNX Runtime and OpenVINO.

  lwop demo --out runs/demo
  lwop convert runs/demo/lwop_demo.onnx --onnx runs/int8/int8.onnx --openvino runs/int8/ir --precision int8 \\
      --calibration-images runs/demo/data/train/images --calibration-labels runs/demo/data/train/annotations.json
  python benchmarks/bench_int8_heldout.py runs/demo runs/int8/int8.onnx runs/int8/ir/lwop_demo.xml
  python benchmarks/bench_int8_heldout.py --smoke [--shared ../shared]

Measured (the coco18 demo model, fp32 0.417; 100 calibration images spread over the 800): int8 ONNX Runtime
0.416, OpenVINO NNCF 0.412 (0.398 with NNCF's default activation ranges and overflow fix; see the README).

--smoke (the tests run it, so that it cannot rot; its figures mean nothing): the trained reference checkpoint
stands in for the demo's model and the four COCO mini images for its held-out and calibration sets; the int8
models are made here through lwop convert's path, accuracy gate included.
"""

import argparse
import os
import pathlib
import tempfile

from lwop_jax.evaluation import coco_eval
from lwop_jax.inference.backends import load_backend

DEMO_EVAL_HEIGHT = 192  # lwop_jax.configs.demo: demo.eval_base_height
DEFAULT_SHARED = pathlib.Path(__file__).resolve().parents[2] / 'shared'


def smoke_inputs(shared: pathlib.Path, workdir: pathlib.Path):
    """--smoke: (labels, images, fp32 .onnx, int8 .onnx, int8 .xml): the reference checkpoint, the mini images."""
    from lwop_jax.evaluation import gate
    from lwop_jax.inference.backends import converted_onnx

    os.environ.setdefault('LWOP_JAX_CACHE', str(workdir / 'cache'))  # the .pth -> ONNX conversion
    mini = shared / 'data' / 'coco_val_mini'
    labels, images = mini / 'person_keypoints_val2017_mini.json', mini / 'val2017'
    fp32 = converted_onnx(shared / 'reference' / 'lwop_overfit_coco4.pth')
    calibration = gate.calibration_set(images, labels, max_images=2)  # two of the four: quick
    int8_onnx = gate.quantize_with_gate(fp32, 'onnxruntime', workdir / 'int8.onnx', calibration, threads=2)
    int8_xml = gate.quantize_with_gate(fp32, 'openvino', workdir / 'ir', calibration, threads=2)
    return labels, images, fp32, int8_onnx, int8_xml


def print_scores(labels, images, fp32, int8_onnx, int8_xml) -> None:
    """AP of the four models on the held-out set, and each one's difference to fp32 on ONNX Runtime."""
    models = [
        ('fp32 ONNX Runtime', fp32, 'onnxruntime'),
        ('fp32 OpenVINO', fp32, 'openvino'),
        ('int8 ONNX Runtime (QDQ)', int8_onnx, 'onnxruntime'),
        ('int8 OpenVINO (NNCF)', int8_xml, 'openvino'),
    ]
    fp32_ap = None
    for name, path, backend in models:
        runtime = load_backend(path, backend, threads=2)
        result = coco_eval.evaluate_backend(runtime, labels, images, base_height=DEMO_EVAL_HEIGHT, progress=False)
        stats = result.stats
        fp32_ap = stats['AP'] if fp32_ap is None else fp32_ap
        print(
            f'{name:26s} {runtime.precision:5s} AP {stats["AP"]:.3f} ({stats["AP"] - fp32_ap:+.3f} vs fp32 ORT) '
            f'AP50 {stats["AP50"]:.3f} AR {stats["AR"]:.3f} detections {len(result.detections)}',
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('demo', type=pathlib.Path, nargs='?', help='the folder lwop demo --out wrote')
    parser.add_argument('int8_onnx', type=pathlib.Path, nargs='?')
    parser.add_argument('int8_xml', type=pathlib.Path, nargs='?')
    parser.add_argument('--smoke', action='store_true', help='the reference checkpoint on the mini images (tests)')
    parser.add_argument('--shared', type=pathlib.Path, default=DEFAULT_SHARED, help='for --smoke')
    args = parser.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory(prefix='lwop_bench_int8_heldout_') as workdir:
            print_scores(*smoke_inputs(args.shared, pathlib.Path(workdir)))
    elif args.int8_xml is None:
        parser.error('give the demo folder and the two int8 models, or --smoke')
    else:
        val = args.demo / 'data' / 'val'
        print_scores(
            val / 'annotations.json', val / 'images', args.demo / 'lwop_demo.onnx', args.int8_onnx, args.int8_xml
        )


if __name__ == '__main__':
    main()
