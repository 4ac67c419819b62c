"""fp32 against int8 AP of a demo-trained model on the demo's held-out synthetic set (base height 192, as the
demo scores it), on ONNX Runtime and OpenVINO.

  lwop demo --out runs/demo
  lwop convert runs/demo/lwop_demo.onnx --onnx runs/int8/int8.onnx --openvino runs/int8/ir --precision int8 \\
      --calibration-images runs/demo/data/train/images --calibration-labels runs/demo/data/train/annotations.json
  python benchmarks/bench_int8_heldout.py runs/demo runs/int8/int8.onnx runs/int8/ir/lwop_demo.xml

Measured (the coco18 demo model, fp32 0.417; 100 calibration images spread over the 800): int8 ONNX Runtime
0.416, OpenVINO NNCF 0.412 (0.398 with NNCF's default activation ranges and overflow fix; see the README).
"""

import argparse
import pathlib

from lwop_jax.evaluation import coco_eval
from lwop_jax.inference.backends import load_backend

DEMO_EVAL_HEIGHT = 192  # lwop_jax.configs.demo: demo.eval_base_height


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('demo', type=pathlib.Path, help='the folder lwop demo --out wrote')
    parser.add_argument('int8_onnx', type=pathlib.Path)
    parser.add_argument('int8_xml', type=pathlib.Path)
    args = parser.parse_args()
    labels, images = args.demo / 'data' / 'val' / 'annotations.json', args.demo / 'data' / 'val' / 'images'
    fp32 = args.demo / 'lwop_demo.onnx'
    models = [
        ('fp32 ONNX Runtime', fp32, 'onnxruntime'),
        ('fp32 OpenVINO', fp32, 'openvino'),
        ('int8 ONNX Runtime (QDQ)', args.int8_onnx, 'onnxruntime'),
        ('int8 OpenVINO (NNCF)', args.int8_xml, 'openvino'),
    ]
    for name, path, backend in models:
        runtime = load_backend(path, backend, threads=2)
        result = coco_eval.evaluate_backend(runtime, labels, images, base_height=DEMO_EVAL_HEIGHT, progress=False)
        stats = result.stats
        print(
            f'{name:26s} {runtime.precision:5s} AP {stats["AP"]:.3f} AP50 {stats["AP50"]:.3f} '
            f'AR {stats["AR"]:.3f} detections {len(result.detections)}',
            flush=True,
        )


if __name__ == '__main__':
    main()
