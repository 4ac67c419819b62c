"""Training step throughput: images/s of one jitted train step (forward, backward, Adam with the 13 groups).

  python benchmarks/bench_train_step.py [--batch 8] [--size 368] [--stages 1] [--steps 5]

Batch 8, 368x368 crops, 1 refinement stage, compile excluded, float32 and bfloat16 compute, on CPU; on
every accelerator present too. Baseline: the original PyTorch step on the same 2-core CPU, 3.487 s/step
= 2.29 images/s (/work/shared/reference/baselines_original.md; it measured ~3.3 s/step in a quiet window).
The CPU is shared: the median of --steps timed steps is reported, with the minimum.

Where CPU time goes (jax.profiler trace of one step, per HLO op): the 3x3 128->128 convs (their kernel
gradients most), the pointwise matmuls, the depthwise shifted products. XLA:CPU mallocs the step's
temporaries (2.3 GB) afresh on every call; by default glibc maps and unmaps them each step (~0.3M page
faults, 4.15 s per step). Like train.py, this script first calls ``host_heap.keep_freed_memory`` (the
heap keeps them: 3.46 s); ``LWOP_JAX_KEEP_FREED_MEMORY=0`` measures without it.

Tried for the 3x3 128->128 convs, on 8x46x46x128 (one such conv, forward + both gradients), all slower
than XLA's own conv on this CPU: Winograd F(2x2, 3x3) written in jnp 179 ms vs 90 ms (dilation 2: 231
vs 116); the kernel gradient as one im2col matmul 100 ms or 9 shifted matmuls 86 ms vs 33 ms; bfloat16
88 ms vs 96 ms (the whole step in bfloat16 is slower, see the table). XLA's conv runs at ~80 GMAC/s
on the 2 cores, close to their float32 peak.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lwop_jax.model import PoseNet
from lwop_jax.training import host_heap, optimizer
from lwop_jax.training import step as train_step_lib

ORIGINAL_CPU_IMAGES_PER_SEC = 2.29


def make_batch(batch, size, rng):
    cells = size // 8
    return {
        'image': (rng.normal(size=(batch, size, size, 3)) * 0.4).astype(np.float32),
        'heatmaps': rng.uniform(size=(batch, cells, cells, 19)).astype(np.float32),
        'pafs': (rng.normal(size=(batch, cells, cells, 38)) * 0.3).astype(np.float32),
        'mask': np.ones((batch, cells, cells), np.float32),
    }


def bench(device, dtype, batch, size, stages, steps):
    model = PoseNet(stages, dtype=dtype, rngs=nnx.Rngs(0))
    tx = optimizer.make_optimizer(model, base_lr=4e-5, weight_decay=5e-4, steps_per_epoch=1000)
    graphdef, state = train_step_lib.create_train_state(model, tx)
    mesh = train_step_lib.make_mesh([device])
    state = train_step_lib.replicate_state(state, mesh)
    step = train_step_lib.jit_train_step(graphdef, tx, mesh)
    data = train_step_lib.global_batch([make_batch(batch, size, np.random.default_rng(0))], mesh)
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
    return compile_s, statistics.median(times), min(times), float(metrics['loss'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=368)
    parser.add_argument('--stages', type=int, default=1)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--gpu-batch', type=int, default=80, help='also time this batch on accelerators')
    parser.add_argument('--skip-cpu', action='store_true', help='time accelerators only')
    args = parser.parse_args()
    kept = host_heap.keep_freed_memory()  # before jax.devices() starts the CPU client's threads
    print(f'jax {jax.__version__}, devices: {jax.devices()}; freed host memory kept: {kept}')
    print(f'train step, {args.size}x{args.size}, {args.stages} refinement stage(s), compile excluded')
    print(
        f'{"device":<28}{"dtype":<10}{"batch":>6}{"compile s":>11}{"median s":>10}{"min s":>8}'
        f'{"images/s":>10}{"vs original CPU":>17}'
    )
    runs = [] if args.skip_cpu else [(jax.devices('cpu')[0], args.batch)]
    accelerators = [d for d in jax.devices() if d.platform != 'cpu']
    runs += [(d, b) for d in accelerators[:1] for b in sorted({args.batch, args.gpu_batch})]
    for device, batch in runs:
        for name, dtype in (('float32', None), ('bfloat16', jnp.bfloat16)):
            compile_s, median, fastest, loss = bench(device, dtype, batch, args.size, args.stages, args.steps)
            rate = batch / median
            print(
                f'{str(device):<28}{name:<10}{batch:>6}{compile_s:>11.1f}{median:>10.3f}{fastest:>8.3f}'
                f'{rate:>10.2f}{rate / ORIGINAL_CPU_IMAGES_PER_SEC:>16.2f}x',
                flush=True,
            )


if __name__ == '__main__':
    main()
