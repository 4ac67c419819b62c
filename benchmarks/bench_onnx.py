"""Network latency on CPU: our ONNX export vs the original's, and OpenVINO vs ONNX Runtime on ours.

  python benchmarks/bench_onnx.py [--shared ../shared] [--runs 30] [--threads 2]

All sessions run in one process and are timed alternately (one call each per round), so a change of
machine load hits them alike; thread spinning is off so that no session slows down the next one.
Prints per-session medians and the ratios: target ours/original <= 0.9.
"""

import argparse
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--shared', type=pathlib.Path, default=ROOT.parent / 'shared')
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    return parser.parse_args()


def ort_runner(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads otherwise busy-wait after each run and steal the cores from the session timed
    # next: alternating timings were then biased by ~50% in favour of whichever ran first.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session = ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    return lambda x: session.run(None, {'data': x})


def openvino_runner(path, threads):
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(path),
        'CPU',
        {'INFERENCE_NUM_THREADS': threads, 'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY'},
    )
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})


def time_alternating(runners, x, runs, warmup):
    """{name: [seconds]}: each round calls every runner once, in turn."""
    for _ in range(warmup):
        for run in runners.values():
            run(x)
    times = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return times


def main():
    args = parse_args()
    reference = args.shared / 'reference'
    original = reference / 'original_1stage_256x456.onnx'
    if not original.exists():
        sys.exit(f'bench_onnx: {original} not found (pass --shared)')
    from lwop_jax.checkpoints import export
    from lwop_jax.checkpoints.orbax_io import load_any

    model = load_any(reference / 'lwop_random_1stage_legacy.pth')
    workdir = pathlib.Path(tempfile.mkdtemp(prefix='lwop_bench_'))
    ours_dynamic = export.export_onnx(model, workdir / 'ours_dynamic.onnx')
    ours_static = export.export_onnx(model, workdir / 'ours_static.onnx', input_size=(256, 456), dynamic=False)
    ir = export.export_openvino(ours_dynamic, workdir / 'openvino')

    runners = {
        'original ONNX (torch export), ORT': ort_runner(original, args.threads),
        'ours ONNX, dynamic N/H/W, ORT': ort_runner(ours_dynamic, args.threads),
        'ours ONNX, static 1x3x256x456, ORT': ort_runner(ours_static, args.threads),
        'ours OpenVINO IR, OpenVINO CPU': openvino_runner(ir, args.threads),
    }
    x = np.load(reference / 'reference_outputs_1stage.npz')['onnx_input']
    times = time_alternating(runners, x, args.runs, args.warmup)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}

    print(f'input 1x3x256x456, {args.threads} intra-op threads, {args.runs} alternating rounds, medians')
    print(f'{"session":40s} {"median ms":>10s} {"p10 ms":>8s} {"p90 ms":>8s}')
    for name, t in times.items():
        q = np.percentile(np.array(t) * 1e3, [10, 90])
        print(f'{name:40s} {medians[name]:10.2f} {q[0]:8.2f} {q[1]:8.2f}')
    base = medians['original ONNX (torch export), ORT']
    ort_ours = medians['ours ONNX, dynamic N/H/W, ORT']
    print(f'ratio ours(dynamic)/original, ORT: {ort_ours / base:.3f}  (target <= 0.9)')
    print(f'ratio ours(static)/original, ORT:  {medians["ours ONNX, static 1x3x256x456, ORT"] / base:.3f}')
    print(f'ratio OpenVINO/ORT on our export:  {medians["ours OpenVINO IR, OpenVINO CPU"] / ort_ours:.3f}')


if __name__ == '__main__':
    main()
