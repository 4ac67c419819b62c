"""Offline demo of the core pipeline: network -> orbax checkpoint -> ONNX + OpenVINO -> three runtimes agree.

  python -m lwop_jax.demo [--out runs/demo] [--weights CHECKPOINT.pth]

Without ``--weights`` the network is seed-initialised (no download, no data set needed). It is saved as
an orbax checkpoint, exported to ONNX (dynamic batch/height/width) and OpenVINO IR, and one image is run
through JAX, ONNX Runtime and OpenVINO; the script prints where everything went, the latencies and the
largest difference between runtimes. (The full demo, synthetic data -> training -> AP -> drawn poses,
grows from here.)
"""
import argparse
import pathlib
import time

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('runs/demo'))
    parser.add_argument('--weights', help='a torch checkpoint or orbax folder (default: seed-initialised)')
    parser.add_argument('--height', type=int, default=256, help='network input height')
    return parser.parse_args(argv)


def demo_image(height: int, width: int) -> np.ndarray:
    """A BGR test card: gradients and a few bright stick figures, deterministic."""
    import cv2
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1).astype(np.uint8)
    for cx in range(width // 6, width, width // 3):
        top = height // 5
        cv2.circle(image, (cx, top), height // 16, (255, 255, 255), -1)
        cv2.line(image, (cx, top), (cx, height * 3 // 5), (240, 240, 240), 6)
        for dx in (-1, 1):
            cv2.line(image, (cx, height // 3), (cx + dx * width // 12, height // 2), (230, 230, 230), 5)
            cv2.line(image, (cx, height * 3 // 5), (cx + dx * width // 16, height * 9 // 10), (230, 230, 230), 5)
    return image


def timed(fn, *args, repeat=5):
    fn(*args)  # warm-up (compilation)
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn(*args)
    return result, (time.perf_counter() - start) / repeat * 1e3


def main(argv=None):
    args = parse_args(argv)
    import jax
    import onnxruntime as ort
    import openvino as ov
    from flax import nnx

    from lwop_jax import export, weights
    from lwop_jax.model import PoseNet

    args.out.mkdir(parents=True, exist_ok=True)
    if args.weights:
        model = weights.load_any(args.weights)
    else:
        model = PoseNet(num_refinement_stages=1, rngs=nnx.Rngs(0)).set_training(False)
    print(weights.model_summary(model))
    checkpoint = weights.save_model(model, args.out / 'checkpoint', source=args.weights or 'seed 0')
    onnx_path = export.export_onnx(model, args.out / 'lwop.onnx')
    ir_path = export.export_openvino(onnx_path, args.out / 'openvino')

    image = demo_image(args.height, args.height * 16 // 9 // 8 * 8)
    x = ((image.astype(np.float32) - 128) / 256)[None]  # NHWC, the original's normalisation
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    forward = jax.jit(lambda inputs: model(inputs)[-1])
    (jax_heatmaps, jax_pafs), jax_ms = timed(lambda v: jax.block_until_ready(forward(v)), x)
    session = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    ort_out, ort_ms = timed(session.run, None, {'data': x_nchw})
    compiled = ov.Core().compile_model(str(ir_path), 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    ov_out, ov_ms = timed(lambda v: list(compiled(v).values()), x_nchw)

    reference = [np.asarray(jax_heatmaps).transpose(0, 3, 1, 2), np.asarray(jax_pafs).transpose(0, 3, 1, 2)]
    ort_err = max(float(np.abs(a - b).max()) for a, b in zip(ort_out[-2:], reference))
    ov_err = max(float(np.abs(a - b).max()) for a, b in zip(ov_out[-2:], reference))
    print(f'orbax checkpoint: {checkpoint}\nONNX: {onnx_path}\nOpenVINO IR: {ir_path}')
    print(f'input {x_nchw.shape}: JAX {jax_ms:.1f} ms, ONNX Runtime {ort_ms:.1f} ms, OpenVINO {ov_ms:.1f} ms')
    print(f'last-stage max |difference| vs JAX: ONNX Runtime {ort_err:.2e}, OpenVINO {ov_err:.2e}')
    ok = ort_err < 1e-3 and ov_err < 1e-3
    print('runtimes agree' if ok else 'RUNTIMES DISAGREE')
    return 0 if ok else 1


if __name__ == '__main__':
    raise SystemExit(main())
