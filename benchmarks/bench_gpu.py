"""One-call GPU benchmark of the training step: lwop_jax (JAX) against PyTorch, on the same device, in one run.

  python benchmarks/bench_gpu.py                 # on the GPU machine: about 6-8 minutes, --budget bounds it
  python benchmarks/bench_gpu.py --smoke         # tiny sizes on the CPU (CI runs it, so it cannot rot)

Needs jax (with the accelerator's plugin), flax, optax, numpy and OpenCV; PyTorch for the baseline (its
rows are skipped, with a note, where it is absent). No TensorFlow, no ml_collections, nothing downloaded.

What it measures, each configuration in a child process of its own (a clean peak-memory figure, and an
out-of-memory run costs only its own row):
- the jitted train step (forward, backward, Adam with the original's 13 groups) on device-resident
  synthetic batches, batch 80 at 368x368 as the original recipe: 1 and 3 refinement stages, float32 and
  bfloat16 compute, and both convolution formulations ('plain': lax convolutions, grouped and dilated
  depthwise ones included; 'shifted': depthwise as shifted products and 1x1 as matmuls);
- per configuration: step ms (median of --steps), images/s, peak device memory, and the achieved TFLOP/s
  from FLOPs counted layer by layer (2 x MACs of every convolution at its output size, x3 for forward
  and backward);
- the same step in PyTorch: our own transcription of the original network (random weights, one Adam,
  the same loss and batch; bfloat16 through autocast), as the baseline, with the JAX/PyTorch ratio;
- the input pipeline: training samples per second on one core of this host (the per-sample work of
  lwop_jax.data.samples on the COCO mini images in ../shared), scaled by the tf.data overhead measured
  on the CPU machine, and whether a 16-core host would keep up with the fastest step.

It prints a table and writes everything to --out (JSON). The default formulation of each backend is
read off the table ('auto' in lwop_jax.model.layers): the faster one where both ran.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = ROOT.parent / 'shared' / 'data' / 'coco_val_mini'
# tf.data samples/s per core over the single-threaded producer's, measured on the 2-core CPU machine
# (benchmarks/bench_pipeline.py: 259 against 351 samples/s per core): the GPU machine has no TensorFlow.
TF_DATA_EFFICIENCY = 259 / 351
HOST_CORES = 16


# ------------------------------------------------------------------------------------------- JAX


def conv_flops(model, size: int) -> int:
    """FLOPs of one forward pass of one image: 2 x MACs of every convolution at its output size."""
    import jax
    import jax.numpy as jnp

    from lwop_jax.model.layers import Conv2d

    counted, original = [], Conv2d.__call__

    def counting(self, x):
        y = original(self, x)
        kh, kw, in_per_group, out = self.kernel.shape
        counted.append(2 * y.shape[1] * y.shape[2] * out * kh * kw * in_per_group)
        return y

    Conv2d.__call__ = counting
    try:
        jax.eval_shape(lambda x: model(x), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    finally:
        Conv2d.__call__ = original
    return sum(counted)


def synthetic_batch(batch: int, size: int, seed: int = 0) -> dict:
    import numpy as np

    rng, cells = np.random.default_rng(seed), size // 8
    return {
        'image': (rng.normal(size=(batch, size, size, 3)) * 0.4).astype(np.float32),
        'heatmaps': rng.uniform(size=(batch, cells, cells, 19)).astype(np.float32),
        'pafs': (rng.normal(size=(batch, cells, cells, 38)) * 0.3).astype(np.float32),
        'mask': np.ones((batch, cells, cells), np.float32),
    }


def peak_device_bytes(device) -> int | None:
    stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
    return int(stats['peak_bytes_in_use']) if stats and 'peak_bytes_in_use' in stats else None


def run_jax(batch: int, size: int, stages: int, dtype: str, formulation: str, steps: int, device=None) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from lwop_jax.model.posenet import PoseNet
    from lwop_jax.training import optimizer
    from lwop_jax.training import step as train_step

    device = device or jax.devices()[0]
    compute = {'float32': None, 'bfloat16': jnp.bfloat16}[dtype]
    model = PoseNet(stages, dtype=compute, rngs=nnx.Rngs(0)).set_conv_formulation(formulation)
    flops = conv_flops(nnx.clone(model).set_training(False), size)
    batch_arrays = synthetic_batch(batch, size)
    energy = eval_output_energy(nnx.clone(model).set_training(False), batch_arrays['image'])
    tx = optimizer.make_optimizer(model, base_lr=4e-5, weight_decay=5e-4, steps_per_epoch=1000)
    graphdef, state = train_step.create_train_state(model, tx)
    mesh = train_step.make_mesh([device])
    state = train_step.replicate_state(state, mesh)
    step = train_step.jit_train_step(graphdef, tx, mesh)
    data = train_step.global_batch([batch_arrays], mesh)
    start = time.perf_counter()
    state, metrics = step(state, data)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = step(state, data)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    result = finish(times, batch, flops, compile_s, peak_device_bytes(device), str(device), float(metrics['loss']))
    return result | {'eval_output_energy': energy}


def eval_output_energy(model, images) -> float:
    """Sum of squares of every stage's outputs in eval mode (BatchNorm on running statistics): how the two
    formulations are compared. A training-mode loss is not comparable across CPUs: BatchNorm over a small
    batch amplifies float32 rounding (the first-step losses of the two formulations differed by 1e-3 on
    one CPU and 1e-5 on another), where eval mode is a fixed affine map and the outputs differ by rounding."""
    import jax.numpy as jnp

    return float(sum(jnp.sum(jnp.square(h)) + jnp.sum(jnp.square(p)) for h, p in model(jnp.asarray(images))))


def finish(times, batch, flops, compile_s, peak_bytes, device, loss) -> dict:
    step_s = statistics.median(times)
    return {
        'step_ms': 1000 * step_s,
        'min_step_ms': 1000 * min(times),
        'images_per_s': batch / step_s,
        'tflops': 3 * flops * batch / step_s / 1e12,
        'forward_gflop_per_image': flops / 1e9,
        'compile_s': compile_s,
        'peak_gib': peak_bytes / 2**30 if peak_bytes is not None else None,
        'device': device,
        'loss': loss,
    }


# --------------------------------------------------------------------------------------- PyTorch


def torch_posenet(torch, stages: int):
    """The original PoseEstimationWithMobileNet, transcribed (same layers, same order, random weights)."""
    nn = torch.nn

    def conv(i, o, k=3, p=1, bn=True, d=1, s=1, relu=True, bias=True):
        layers = [nn.Conv2d(i, o, k, s, p, d, bias=bias)] + [nn.BatchNorm2d(o)] * bn + [nn.ReLU(inplace=True)] * relu
        return nn.Sequential(*layers)

    def conv_dw(i, o, s=1, d=1, p=1, bn=True):
        act = (lambda c: [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]) if bn else (lambda c: [nn.ELU(inplace=True)])
        return nn.Sequential(
            nn.Conv2d(i, i, 3, s, p, d, groups=i, bias=False), *act(i), nn.Conv2d(i, o, 1, 1, 0, bias=False), *act(o)
        )

    def head(c, hidden, n):
        return nn.Sequential(conv(c, hidden, 1, 0, bn=False), conv(hidden, n, 1, 0, bn=False, relu=False))

    # Module names as the original's, so that its state dicts load (tests/test_bench_gpu.py does).
    class Cpm(nn.Module):
        def __init__(self):
            super().__init__()
            self.align = conv(512, 128, 1, 0, bn=False)
            self.trunk = nn.Sequential(*[conv_dw(128, 128, bn=False) for _ in range(3)])
            self.conv = conv(128, 128, bn=False)

        def forward(self, x):
            x = self.align(x)
            return self.conv(x + self.trunk(x))

    class InitialStage(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(*[conv(128, 128, bn=False) for _ in range(3)])
            self.heatmaps, self.pafs = head(128, 512, 19), head(128, 512, 38)

        def forward(self, x):
            features = self.trunk(x)
            return self.heatmaps(features), self.pafs(features)

    class RefinementStageBlock(nn.Module):
        def __init__(self, i):
            super().__init__()
            self.initial = conv(i, 128, 1, 0, bn=False)
            self.trunk = nn.Sequential(conv(128, 128), conv(128, 128, d=2, p=2))

        def forward(self, x):
            initial = self.initial(x)
            return initial + self.trunk(initial)

    class RefinementStage(InitialStage):
        def __init__(self):
            nn.Module.__init__(self)
            self.trunk = nn.Sequential(RefinementStageBlock(185), *[RefinementStageBlock(128) for _ in range(4)])
            self.heatmaps, self.pafs = head(128, 128, 19), head(128, 128, 38)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(
                conv(3, 32, s=2, bias=False),
                conv_dw(32, 64),
                conv_dw(64, 128, s=2),
                conv_dw(128, 128),
                conv_dw(128, 256, s=2),
                conv_dw(256, 256),
                conv_dw(256, 512),
                conv_dw(512, 512, d=2, p=2),  # dilation 2: the receptive field, at stride 8
                *[conv_dw(512, 512) for _ in range(4)],
            )
            self.cpm = Cpm()
            self.initial_stage = InitialStage()
            self.refinement_stages = nn.ModuleList([RefinementStage() for _ in range(stages)])

        def forward(self, x):
            features = self.cpm(self.model(x))
            outputs = [self.initial_stage(features)]
            for stage in self.refinement_stages:
                outputs.append(stage(torch.cat([features, *outputs[-1]], dim=1)))
            return outputs

    return Net()


def run_torch(batch: int, size: int, stages: int, dtype: str, steps: int) -> dict:
    import numpy as np
    import torch

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    torch.backends.cudnn.benchmark = True
    model = torch_posenet(torch, stages).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-5, weight_decay=5e-4)
    data = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in synthetic_batch(batch, size).items()}
    image = data['image'].permute(0, 3, 1, 2).contiguous()
    heatmaps, pafs = data['heatmaps'].permute(0, 3, 1, 2), data['pafs'].permute(0, 3, 1, 2)
    mask = data['mask'][:, None]

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == 'bfloat16'):
            outputs = model(image)
        loss = sum(
            (((h.float() - heatmaps) * mask) ** 2).sum() / 2 / batch
            + (((p.float() - pafs) * mask) ** 2).sum() / 2 / batch
            for h, p in outputs
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    def synchronize():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step()
    synchronize()
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == 'cuda' else None
    name = torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'
    return finish(times, batch, 0, compile_s, peak, f'torch {torch.__version__} {name}', float(loss))


# ------------------------------------------------------------------------------------ input pipeline


def pipeline_per_core(size: int, samples: int) -> dict:
    """Training samples per second of the per-sample work on one core: decode, one warp, targets."""
    import numpy as np

    from lwop_jax.data import coco
    from lwop_jax.data import samples as sample_lib

    if not COCO_MINI.is_dir():
        return {'note': f'{COCO_MINI} not found: input pipeline not measured'}
    images = COCO_MINI / 'val2017'
    labels = coco.load_training_labels(COCO_MINI / 'person_keypoints_val2017_mini.json', images, net_input_size=size)
    source, config = sample_lib.LabelFileSource(labels, images), sample_lib.SampleConfig(crop_size=size)
    loaded = [source.load(i) for i in range(len(source))]
    start = time.perf_counter()
    for index in range(samples):
        rng = np.random.default_rng([0, index])
        sample_lib.process_sample(loaded[index % len(loaded)], rng, config)
    per_core = samples / (time.perf_counter() - start)
    return {'samples_per_s_per_core': per_core, 'tf_data_per_core_estimate': per_core * TF_DATA_EFFICIENCY}


# ------------------------------------------------------------------------------------------- driver


def configurations(args) -> list[dict]:
    runs = []
    for stages in args.stages:
        for dtype in args.dtypes:
            for formulation in args.formulations:
                runs.append({'framework': 'jax', 'stages': stages, 'dtype': dtype, 'formulation': formulation})
            runs.append({'framework': 'torch', 'stages': stages, 'dtype': dtype, 'formulation': 'cudnn'})
    return runs


def run_child(run: dict, args, timeout: float) -> dict:
    """One configuration in a fresh process: {'result': ...} or {'error': one line}."""
    command = [
        sys.executable,
        __file__,
        '--child',
        json.dumps(run),
        '--batch',
        str(args.batch),
        '--size',
        str(args.size),
        '--steps',
        str(args.steps),
    ]
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired:
        return {'error': f'over {timeout:.0f} s'}
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return {'error': lines[-1][:200] if lines else f'exit status {done.returncode}'}
    return {'result': json.loads(done.stdout.strip().splitlines()[-1])}


def child(run: dict, args) -> None:
    if run['framework'] == 'jax':
        result = run_jax(args.batch, args.size, run['stages'], run['dtype'], run['formulation'], args.steps)
    else:
        result = run_torch(args.batch, args.size, run['stages'], run['dtype'], args.steps)
    print(json.dumps(result))


def print_table(rows: list[dict]) -> None:
    torch_rate = {
        (r['stages'], r['dtype']): r['result']['images_per_s']
        for r in rows
        if r['framework'] == 'torch' and 'result' in r
    }
    print(
        f'{"framework":<9}{"stages":>7}{"dtype":>10}{"formulation":>13}{"step ms":>9}{"images/s":>10}'
        f'{"TFLOP/s":>9}{"peak GiB":>10}{"vs torch":>10}'
    )
    for r in rows:
        head = f'{r["framework"]:<9}{r["stages"]:>7}{r["dtype"]:>10}{r["formulation"]:>13}'
        if 'result' not in r:
            print(f'{head}  {r["error"]}')
            continue
        x = r['result']
        peak = f'{x["peak_gib"]:.1f}' if x['peak_gib'] is not None else '-'
        base = torch_rate.get((r['stages'], r['dtype']))
        ratio = f'{x["images_per_s"] / base:.2f}x' if base and r['framework'] == 'jax' else ''
        print(f'{head}{x["step_ms"]:>9.1f}{x["images_per_s"]:>10.1f}{x["tflops"]:>9.1f}{peak:>10}{ratio:>10}')


def fastest_formulation(rows: list[dict]) -> dict:
    """Per (stages, dtype): the JAX formulation with the most images/s."""
    best = {}
    for r in rows:
        if r['framework'] == 'jax' and 'result' in r:
            key = f'{r["stages"]} stages {r["dtype"]}'
            if key not in best or r['result']['images_per_s'] > best[key][1]:
                best[key] = (r['formulation'], r['result']['images_per_s'])
    return {key: name for key, (name, _) in best.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--smoke', action='store_true', help='tiny sizes, CPU is fine (CI)')
    parser.add_argument('--batch', type=int, default=80)
    parser.add_argument('--size', type=int, default=368)
    parser.add_argument('--steps', type=int, default=10, help='timed steps per configuration (after one warm-up)')
    parser.add_argument('--stages', type=int, nargs='+', default=[1, 3])
    parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
    parser.add_argument('--formulations', nargs='+', default=['plain', 'shifted'])
    parser.add_argument('--budget', type=float, default=420, help='seconds for all configurations; the rest skipped')
    parser.add_argument('--out', type=pathlib.Path, default=pathlib.Path('bench_gpu.json'))
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.size, args.steps, args.stages, args.dtypes = 2, 64, 2, [1], ['float32']
    if importlib.util.find_spec('lwop_jax') is None:  # the GPU machine gets a checkout, not an install
        sys.path.insert(0, str(ROOT))
    if args.child:
        child(json.loads(args.child), args)
        return 0
    start, rows = time.perf_counter(), []
    for run in configurations(args):
        left = args.budget - (time.perf_counter() - start)
        outcome = run_child(run, args, timeout=max(left, 1)) if left > 0 else {'error': 'skipped: --budget spent'}
        rows.append(run | outcome)
        said = outcome.get('error') or f'{outcome["result"]["images_per_s"]:.1f} images/s'
        print(f'{json.dumps(run)}: {said}', flush=True)
    pipeline = pipeline_per_core(args.size, 8 if args.smoke else 200)
    summary = {
        'batch': args.batch,
        'size': args.size,
        'steps': args.steps,
        'rows': rows,
        'pipeline': pipeline,
        'fastest_formulation': fastest_formulation(rows),
        'seconds': time.perf_counter() - start,
    }
    print()
    print_table(rows)
    fastest = max((r['result']['images_per_s'] for r in rows if 'result' in r and r['framework'] == 'jax'), default=0)
    if 'tf_data_per_core_estimate' in pipeline:
        cores = fastest / pipeline['tf_data_per_core_estimate']
        summary['cores_to_feed_fastest_jax_step'] = cores
        print(
            f'\ninput pipeline: {pipeline["samples_per_s_per_core"]:.0f} samples/s per core here (tf.data estimate '
            f'{pipeline["tf_data_per_core_estimate"]:.0f}); the fastest JAX step ({fastest:.0f} images/s) needs '
            f'{cores:.1f} cores: a {HOST_CORES}-core host {"keeps up" if cores <= HOST_CORES else "does NOT keep up"}'
        )
    else:
        print(f'\ninput pipeline: {pipeline["note"]}')
    print(f'fastest formulation: {summary["fastest_formulation"]}')
    args.out.write_text(json.dumps(summary, indent=1))
    print(f'written to {args.out} ({summary["seconds"]:.0f} s)')
    return 0 if any('result' in r for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
